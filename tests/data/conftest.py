"""Shared fixtures for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# Real public datasets live next to the repository (never copied into it); tests using them skip when absent.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def shared_file():
    """shared_file("multi30k", "train.de.gz") -> the path, or skip the test when it is absent."""

    def find(*parts: str) -> Path:
        path = SHARED_DATA.joinpath(*parts)
        if not path.exists():
            pytest.skip(f"shared dataset not available: {path}")
        return path

    return find
