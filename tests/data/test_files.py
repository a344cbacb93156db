"""Reading data files: the first part checked before a run (read_head) answers as reading the whole file does."""

from __future__ import annotations

import gzip

import pytest

from src.data import DataError
from src.data import files as data_files
from src.data.files import read_head, read_lines, read_text


@pytest.fixture
def small_limit(monkeypatch):
    """Files count as large past 64 bytes here (8 MiB in use)."""
    monkeypatch.setattr(data_files, "CHECKED_BYTES", 64)
    return 64


def test_a_small_file_is_read_whole_with_the_lines_read_lines_gives(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\n\nthree\n")
    head = read_head(path, "path")
    assert head.whole and head.lines == read_lines(path, "path") == ["one", "two", "", "three"]
    assert read_text(path, "path") == "one\ntwo\n\nthree\n"  # line endings as Python's text files read them


def test_of_a_large_file_only_whole_lines_of_its_first_part_are_read(tmp_path, small_limit):
    path = tmp_path / "big.txt"
    lines = [f"line number {i}" for i in range(20)]
    path.write_text("\n".join(lines) + "\n")
    head = read_head(path, "path")
    assert not head.whole and head.lines == lines[: len(head.lines)] and 1 < len(head.lines) < 20


def test_a_flaw_past_the_first_part_is_found_only_by_reading_the_whole_file(tmp_path, small_limit):
    path = tmp_path / "big.txt"
    path.write_bytes(b"fine line\n" * 20 + b"na\xefve\n")
    assert not read_head(path, "path").whole
    with pytest.raises(DataError, match=r"big\.txt:21: not valid UTF-8"):
        read_lines(path, "path")


def test_a_flaw_in_the_first_part_names_its_line(tmp_path, small_limit):
    path = tmp_path / "big.txt"
    path.write_bytes(b"fine line\nna\xefve\n" + b"fine line\n" * 20)
    with pytest.raises(DataError, match=r"big\.txt:2: not valid UTF-8 \(.*\): re-encode the file as UTF-8"):
        read_head(path, "path")


def test_a_character_cut_by_the_first_part_is_no_flaw(tmp_path, small_limit):
    path = tmp_path / "one_line.txt"
    path.write_text("ä" * 100, encoding="utf-8")  # two bytes each, no newline: the cut falls inside one at 64
    head = read_head(path, "path")
    assert not head.whole and head.text == "ä" * 32


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "file is empty: set task.path to a file with data"),
        (b" \n\n", "file is empty"),
        (gzip.compress(b"one\ntwo\n")[:-9], "cannot read"),
    ],
    ids=["empty", "blank", "damaged gzip"],
)
def test_the_first_part_is_refused_as_the_whole_file_is(tmp_path, content, message):
    path = tmp_path / ("data.txt.gz" if content[:2] == b"\x1f\x8b" else "data.txt")
    path.write_bytes(content)
    for read in (read_head, read_lines):
        with pytest.raises(DataError, match=message):
            read(path, "path")


def test_a_missing_file_names_the_setting(tmp_path):
    with pytest.raises(DataError, match=r"file not found: set task\.train_path to an existing file"):
        read_head(tmp_path / "missing.tsv", "train_path")
