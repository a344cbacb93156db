"""translation: parallel files -> BPE ids, joint tokenizer, truncation, one-line file errors."""

from __future__ import annotations

from types import SimpleNamespace as task

import pytest
import torch

from src.data import DataError, build_datamodule
from src.model.tokens import BOS_ID, EOS_ID

DE = ["Ein Hund läuft im Park.", "Zwei Kinder spielen Fußball.", "Eine Frau liest ein Buch.", "Der Mann kocht."]
EN = ["A dog runs in the park.", "Two children play soccer.", "A woman reads a book.", "The man cooks."]


def write_pairs(folder, src_lines, tgt_lines, prefix):
    (folder / f"{prefix}.de").write_text("".join(line + "\n" for line in src_lines), encoding="utf-8")
    (folder / f"{prefix}.en").write_text("".join(line + "\n" for line in tgt_lines), encoding="utf-8")


def config(folder, **fields):
    paths = {
        f"{split}_{side}": str(folder / f"{split}.{lang}")
        for split in ("train", "val", "test")
        for side, lang in (("src", "de"), ("tgt", "en"))
    }
    return task(**{"name": "translation", "vocab_size": 200, "max_len": 32, **paths, **fields})


@pytest.fixture
def corpus(tmp_path):
    write_pairs(tmp_path, DE * 10, EN * 10, "train")
    write_pairs(tmp_path, DE[:2], EN[:2], "val")
    write_pairs(tmp_path, DE[2:], EN[2:], "test")
    return tmp_path


def test_pairs_are_encoded_and_decode_back(corpus):
    dm = build_datamodule(config(corpus), batch_size=4, seed=0, run_dir=corpus / "run")
    assert dm.kind == "seq2seq" and dm.src_vocab_size == dm.tgt_vocab_size > 4 and dm.num_classes == 0
    assert [dm.decode_src(e["src"]) for e in dm.task.val] == DE[:2]
    assert [dm.decode_tgt(e["tgt"]) for e in dm.task.test] == EN[2:]
    batch = dm.probe_batch(2)
    assert batch["tgt_in"][:, 0].tolist() == [BOS_ID, BOS_ID]
    assert dm.decode_tgt(batch["tgt_out"][0]) == EN[0]
    assert [dm.decode_src(s) for s in batch["src"]] == DE[:2]
    assert (batch["tgt_out"] == EOS_ID).sum() == 2
    assert dm.decode_src(dm.encode_src("Ein Hund spielt.")) == "Ein Hund spielt."
    assert dm.max_src_len == 32 and dm.max_tgt_len == 33


def test_new_text_is_read_as_the_data_were(corpus):
    """A line with whitespace around it is the sentence without it, as the data reader makes every sentence (bpe
    would otherwise make a piece of the spaces); the ids with their length before the cut, for predict."""
    (corpus / "val.de").write_text("  Ein Hund läuft im Park. \nZwei Kinder spielen Fußball.\n", encoding="utf-8")
    dm = build_datamodule(config(corpus, max_len=4), batch_size=4, seed=0, run_dir=corpus / "run")
    assert dm.task.val[0]["src"].tolist() == dm.encode_src("Ein Hund läuft im Park.")
    assert dm.encode_input("\t Ein Hund läuft im Park.  ") == (
        dm.encode_src(DE[0]),
        len(dm.task.src_vocab.encode(DE[0])),
    )
    assert dm.encode_input("   ") == ([], 0)


def test_tokenizer_is_saved_and_reused(corpus):
    run_dir = corpus / "run"
    first = build_datamodule(config(corpus), batch_size=4, seed=0, run_dir=run_dir)
    assert (run_dir / "tokenizer.json").exists()
    again = build_datamodule(config(corpus, vocab_size=100), batch_size=4, seed=0, run_dir=run_dir)
    assert again.src_vocab_size == first.src_vocab_size  # loaded, not retrained with the new size
    for a, b in zip(first.task.train, again.task.train):
        assert torch.equal(a["src"], b["src"]) and torch.equal(a["tgt"], b["tgt"])


def test_long_sentences_are_truncated_to_max_len(corpus):
    dm = build_datamodule(config(corpus, max_len=3), batch_size=4, seed=0)
    assert max(len(e["src"]) for e in dm.task.train) == 3
    assert max(len(e["tgt"]) for e in dm.task.train) == 3
    assert len(dm.encode_src(" ".join(DE))) == 3
    assert next(iter(dm.train_dataloader()))["tgt_in"].shape[1] <= dm.max_tgt_len == 4


def test_train_limit(corpus):
    dm = build_datamodule(config(corpus, train_limit=5), batch_size=4, seed=0)
    assert len(dm.task.train) == 5


def test_mismatched_line_counts_name_the_file_and_line(corpus):
    write_pairs(corpus, DE, EN[:3], "val")
    with pytest.raises(DataError, match=r"val\.en:4: the parallel files have different line counts") as error:
        build_datamodule(config(corpus), batch_size=4, seed=0)
    assert "\n" not in str(error.value)


def test_missing_and_empty_files(corpus):
    (corpus / "test.de").unlink()
    with pytest.raises(DataError, match=r"test\.de: file not found: set task\.test_src"):
        build_datamodule(config(corpus), batch_size=4, seed=0)
    (corpus / "test.de").write_text("\n\n")
    with pytest.raises(DataError, match=r"test\.de: file is empty"):
        build_datamodule(config(corpus), batch_size=4, seed=0)


def test_gzip_files_are_read(corpus):
    import gzip

    for lang in ("de", "en"):
        data = (corpus / f"val.{lang}").read_bytes()
        (corpus / f"val.{lang}.gz").write_bytes(gzip.compress(data))
    cfg = config(corpus, val_src=str(corpus / "val.de.gz"), val_tgt=str(corpus / "val.en.gz"))
    dm = build_datamodule(cfg, batch_size=4, seed=0)
    assert [dm.decode_src(e["src"]) for e in dm.task.val] == DE[:2]
