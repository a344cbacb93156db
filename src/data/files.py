"""Reading data files with one-line errors that name the file, the line and the fix."""

from __future__ import annotations

import gzip
from pathlib import Path

from .errors import DataError, where


def resolve_path(path: str | Path) -> Path:
    """Relative paths are relative to where the run was started (Hydra may change the cwd of a job)."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import to_absolute_path

        if HydraConfig.initialized():
            return Path(to_absolute_path(str(path)))
    except ImportError:  # pragma: no cover - hydra is a dependency, but the data layer does not need it
        pass
    return Path.cwd() / path


def as_sentence(line: str) -> str:
    """A line of text as the sentence tasks read it: without the whitespace around it, which is layout, not part of
    the sentence (a bpe tokenizer would make pieces of it). Their training data, eval and predict all read a
    sentence through this, so the same line always means the same ids."""
    return line.strip()


def read_lines(path: str | Path, field: str, group: str = "task.") -> list[str]:
    """All lines of a UTF-8 text file (transparently gunzipped if it ends in .gz), without line endings.

    `group` + `field` name the config setting that points at the file, for the fix in error messages."""
    path = resolve_path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found: set {group}{field} to an existing file")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: cannot read ({error}): check {group}{field} points at an intact file") from error
    raw_lines = raw.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the final newline ends the last line; it does not start a new one
    lines = []
    for line_number, raw_line in enumerate(raw_lines, start=1):  # decoded per line for an exact line number
        try:
            lines.append(raw_line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as error:
            raise DataError(
                f"{where(path, line_number)}: not valid UTF-8 ({error.reason}): re-encode the file as UTF-8"
            ) from error
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]  # a byte-order mark some editors write is not part of the text
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: file is empty: set {group}{field} to a file with data")
    return lines


def read_text(path: str | Path, field: str) -> str:
    path = resolve_path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found: set task.{field} to an existing file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line_number = path.read_bytes()[: error.start].count(b"\n") + 1
        raise DataError(
            f"{where(path, line_number)}: not valid UTF-8 ({error.reason}): re-encode the file as UTF-8"
        ) from error
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the text
    if not text.strip():
        raise DataError(f"{path}: file is empty: set task.{field} to a file with text")
    return text
