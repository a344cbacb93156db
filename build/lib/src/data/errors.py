"""The one exception type the data layer raises for bad data or bad task settings."""

from __future__ import annotations


class DataError(ValueError):
    """Bad data or task settings. The message is one line: the file (and line number when there is
    one), what is wrong, and how to fix it. Raised while the datamodule is built, before training."""


def where(path, line_number: int | None = None) -> str:
    """'path' or 'path:line' for error messages (line numbers are 1-based, as editors show them)."""
    return f"{path}:{line_number}" if line_number is not None else str(path)
