"""char_lm: windows cover the text, splits by position, vocabulary saved and reused."""

from __future__ import annotations

from types import SimpleNamespace as task

import pytest
import torch

from src.data import DataError, build_datamodule

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(200))


def build(tmp_path, text=TEXT, run_dir=None, **fields):
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    fields = {"block_size": 16, "val_fraction": 0.1, "test_fraction": 0.1, **fields}
    return build_datamodule(task(name="char_lm", path=str(path), **fields), batch_size=8, seed=0, run_dir=run_dir)


def split_text(dm, windows):
    """Reassemble a split from its windows (they overlap by one character)."""
    pieces = [dm.decode_tgt(w["tokens"]) for w in windows]
    return pieces[0] + "".join(p[1:] for p in pieces[1:])


def test_splits_are_contiguous_parts_of_the_text(tmp_path):
    dm = build(tmp_path)
    assert dm.kind == "lm" and dm.src_vocab_size == 0 and dm.num_classes == 0
    train, val, test = (split_text(dm, s) for s in (dm.task.train, dm.task.val, dm.task.test))
    assert train + val + test == TEXT
    assert len(val) == len(test) == int(len(TEXT) * 0.1)


def test_a_train_stride_overlaps_the_training_windows_only(tmp_path):
    plain, strided = build(tmp_path), build(tmp_path, train_stride=4)
    assert len(strided.task.train) == pytest.approx(4 * len(plain.task.train), abs=4)
    starts = [strided.decode_tgt(w["tokens"])[:4] for w in strided.task.train[:5]]
    train_text = split_text(plain, plain.task.train)
    assert starts == [train_text[k * 4 : k * 4 + 4] for k in range(5)]  # a window every 4 characters
    assert len(strided.task.val) == len(plain.task.val) and len(strided.task.test) == len(plain.task.test)
    with pytest.raises(DataError, match="task.train_stride=17"):
        build(tmp_path, train_stride=17)


def test_batches_predict_the_next_character(tmp_path):
    dm = build(tmp_path)
    batch = next(iter(dm.train_dataloader()))
    assert batch.keys() == {"tgt_in", "tgt_out", "tgt_real"} and batch["tgt_real"].all()  # full windows
    assert batch["tgt_in"].shape == (8, 16) and dm.max_tgt_len == 16
    assert torch.equal(batch["tgt_in"][:, 1:], batch["tgt_out"][:, :-1])


def test_vocabulary_is_sorted_characters_and_reused_from_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    dm = build(tmp_path, run_dir=run_dir)
    assert (run_dir / "vocab.json").exists()
    assert dm.task.tgt_vocab.symbols == sorted(set(TEXT))
    assert dm.tgt_vocab_size == 4 + len(set(TEXT))
    # Rebuilt on other text (e.g. predict) with the same run dir: the saved vocabulary wins.
    other = build(tmp_path, text="ZZZ quick" * 20, run_dir=run_dir)
    assert other.task.tgt_vocab.symbols == dm.task.tgt_vocab.symbols
    assert other.decode_tgt(other.encode_tgt("quick")) == "quick"
    assert other.tgt_token_strings(other.encode_tgt("Z q")) == ["<unk>", "␣", "q"]


def test_a_prompt_is_read_as_the_windows_were(tmp_path):
    """Every character, whitespace included, and no BOS (the windows hold none); the last block_size of a longer
    prompt, with the count before the cut."""
    dm = build(tmp_path)
    window = dm.task.val[0]["tokens"][:-1]
    assert dm.encode_input(dm.decode_tgt(window)) == (window.tolist(), len(window))
    assert dm.encode_input(" q ")[0] == [dm.task.tgt_vocab.id_of[c] for c in " q "]
    assert dm.encode_input("q" * 40) == ([dm.task.tgt_vocab.id_of["q"]] * 16, 40)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        build_datamodule(task(name="char_lm", path=str(tmp_path / "missing.txt")), batch_size=8, seed=0)
    with pytest.raises(DataError, match="empty"):
        build(tmp_path, text="  \n")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok\nok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt:3: not valid UTF-8"):
        build_datamodule(task(name="char_lm", path=str(bad)), batch_size=8, seed=0)
    with pytest.raises(DataError, match="task.path is required"):
        build_datamodule(task(name="char_lm"), batch_size=8, seed=0)
    with pytest.raises(DataError, match="fractions"):
        build(tmp_path, val_fraction=0.6, test_fraction=0.5)
