"""Shared helpers for the end-to-end tests: run the real command lines in subprocesses, on tiny settings.

Every run writes under pytest's tmp_path (hydra.run.dir / hydra.sweep.dir), never into outputs/.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A model and a schedule small enough that a run costs seconds: the point is the plumbing, not the accuracy.
TINY = [
    "model.d_model=16",
    "model.heads=2",
    "model.layers=1",
    "model.d_ff=32",
    "model.dropout=0.0",
    "trainer.max_steps=12",
    "trainer.val_check_interval=6",
    "trainer.enable_progress_bar=false",
    "optimizer.warmup_steps=4",
    "batch_size=16",
    "dashboard.attention_every_n_steps=6",
    "torch_threads=1",
]
SMALL_SYNTHETIC = ["task.train_size=200", "task.val_size=32", "task.test_size=32"]


def run_module(module: str, *args: str, timeout: int = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    return result


def run_here(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` in this test process, through the module's own entry function (tests/conftest.py
    run_in_process): the imports are done already, a few seconds less per command than a subprocess, and what a
    process says once (a warning) is said again, as by a new process. For commands whose process itself is not under
    test (signals, environment, the console scripts keep run_module)."""
    from tests.conftest import run_in_process

    code, out, err = run_in_process(module, *args)
    return subprocess.CompletedProcess([module, *args], code, out, err)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    )
    return result


WORDS_DE = "ein mann eine frau hund katze sieht läuft spielt im park auf der straße mit dem ball".split()
WORDS_EN = "a man a woman dog cat sees runs plays in the park on the street with the ball".split()


def parallel_lines(n: int, seed: int) -> tuple[list[str], list[str]]:
    """n made-up sentence pairs (word i of German <-> word i of English), deterministic."""
    import random

    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        idx = [rng.randrange(len(WORDS_DE)) for _ in range(rng.randint(3, 8))]
        src.append(" ".join(WORDS_DE[i] for i in idx))
        tgt.append(" ".join(WORDS_EN[i] for i in idx))
    return src, tgt


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Small files for the file-based tasks, written once per session."""
    root = tmp_path_factory.mktemp("data")
    # char_lm: any text
    (root / "text.txt").write_text("To be, or not to be, that is the question.\n" * 60)
    # translation: parallel files per split
    for split, n, seed in (("train", 120, 0), ("val", 16, 1), ("test", 16, 2)):
        src, tgt = parallel_lines(n, seed)
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(tgt) + "\n")
    # multi30k: the six gzip files the task would download, pre-filled so nothing is downloaded
    m30k = root / "multi30k"
    m30k.mkdir()
    for stem, n, seed in (("train", 120, 3), ("val", 16, 4), ("test_2016_flickr", 16, 5)):
        src, tgt = parallel_lines(n, seed)
        for lang, lines in (("de", src), ("en", tgt)):
            with gzip.open(m30k / f"{stem}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    # classification: sentence<TAB>label
    rows = [
        f"{'great good fine' if i % 2 else 'bad awful poor'} movie number {i}\t{'pos' if i % 2 else 'neg'}"
        for i in range(80)
    ]
    (root / "sentiment.tsv").write_text("\n".join(rows) + "\n")
    return root


def task_overrides(task: str, data: Path) -> list[str]:
    """The overrides each task needs (files, small sizes)."""
    if task in ("copy", "reverse", "sort"):
        return [f"task={task}", *SMALL_SYNTHETIC]
    if task == "addition":
        return ["task=addition", *SMALL_SYNTHETIC]
    if task == "char_lm":
        return [
            "task=char_lm",
            f"task.path={data / 'text.txt'}",
            "task.block_size=32",
            "task.val_fraction=0.1",
            "task.test_fraction=0.1",
        ]
    if task == "translation":
        files = [
            f"task.{split}_{side}={data / f'{split}.{lang}'}"
            for split in ("train", "val", "test")
            for side, lang in (("src", "de"), ("tgt", "en"))
        ]
        return ["task=translation", *files, "task.vocab_size=120", "task.max_len=16"]
    if task == "multi30k":
        return ["task=multi30k", f"task.data_dir={data / 'multi30k'}", "task.vocab_size=120", "task.max_len=16"]
    if task == "classification":
        return ["task=classification", f"task.train_path={data / 'sentiment.tsv'}", "task.max_len=16"]
    raise ValueError(task)
