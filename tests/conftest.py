"""Fixtures shared by the tests of the top-level modules (schema, validation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from src.schema import register_configs

ROOT = Path(__file__).resolve().parents[1]
register_configs()


def compose_config(*overrides: str):
    """The config `python -m src.run <overrides>` would get, composed in-process (no subprocess start)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


@pytest.fixture
def compose():
    return compose_config


@pytest.fixture
def text_files(tmp_path):
    """Tiny data files for the file-based tasks (validation only checks that they exist)."""
    paths = {}
    for name, content in {
        "text.txt": "hello world\n" * 20,
        "src.txt": "ein haus\n",
        "tgt.txt": "a house\n",
        "train.tsv": "good film\t1\nbad film\t0\n",
    }.items():
        (tmp_path / name).write_text(content)
        paths[name] = str(tmp_path / name)
    return paths


@pytest.fixture
def translation_overrides(text_files):
    """task=translation with every file field set, plus the given overrides."""

    def overrides(*extra: str) -> list[str]:
        sides = [
            f"task.{split}_{side}={text_files['src.txt'] if side == 'src' else text_files['tgt.txt']}"
            for split in ("train", "val", "test")
            for side in ("src", "tgt")
        ]
        return ["task=translation", *sides, *extra]

    return overrides
