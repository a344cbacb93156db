"""`make bench-quality`: the quality goals, each trained from scratch with its whole command timed.

    python -m src.bench.quality [--only default|shakespeare|multi30k] [--data DIR]

    default      python -m src.run (reverse): greedy exact match on validation, whole command
    shakespeare  experiment=shakespeare_char on Tiny Shakespeare: loss on the held-out last 10%, whole command
    multi30k     experiment=multi30k_de_en: sacreBLEU (beam search) on test 2016 after its training budget

The data sets are read from DIR (default: a `shared/data` folder beside the repository, holding
`tinyshakespeare/input.txt` and the six `multi30k/*.gz` files); a benchmark whose data is absent is skipped with
a message. Runs go to outputs/bench/<name>/, so their dashboards can be opened afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from src.provenance import python_command

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data"


def timed_run(name: str, *overrides: str) -> tuple[float, dict, dict]:
    """`python -m src.run <overrides>` into outputs/bench/<name>: (whole-command seconds, final metrics, run.json)."""
    run_dir = ROOT / "outputs" / "bench" / name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the benchmark's own scratch folder, rewritten every time
    command = [sys.executable, "-m", "src.run", *overrides, f"hydra.run.dir={run_dir}"]
    print(f"$ {python_command()} {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"error: {name} failed (exit {result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())["final"]
    return seconds, metrics, json.loads((run_dir / "run.json").read_text())


def row(figure: str, measured: str, goal: str, met: bool) -> str:
    return f"| {figure} | {measured} | {goal} | {'met' if met else 'MISSED'} |"


def default_experiment(data: Path) -> list[str]:
    seconds, metrics, _ = timed_run("default")
    exact = metrics["val/exact_match"]
    met = exact >= 0.99 and seconds <= 30
    return [
        row(
            "default run (reverse): val exact match, whole command",
            f"{exact:.1%} in {seconds:.0f} s",
            ">= 99% in <= 30 s",
            met,
        )
    ]


def shakespeare(data: Path) -> list[str]:
    text = data / "tinyshakespeare" / "input.txt"
    if not text.is_file():
        return [f"skipped Tiny Shakespeare: {text} is absent (give --data DIR)"]
    seconds, metrics, _ = timed_run("shakespeare_char", "experiment=shakespeare_char", f"task.path={text}")
    loss = metrics["test/loss"]
    met = loss <= 1.55 and seconds <= 200
    return [
        row(
            "Tiny Shakespeare char LM: loss on the last 10%, whole command",
            f"{loss:.3f} in {seconds:.0f} s",
            "<= 1.55 in <= 200 s",
            met,
        )
    ]


def multi30k(data: Path) -> list[str]:
    folder = data / "multi30k"
    if not (folder / "test_2016_flickr.en.gz").is_file():
        return [f"skipped Multi30k: {folder} lacks the six .gz files (give --data DIR)"]
    seconds, metrics, record = timed_run("multi30k_de_en", "experiment=multi30k_de_en", f"task.data_dir={folder}")
    bleu, lower = metrics["test/sacrebleu"], metrics["test/sacrebleu_lowercase"]
    training = record.get("speed", {}).get("training_s", float("nan"))
    met = bleu >= 35 and training <= 30 * 60
    measured = (
        f"{bleu:.1f} (lowercased {lower:.1f}); training {training / 60:.1f} min, whole command {seconds / 60:.1f} min"
    )
    return [row("Multi30k de-en test 2016 sacreBLEU, beam search", measured, ">= 35 in <= 30 min of training", met)]


BENCHMARKS = {"default": default_experiment, "shakespeare": shakespeare, "multi30k": multi30k}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only these (repeatable)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding the real data sets")
    args = parser.parse_args(argv)
    rows = []
    for name in args.only or list(BENCHMARKS):
        rows.extend(BENCHMARKS[name](args.data))
    print()
    print("| figure | measured | goal | |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
