"""Seeds trained together against one run: the wall time of `python -m src.run -m seed=0,...,N-1
hydra/launcher=stacked` over that of one `python -m src.run`, both the default experiment, each a command of its own
(launch, data, training, validation, files: everything a user waits for), measured one after the other on this
machine. The goal (issue: five seeds stacked in at most twice one run's time) is printed beside it by `make bench`.

    python -m src.bench.stacked [--seeds 5] [--steps 600] [--separately]

--separately also times the same seeds as separate jobs (Hydra's basic launcher, one after another).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def timed(*args: str) -> float:
    """Seconds `python -m src.run <args>` takes, start to exit (it must succeed)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "src.run", *args], cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"src.run {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return seconds


def measure(seeds: int = 5, steps: int = 600, separately: bool = False) -> dict:
    settings = [f"trainer.max_steps={steps}", "trainer.enable_progress_bar=false"]
    seed_list = ",".join(str(seed) for seed in range(seeds))
    with tempfile.TemporaryDirectory() as directory:
        where = Path(directory)
        one = timed(*settings, f"hydra.run.dir={where / 'one'}")
        stacked = timed(
            "-m", f"seed={seed_list}", "hydra/launcher=stacked", *settings, f"hydra.sweep.dir={where / 's'}"
        )
        result = {
            "seeds": seeds,
            "steps": steps,
            "one_run_s": one,
            "stacked_s": stacked,
            "stacked_vs_one": stacked / one,
        }
        if separately:
            apart = timed("-m", f"seed={seed_list}", *settings, f"hydra.sweep.dir={where / 'apart'}")
            result.update(separately_s=apart, separately_vs_one=apart / one)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--separately", action="store_true", help="also time the seeds as separate jobs")
    args = parser.parse_args(argv)
    figures = measure(args.seeds, args.steps, args.separately)
    for key, value in figures.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
