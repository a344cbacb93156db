"""Seeds trained together against one run: the wall time of `python -m src.run -m seed=0,...,N-1
hydra/launcher=stacked` over that of one `python -m src.run`, both the default experiment, each a command of its own
(launch, data, training, validation, files: everything a user waits for), measured one after the other on this
machine. The goal (issue: five seeds stacked in at most twice one run's time) is printed beside it by `make bench`.

    python -m src.bench.stacked [--seeds 5] [--steps 600] [--separately]

--separately also times the same seeds as separate jobs (Hydra's basic launcher, one after another).

Beside the figure it prints the floor this machine sets: the least time the members' steps can take when nothing but
their matrix products and attention is computed, each member's products at the machine's own best matrix-multiply
rate (a 1024 x 1024 product's, `step.matmul_peak`) and its attention in PyTorch's fused CPU kernel at the time that
kernel takes in one run's step. Launch, data, the loss, normalisation, activations, the optimizer and validation
all come on top. The goal is within reach only where this floor is below it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

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


def kernel_floor(seeds: int, steps: int, probe_steps: int = 20) -> dict:
    """The least time `seeds` members' `steps` training steps of the default experiment take on this machine if
    they computed nothing but their matrix products and attention (see the module's docstring): one member's step,
    as the run's model, data and optimizer take it (the loop benchmark's bare loop), is counted and profiled."""
    from torch.utils.flop_counter import FlopCounterMode

    from src.bench.loop import SKIP_STEPS, BareLoop
    from src.bench.step import MATMULS, kernel_seconds, matmul_peak
    from src.cli.command_line import compose_run_config

    torch.manual_seed(0)
    bare = BareLoop(compose_run_config(f"trainer.max_steps={steps}"))
    bare.warm_up(SKIP_STEPS)
    with FlopCounterMode(display=False) as counter:
        bare.step()
    # the matrix products' FLOPs only: attention is counted by its kernel's time
    matmul_flops = sum(n for op, n in counter.get_flop_counts()["Global"].items() if f"aten::{op.__name__}" in MATMULS)
    kernels = kernel_seconds(bare.step, probe_steps)
    matmul_s, attention_s = kernels["matmul_s"], kernels["attention_s"]
    peak = matmul_peak()
    per_member_step = matmul_flops / peak + attention_s
    return {
        "matmul_gflop_per_step": matmul_flops / 1e9,
        "matmul_peak_gflop_s": peak / 1e9,
        "matmul_ms_per_step": 1000 * matmul_s,  # as one run's step takes them (for comparison with the peak's)
        "attention_ms_per_step": 1000 * attention_s,
        "floor_s": seeds * steps * per_member_step,
        # the same with the products at the rate one run's step gets from them
        "floor_at_measured_rates_s": seeds * steps * (matmul_s + attention_s),
    }


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
        result.update(kernel_floor(seeds, steps))
        result["floor_vs_one"] = result["floor_s"] / one
        result["floor_at_measured_rates_vs_one"] = result["floor_at_measured_rates_s"] / one
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
