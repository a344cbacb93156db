"""What the framework costs: a full `src.run` training loop against a bare PyTorch loop over the same model, data
and optimizer; the dashboards' cost at their default interval; and the time from launch to the first step.

    python -m src.bench.loop [--steps 605] [--turn 25] [--rounds 3] [overrides...]
    python -m src.bench.loop trainer=gpu        # on one CUDA GPU, in the run's precision (bf16-mixed)

Overrides are `src.run`'s (e.g. `experiment=shakespeare_char task.path=...`): the loop ratio of another experiment.

The two loops take turns inside one training run of `src.run.train` (the function `python -m src.run` calls,
composed from the same configs): after every `turn` steps of the framework's loop, a callback runs `turn` steps of
the bare loop. Each loop's time is summed over its own turns only, so the machine's drift (its speed wanders by 10%
within minutes) reaches both alike. Validation comes after the last timed step. The launch time is measured on a
real `python -m src.run` process.

On a GPU the steps are queued to the device and run while the host prepares the next ones; a clock read on the
host says nothing until the device has caught up. So the device is synchronised only where a turn begins or ends
(where time is read), never inside a turn, and each loop keeps its own overlap of host and device work.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from src.bench.gpu import synchronize
from src.cli.command_line import compose_run_config, user_errors_as_one_line
from src.cli.schema import model_config_for, resolve_precision, to_plain
from src.model import ConfigError
from src.provenance import RunRecord

SKIP_STEPS = 5  # as TrainingSpeed: the first steps pay for allocations and thread start-up


def loop_overrides(steps: int, dashboard_every: int) -> list[str]:
    """The default experiment, validated only once training ends (so the loop itself is what is timed)."""
    return [
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "trainer.enable_progress_bar=false",
        f"dashboard.attention_every_n_steps={dashboard_every}",
    ]


def framework_speed(cfg, callbacks=()) -> dict:
    """`src.run`'s own training function on `cfg`, in a scratch directory: the speed its run.json records."""
    from src.run import train

    lightning_log = logging.getLogger("lightning.pytorch")  # its info lines ("GPU available") reach the real stderr
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as folder:
            record = RunRecord(Path(folder))
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                train(cfg, Path(folder), record, callbacks=callbacks)
            return dict(record.data["speed"])
    finally:
        lightning_log.setLevel(level)


def dashboard_overrides(every: int) -> list[str]:
    """The default experiment with its dashboards and validations at their default interval, for two intervals."""
    return [f"trainer.max_steps={2 * every}", "trainer.enable_progress_bar=false"]


def every_epoch(loader):
    """The loader's batches epoch after epoch, each epoch reshuffled and collated afresh as in the framework's loop.
    (``itertools.cycle`` would replay the first epoch's batches from memory and skip the data pipeline.)"""
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        yield from loader


AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}  # trainer.precision -> autocast dtype
FULL_PRECISION = ("32-true", "32")
GPU_ACCELERATORS = ("gpu", "cuda")


def bare_loop_device(trainer) -> torch.device:
    """The one device both loops train on: the CPU, or the first CUDA GPU for trainer.accelerator=gpu (or cuda)."""
    return torch.device("cuda" if str(trainer.accelerator) in GPU_ACCELERATORS else "cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype Lightning's mixed precision autocasts to for `trainer.precision` (None: full precision). On a CPU
    Lightning trains 16-mixed in bf16 (it has no fp16 autocast there and says so), and so does the bare loop."""
    dtype = AUTOCAST.get(precision)
    if dtype is torch.float16 and device.type == "cpu":
        return torch.bfloat16
    return dtype


def check_comparable(cfg) -> None:
    """The bare loop copies a one-process run on one device (the CPU or one CUDA GPU) of a token-level task that
    steps the optimizer every batch: a ratio against any other run would compare different loops, so other
    settings are refused. Several devices stay refused: their loop is DDP's (a process per device, gradients
    averaged across them each step), which a one-process bare loop does not have; so does an accelerator other
    than cpu, gpu or cuda (auto would leave the choice of device to Lightning)."""
    from src.data import task_spec
    from src.data.registry import task_kind

    trainer = cfg.trainer
    accelerator = str(trainer.accelerator)
    if accelerator not in ("cpu", *GPU_ACCELERATORS) or str(trainer.devices) != "1":
        raise ConfigError(
            f"trainer.accelerator={accelerator} trainer.devices={trainer.devices}: the bare loop runs in one process "
            "on one device: measure with trainer=cpu, or trainer=gpu (one GPU)"
        )
    if accelerator in GPU_ACCELERATORS and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator}: no CUDA GPU is visible here: measure on a machine with one, or with "
            "trainer=cpu"
        )
    precision = str(resolve_precision(trainer.precision, accelerator))  # auto: what src.run trains in here
    if precision not in AUTOCAST and precision not in FULL_PRECISION:
        raise ConfigError(
            f"trainer.precision={precision}: the bare loop mirrors 32-true, bf16-mixed and 16-mixed: measure with one "
            "of them"
        )
    accumulate = trainer.get("accumulate_grad_batches", 1)
    if accumulate != 1:
        raise ConfigError(
            f"trainer.accumulate_grad_batches={accumulate}: the bare loop steps the optimizer every batch: measure "
            "with 1"
        )
    if not task_kind(task_spec(cfg.task.name).kind).predicts_tokens:
        raise ConfigError(
            f"task={cfg.task.name} classifies: the loop benchmark compares token-level tasks (seq2seq or lm)"
        )


class BareLoop:
    """The same model, data, optimizer, step schedule, loss, gradient clipping, device and precision as `cfg`'s
    run, in a plain PyTorch loop: the run's own TransformerLitModule computes the loss, with no Trainer around it.
    (A time budget's decay is left out: it changes the learning rate, not the speed.)

    What Lightning does around a step, done here by hand: the batch moved to the device (non-blocking, with
    Lightning's own function), autocast as Lightning's mixed-precision plugin opens it (its dtype, no weight-cast
    cache), and under 16-mixed on a GPU a gradient scaler (loss scaled, gradients unscaled before clipping, the
    optimizer step skipped on an overflow)."""

    def __init__(self, cfg):
        from src.data import build_datamodule
        from src.training.module import TransformerLitModule
        from src.training.optim import build_optimizer

        check_comparable(cfg)  # before any data is read
        datamodule = build_datamodule(
            cfg.task, cfg.batch_size, cfg.seed, num_workers=cfg.num_workers, bucket_by_length=cfg.bucket_by_length
        )
        model_cfg = model_config_for(cfg, datamodule.src_vocab_size, datamodule.tgt_vocab_size, datamodule.num_classes)
        self.device = bare_loop_device(cfg.trainer)
        self.module = TransformerLitModule(to_plain(cfg), asdict(model_cfg), datamodule.kind).to(self.device).train()
        precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)  # auto: as src.run settles it
        mixed = autocast_dtype(str(precision), self.device)  # None: full precision
        self.mixed = mixed
        self.scaler = torch.amp.GradScaler("cuda") if mixed is torch.float16 else None  # fp16 on a GPU only
        steps = cfg.trainer.max_steps
        built = build_optimizer(self.module.model, cfg.optimizer, model_cfg.d_model, steps, mixed_precision=bool(mixed))
        self.optimizer, self.scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
        self.clip = cfg.trainer.gradient_clip_val
        self.batches = every_epoch(datamodule.train_dataloader())

    def step(self) -> torch.Tensor:
        """One training step; returns the number of targets it was scored on, as a tensor on the device (reading
        it would wait for the device: the caller sums the steps' counts and reads them once)."""
        batch = move_data_to_device(next(self.batches), self.device)
        module = self.module
        with self.autocast():
            target = module._target(batch)  # what training_step scores (a prefix-LM's prefix left out)
            loss, targets = module.loss(module(batch).logits, target, module.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # before clipping, as Lightning does
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        return targets

    def autocast(self) -> torch.autocast:
        """As Lightning's mixed-precision plugin opens it around the training step (no weight-cast cache); off in
        full precision."""
        dtype = self.mixed or torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.mixed is not None, cache_enabled=False)

    def warm_up(self, steps: int) -> None:
        """Untimed steps, as the framework's first SKIP_STEPS are: allocations, kernel choices and (under
        compile=true) the compilation of this loop's own copy of the model stay out of its turns."""
        for _ in range(steps):
            self.step()
        synchronize(self.device)


class TakeTurns(L.Callback):
    """Inside the framework's run: after every `turn` framework steps, `turn` steps of the bare loop.

    A framework turn is timed from this callback's return at the batch start that begins it to its call at the
    batch start after its last step, so it holds everything Lightning and the run's other callbacks do per step
    (and this callback's own few microseconds per step: a pointer kept, a count added on the device); the bare
    turns are left out of it. The last callback of the run but the checkpoints, this one sees every step whole.
    The run's last step is not timed: its end falls in the final validation. The device is synchronised where
    a turn's time is read, and nowhere else (see the module's docstring)."""

    def __init__(self, bare: BareLoop, turn: int, skip_steps: int = SKIP_STEPS):
        self.bare, self.turn, self.skip_steps = bare, turn, skip_steps
        self.seconds = {"framework": 0.0, "bare": 0.0}
        self.tokens = {"framework": 0, "bare": 0}
        self.steps = {"framework": 0, "bare": 0}
        self._turn_began: float | None = None  # when the framework's current turn began (None: not timing now)
        self._turn_steps = 0  # framework steps done in the current turn
        self._turn_targets: torch.Tensor | None = None  # what they were scored on, summed on the device

    def _now(self) -> float:
        synchronize(self.bare.device)
        return time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._turn_began is None:
            return
        targets = outputs["targets"]  # training_step's count of scored targets, a tensor on the device
        self._turn_targets = targets if self._turn_targets is None else self._turn_targets + targets
        self._turn_steps += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        last = trainer.global_step == trainer.max_steps - 1
        if self._turn_began is not None and (self._turn_steps == self.turn or (last and self._turn_steps)):
            ended = self._now()
            self.seconds["framework"] += ended - self._turn_began
            self.steps["framework"] += self._turn_steps
            self.tokens["framework"] += int(self._turn_targets) if self._turn_targets is not None else 0
            if self._turn_steps == self.turn:
                self._bare_turn()
            self._turn_began, self._turn_steps, self._turn_targets = None, 0, None
        if self._turn_began is None and trainer.global_step >= self.skip_steps and not last:
            self._turn_began = self._now()

    def _bare_turn(self) -> None:
        started = self._now()
        targets = torch.zeros((), dtype=torch.long, device=self.bare.device)
        for _ in range(self.turn):
            targets += self.bare.step()
        self.seconds["bare"] += self._now() - started
        self.tokens["bare"] += int(targets)
        self.steps["bare"] += self.turn

    def summary(self) -> dict[str, float]:
        framework = self.tokens["framework"] / self.seconds["framework"]
        bare = self.tokens["bare"] / self.seconds["bare"]
        bare_step_ms = 1000 * self.seconds["bare"] / self.steps["bare"]
        return {
            "framework_tokens_per_s": framework,
            "bare_tokens_per_s": bare,
            "framework_vs_bare": framework / bare,
            # from the token rates: the two loops' batches differ in their number of tokens
            "framework_ms_per_step": bare_step_ms * (bare / framework - 1),
            "bare_step_ms": bare_step_ms,
        }


def framework_vs_bare(cfg, turn: int = 25) -> dict[str, float]:
    """One run of `cfg` with the bare loop taking turns (see `TakeTurns`): both loops' tokens per second, their
    ratio, and what the framework adds to a step in milliseconds."""
    torch.manual_seed(cfg.seed)
    bare = BareLoop(cfg)
    bare.warm_up(SKIP_STEPS)
    turns = TakeTurns(bare, turn)
    # A full garbage collection of this process's long-lived objects takes about a quarter of a second and would
    # land in one loop's turn at random; a default run of `python -m src.run` did none once training had begun.
    gc.collect()
    gc.freeze()
    try:
        framework_speed(cfg, callbacks=[turns])
    finally:
        gc.unfreeze()
    return turns.summary()


def launch_to_first_step(runs: int = 3, overrides: Sequence[str] = ()) -> float:
    """Median seconds from starting `python -m src.run [overrides]` to its first training step, as its run.json
    records (the default experiment when no overrides are given; trainer=gpu: on a GPU)."""
    times = []
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            command = [
                sys.executable,
                "-m",
                "src.run",
                *overrides,
                "trainer.max_steps=10",
                "logger=none",
                f"hydra.run.dir={folder}",
            ]
            subprocess.run(command, check=True, capture_output=True, env=env)
            times.append(json.loads((Path(folder) / "run.json").read_text())["speed"]["launch_to_first_step_s"])
    return statistics.median(times)


def measure(steps: int = 605, turn: int = 25, rounds: int = 3, overrides: Sequence[str] = ()) -> dict:
    """The loop ratio: the median over `rounds` runs, each with the two loops taking turns of `turn` steps.

    The dashboards' cost is the share of training time their callbacks spent logging (attention maps and head
    statistics every `dashboard.attention_every_n_steps` steps, text samples at each validation, both at their
    default interval), as each run records it. It is about 1%, below what a throughput difference
    between two runs on this machine can resolve."""
    default_every = compose_run_config(*overrides).dashboard.attention_every_n_steps
    # dashboards only once training has ended
    plain = compose_run_config(*overrides, *loop_overrides(steps, dashboard_every=0))
    with_dashboards = compose_run_config(*overrides, *dashboard_overrides(default_every))
    runs, dashboard_shares = [], []
    for _ in range(rounds):
        runs.append(framework_vs_bare(plain, turn))
        dashboard_shares.append(framework_speed(with_dashboards).get("dashboard_share", 0.0))  # 0: none (logger=none)
    result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return {
        **result,
        "framework_vs_bare_per_round": [round(run["framework_vs_bare"], 3) for run in runs],
        "dashboard_cost": statistics.median(dashboard_shares),
        "dashboard_every": default_every,
        "launch_to_first_step_s": launch_to_first_step(overrides=overrides),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=605, help="training steps of the framework's run")
    parser.add_argument("--turn", type=int, default=25, help="steps each loop runs before the other takes over")
    parser.add_argument("--rounds", type=int, default=3, help="runs of the two loops (median ratio reported)")
    parser.add_argument("overrides", nargs="*", help="src.run overrides (the default experiment if none)")
    args = parser.parse_args(argv)
    if args.turn < 1 or args.rounds < 1:
        parser.error("--turn and --rounds must be at least 1")
    least = SKIP_STEPS + args.turn + 1  # warm-up, one whole turn, and the last step (its time ends in validation)
    if args.steps < least:
        parser.error(
            f"--steps {args.steps} leaves the bare loop no turn: give --steps {least} or more, or a lower --turn"
        )
    with user_errors_as_one_line():  # a mistyped override: one line, as from src.run
        figures = measure(args.steps, args.turn, args.rounds, args.overrides)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
