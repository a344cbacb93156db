"""What the framework costs: a full `src.run` training loop against a bare PyTorch loop over the same model, data
and optimizer; the dashboards' cost at their default interval; and the time from launch to the first step.

    python -m src.bench.loop [--steps 300] [--rounds 7]

The loops run side by side in this process, alternating, through `src.run.train` (the function `python -m src.run`
calls, composed from the same configs); each reports training tokens per second once 5 steps have warmed up, with
validation time left out. The launch time is measured on a real `python -m src.run` process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from src.cli import compose_run_config
from src.model import PAD_ID, build_model
from src.provenance import RunRecord
from src.schema import model_config_for

SKIP_STEPS = 5  # as TrainingSpeed: the first steps pay for allocations and thread start-up


def loop_overrides(steps: int, dashboard_every: int) -> list[str]:
    """The default experiment, validated only once training ends (so the loop itself is what is timed)."""
    return [
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "trainer.enable_progress_bar=false",
        f"dashboard.attention_every_n_steps={dashboard_every}",
    ]


def framework_speed(cfg) -> dict:
    """`src.run`'s own training function on `cfg`, in a scratch directory: the speed its run.json records."""
    from src.run import train

    with tempfile.TemporaryDirectory() as folder:
        record = RunRecord(Path(folder))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            train(cfg, Path(folder), record)
        return dict(record.data["speed"])


def framework_tokens_per_s(cfg) -> float:
    return float(framework_speed(cfg)["tokens_per_s"])


def dashboard_overrides(every: int) -> list[str]:
    """The default experiment with its dashboards and validations at their default interval, for two intervals."""
    return [f"trainer.max_steps={2 * every}", "trainer.enable_progress_bar=false"]


def every_epoch(loader):
    """The loader's batches epoch after epoch, each epoch reshuffled and collated afresh as in the framework's loop.
    (``itertools.cycle`` would replay the first epoch's batches from memory and skip the data pipeline.)"""
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        yield from loader


def bare_tokens_per_s(cfg) -> float:
    """The same model, data, optimizer, schedule and gradient clipping, in a plain PyTorch loop."""
    from src.data import build_datamodule
    from src.training.inference import forward_batch
    from src.training.optim import build_optimizer

    torch.manual_seed(cfg.seed)
    datamodule = build_datamodule(cfg.task, cfg.batch_size, cfg.seed)
    model_cfg = model_config_for(cfg, datamodule.src_vocab_size, datamodule.tgt_vocab_size, datamodule.num_classes)
    model = build_model(model_cfg).train()
    steps = cfg.trainer.max_steps
    built = build_optimizer(model, cfg.optimizer, model_cfg.d_model, steps)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    batches = every_epoch(datamodule.train_dataloader())
    tokens, started = 0, 0.0
    for step in range(steps):
        if step == SKIP_STEPS:
            tokens, started = 0, time.perf_counter()
        batch = next(batches)
        logits = forward_batch(model, datamodule.kind, batch).logits
        target = batch["tgt_out"]
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        scheduler.step()
        tokens += int((target != PAD_ID).sum())
    return tokens / (time.perf_counter() - started)


def launch_to_first_step(runs: int = 3) -> float:
    """Median seconds from starting `python -m src.run` to its first training step, as its run.json records."""
    times = []
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            command = [
                sys.executable,
                "-m",
                "src.run",
                "trainer.max_steps=10",
                "logger=none",
                f"hydra.run.dir={folder}",
            ]
            subprocess.run(command, check=True, capture_output=True, env=env)
            times.append(json.loads((Path(folder) / "run.json").read_text())["speed"]["launch_to_first_step_s"])
    return statistics.median(times)


def measure(steps: int = 300, rounds: int = 7) -> dict[str, float]:
    """Each round runs the framework's loop and the bare loop back to back (the order alternating between rounds)
    and forms their ratio; the median of those ratios is reported. The speed of a shared 2-core machine drifts by
    10% over minutes: a ratio of neighbouring runs cancels the drift, a ratio of separate medians does not.

    The dashboards' cost is the share of training time their callbacks spent logging (attention maps and head
    statistics every `dashboard.attention_every_n_steps` steps, text samples at each validation, both at their
    default interval), as each run records it. It is about 1%, below what a throughput difference
    between two runs on this machine can resolve."""
    default_every = compose_run_config().dashboard.attention_every_n_steps
    plain = compose_run_config(*loop_overrides(steps, dashboard_every=0))  # dashboards only once training has ended
    with_dashboards = compose_run_config(*dashboard_overrides(default_every))
    framework, bare, dashboard_shares = [], [], []
    for round_index in range(rounds):
        if round_index % 2 == 0:
            framework.append(framework_tokens_per_s(plain))
            bare.append(bare_tokens_per_s(plain))
        else:
            bare.append(bare_tokens_per_s(plain))
            framework.append(framework_tokens_per_s(plain))
        dashboard_shares.append(framework_speed(with_dashboards)["dashboard_share"])
    framework_vs_bare = [f / b for f, b in zip(framework, bare)]
    return {
        "framework_tokens_per_s": statistics.median(framework),
        "bare_tokens_per_s": statistics.median(bare),
        "framework_vs_bare": statistics.median(framework_vs_bare),
        "framework_vs_bare_per_round": [round(ratio, 3) for ratio in framework_vs_bare],
        "dashboard_cost": statistics.median(dashboard_shares),
        "dashboard_every": default_every,
        "launch_to_first_step_s": launch_to_first_step(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per timed loop")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the loops (median ratio reported)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.steps, args.rounds), indent=2))


if __name__ == "__main__":
    main()
