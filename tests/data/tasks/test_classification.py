"""classification: TSV parsing (rsplit on the last TAB), labels, splits, one-line errors."""

from __future__ import annotations

from types import SimpleNamespace as task

import pytest
import torch

from src.data import DataError, build_datamodule

ROWS = [("a great film", "1"), ("awful, just awful", "0"), ('he said "wow  ', "1"), ("boring", "0")] * 10


def write_tsv(path, rows, header=None):
    lines = ([header] if header else []) + [f"{sentence}\t{label}" for sentence, label in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def build(**fields):
    return build_datamodule(task(**{"name": "classification", **fields}), batch_size=8, seed=0)


def test_labels_map_to_sorted_ids_and_batches(tmp_path):
    rows = [("x y", "pos"), ("y z", "neg"), ("z", "neutral")] * 10
    dm = build(
        train_path=write_tsv(tmp_path / "t.tsv", rows),
        val_path=write_tsv(tmp_path / "v.tsv", rows[:3]),
        test_path=write_tsv(tmp_path / "s.tsv", rows[:3]),
    )
    assert dm.kind == "classification" and dm.num_classes == 3 and dm.tgt_vocab_size == 0
    assert dm.label_names == ["neg", "neutral", "pos"]
    batch = dm.probe_batch(3)
    assert batch.keys() == {"src", "label"} and batch["label"].tolist() == [2, 0, 1]
    assert [dm.decode_src(s) for s in batch["src"]] == ["x y", "y z", "z"]


def test_numeric_labels_sort_numerically(tmp_path):
    rows = [("a", "2"), ("b", "10"), ("c", "1")] * 5
    dm = build(train_path=write_tsv(tmp_path / "t.tsv", rows), val_fraction=0.2, test_fraction=0.2)
    assert dm.label_names == ["1", "2", "10"]


def test_quotes_and_tabs_in_sentences(tmp_path):
    rows = [('say "hi\tthere', "1"), ("plain", "0")] * 10  # unbalanced quote and a TAB inside the sentence
    dm = build(
        train_path=write_tsv(tmp_path / "t.tsv", rows),
        val_path=write_tsv(tmp_path / "v.tsv", rows[:2]),
        test_path=write_tsv(tmp_path / "s.tsv", rows[:2]),
        lowercase=False,
    )
    assert len(dm.task.val) == 2
    assert dm.decode_src(dm.task.val[0]["src"]) == 'say " hi there'  # word level: punctuation split off
    assert dm.task.val[0]["label"] == 1


def test_split_from_train_is_deterministic_and_disjoint(tmp_path):
    rows = [(f"sentence number {i}", str(i % 2)) for i in range(100)]
    path = write_tsv(tmp_path / "t.tsv", rows)
    a, b = build(train_path=path, tokenizer="bpe"), build(train_path=path, tokenizer="bpe")  # bpe: numbers readable
    assert (len(a.task.train), len(a.task.val), len(a.task.test)) == (80, 10, 10)
    text = lambda dm, split: [dm.decode_src(e["src"]) for e in split]  # noqa: E731
    assert text(a, a.task.val) == text(b, b.task.val)
    assert len(set(text(a, a.task.val))) == 10 and not set(text(a, a.task.val)) & set(text(a, a.task.train))
    c = build_datamodule(task(name="classification", train_path=path, tokenizer="bpe"), batch_size=8, seed=1)
    assert text(a, a.task.val) != text(c, c.task.val)


def test_bpe_tokenizer_and_truncation(tmp_path):
    dm = build(train_path=write_tsv(tmp_path / "t.tsv", ROWS), tokenizer="bpe", vocab_size=60, max_len=2)
    assert max(len(e["src"]) for e in dm.task.train) <= 2
    assert dm.max_src_len == 2


def test_header_option(tmp_path):
    path = write_tsv(tmp_path / "t.tsv", ROWS, header="sentence\tlabel")
    with pytest.raises(DataError, match=r"t\.tsv:1: label 'label' appears nowhere else.*has_header=true"):
        build(train_path=path)
    assert build(train_path=path, has_header=True).label_names == ["0", "1"]


def test_line_without_tab(tmp_path):
    path = tmp_path / "t.tsv"
    write_tsv(path, ROWS)
    path.write_text(path.read_text() + "no tab here\n")
    with pytest.raises(DataError, match=rf"t\.tsv:{len(ROWS) + 1}: no TAB in this line") as error:
        build(train_path=str(path))
    assert "\n" not in str(error.value)


def test_header_in_val_file_gets_the_hint(tmp_path):
    val = write_tsv(tmp_path / "v.tsv", [("fine", "1")], header="sentence\tlabel")
    with pytest.raises(DataError, match=r"v\.tsv:1: label 'label' does not occur.*has_header=true"):
        build(train_path=write_tsv(tmp_path / "t.tsv", ROWS), val_path=val)


def test_unknown_label_in_val_names_the_line(tmp_path):
    val = write_tsv(tmp_path / "v.tsv", [("fine", "1"), ("odd", "positive")])
    with pytest.raises(DataError, match=r"v\.tsv:2: label 'positive' does not occur in the training file"):
        build(train_path=write_tsv(tmp_path / "t.tsv", ROWS), val_path=val)


def test_single_class_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="only one label"):
        build(train_path=write_tsv(tmp_path / "t.tsv", [("a", "1")] * 20))
    with pytest.raises(DataError, match="file not found: set task.train_path"):
        build(train_path=str(tmp_path / "nope.tsv"))


def test_real_sentiment_file_keeps_all_lines(shared_file):
    path = shared_file("sentiment_labelled_sentences", "imdb_labelled.txt")  # unbalanced quotes inside
    dm = build(train_path=str(path))
    assert len(dm.task.train) + len(dm.task.val) + len(dm.task.test) == 1000
    labels = torch.tensor([e["label"] for e in [*dm.task.train, *dm.task.val, *dm.task.test]])
    assert labels.sum() == 500
