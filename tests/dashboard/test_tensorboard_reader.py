"""Reading event files back (the other tests read real runs through it)."""

import pytest

from src.dashboard import read_events


def test_reader_explains_a_directory_without_event_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="TensorBoardLogger"):
        read_events(tmp_path)
