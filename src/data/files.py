"""Reading data files with one-line errors that name the file, the line and the fix.

Two readers share one decoding: `read_lines` / `read_text` read a whole file when a run builds its data, and
`read_head` reads as much of it as is cheap to check before the run starts (src/cli/preflight.py calls the tasks'
`check_data` before Hydra writes the run directory), so that a missing, unreadable, empty or mis-encoded file is
refused with the same line, and without leaving a run directory behind.
"""

from __future__ import annotations

import codecs
import gzip
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, where

# A data file up to this size is checked whole before a run starts; of a larger one, its first CHECKED_BYTES (cut at
# the last whole line). What lies beyond is read only when the run builds its data: a flaw there ends the run as
# failed, and its run.json says why. 8 MiB decode and split in a few tens of milliseconds.
CHECKED_BYTES = 8 * 1024 * 1024


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


@dataclass(frozen=True)
class Head:
    """The first part of a data file, decoded as the run will decode it. `whole`: it is the whole file (so checks
    that need every line, such as counting lines or labels, can be made on it)."""

    path: Path  # resolved
    text: str  # whole lines only when the file was cut (a partial last line would look like a flaw)
    whole: bool

    @property
    def lines(self) -> list[str]:
        """The lines as read_lines gives them: without line endings, the final newline ending the last line."""
        return split_lines(self.text)


def read_head(path: str | Path, field: str, group: str = "task.", holds: str = "data") -> Head:
    """The first CHECKED_BYTES of a UTF-8 text file (gunzipped if it ends in .gz): the whole file when it is no
    larger. The same one-line errors as read_lines / read_text: not found, unreadable, not UTF-8 (with the line), and
    empty (when read whole)."""
    resolved, raw = _read_bytes(path, field, group, limit=CHECKED_BYTES)
    whole = len(raw) <= CHECKED_BYTES
    if not whole:
        end = raw.rfind(b"\n", 0, CHECKED_BYTES)
        raw = raw[: end + 1] if end >= 0 else raw[:CHECKED_BYTES]  # one long line: its start (decoded below)
    text = _decode(raw, resolved, final=whole)
    if whole:
        _refuse_empty(text, resolved, group, field, holds)
    return Head(resolved, text, whole)


def read_lines(path: str | Path, field: str, group: str = "task.") -> list[str]:
    """All lines of a UTF-8 text file (transparently gunzipped if it ends in .gz), without line endings.

    `group` + `field` name the config setting that points at the file, for the fix in error messages."""
    resolved, raw = _read_bytes(path, field, group)
    text = _decode(raw, resolved)
    _refuse_empty(text, resolved, group, field, "data")
    return split_lines(text)


def read_text(path: str | Path, field: str) -> str:
    """A UTF-8 text file whole (char_lm's text: every character), its line endings read as "\n" (Windows' "\r\n"
    too, as Python's text files read them)."""
    resolved, raw = _read_bytes(path, field, "task.")
    text = universal_newlines(_decode(raw, resolved))
    _refuse_empty(text, resolved, "task.", field, "text")
    return text


def universal_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    return [line.rstrip("\r") for line in lines]


def _read_bytes(path: str | Path, field: str, group: str, limit: int | None = None) -> tuple[Path, bytes]:
    """The file's bytes (at most limit + 1 of them: enough to tell whether there are more)."""
    resolved = resolve_path(path)
    if not resolved.is_file():
        raise DataError(f"{resolved}: file not found: set {group}{field} to an existing file")
    size = -1 if limit is None else limit + 1
    try:
        opened = gzip.open(resolved, "rb") if resolved.suffix == ".gz" else resolved.open("rb")
        with opened as file:
            return resolved, file.read(size)
    except (OSError, EOFError, gzip.BadGzipFile) as error:  # a damaged .gz, no permission to read, ...
        raise DataError(f"{resolved}: cannot read ({error}): check {group}{field} points at an intact file") from error


def _decode(raw: bytes, path: Path, final: bool = True) -> str:
    """UTF-8, without the byte-order mark some editors write (it is not part of the text). `final=False`: `raw` may
    end inside a character (a file's cut first part), which is no error."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=final)
    except UnicodeDecodeError as error:
        line_number = raw[: error.start].count(b"\n") + 1  # 1-based, as editors show it
        raise DataError(
            f"{where(path, line_number)}: not valid UTF-8 ({error.reason}): re-encode the file as UTF-8"
        ) from error
    return text.removeprefix("\ufeff")


def _refuse_empty(text: str, path: Path, group: str, field: str, holds: str) -> None:
    if not text.strip():
        raise DataError(f"{path}: file is empty: set {group}{field} to a file with {holds}")
