"""Decoding speed and KV-cache size of trained decoder-only runs, side by side in one process: the other half of a
study of grouped-query attention (experiments/kv_heads.md), whose sweep report gives the quality.

    python -m src.bench.decoding <run or sweep directory>... [--batch 64] [--repeats 3] [--threads 1]

Each run's model (its last checkpoint) continues `batch` one-token prompts greedily with the KV cache until its
context is full. The runs are timed in turns, `repeats` rounds, so that a slow moment of the machine falls on every
run alike, and each run keeps its median. The cache is counted at the full context. Runs that differ only in their
seed are one configuration: the table gives each configuration's mean ± std over its seeds (n). A configuration is
named as the sweep report names it (src/sweep/report.py): by every setting that differs between the runs given, the
data files included, so runs on different data never share a mean; the settings they share are said once above.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from src.bench.gpu import host_cpu
from src.bench.pretrained import cache_bytes
from src.model import generate
from src.model.config import ARCHITECTURES
from src.model.names import DECODER
from src.provenance import module_command
from src.sweep.report import Configuration, make_group
from src.sweep.runs import Run, job_number, read_run
from src.sweep.statistics import short


@dataclass
class Measured:
    run: Path
    parameters: int
    kv_heads: int
    heads: int
    cache_mib: float  # the KV cache at the full context, for the whole batch
    seconds: list[float] = field(default_factory=list)  # one per round
    new_tokens: int = 0  # per round, the whole batch


def run_dirs(paths: list[str]) -> list[Path]:
    """The run directories under each path (a run, or a sweep whose jobs are numbered folders), each with its
    last checkpoint."""
    found = []
    for path in map(Path, paths):
        if (path / "checkpoints" / "last.ckpt").is_file():
            found.append(path)
            continue
        runs = sorted(
            (ckpt.parents[1] for ckpt in path.glob("*/checkpoints/last.ckpt")),
            key=lambda run: (job_number(run), run.name),
        )
        if not runs:
            raise SystemExit(f"error: {path} holds no run with checkpoints/last.ckpt: give a run or sweep directory")
        found += runs
    return found


def configurations(runs: list[Path]) -> tuple[list[Configuration], dict[str, str]]:
    """The runs' configurations, in job order, each named as the sweep report names a row (`model.kv_heads=4`), and
    the settings every run shares. What splits configurations is the report's: every setting typed for a run that
    changes the experiment (task.path included) and differs between the runs, seed aside (make_group); the runs of
    one configuration have the same value of each, and its name gives them as its first run typed them."""
    read = [read_run(run) for run in runs]
    group = make_group("", None, read, swept=set(), search=False)
    pooled: dict[tuple[str, ...], list[Run]] = {}
    for run in read:
        pooled.setdefault(tuple(run.value(key) for key in group.varied), []).append(run)
    named = []
    for values, members in pooled.items():
        shown = tuple((key, members[0].settings.get(key, value)) for key, value in zip(group.varied, values))
        named.append(Configuration(shown, members))
    return named, group.fixed


def load(run: Path, batch: int) -> tuple[torch.nn.Module, Measured]:
    from src.training.checkpoint import load_run

    module, _ = load_run(str(run / "checkpoints" / "last.ckpt"))
    model = module.model.eval()
    cfg = model.cfg
    if ARCHITECTURES[cfg.arch].stacks != (DECODER,):  # the decoder alone
        raise SystemExit(f"error: {run} is a {cfg.arch} model: this measures decoder-only runs")
    with torch.no_grad():  # the cache of a full context: every position of every row
        full_cache = cache_bytes(model, torch.full((batch, cfg.max_len), cfg.bos_id))
    measured = Measured(
        run=run,
        parameters=sum(p.numel() for p in model.parameters()),
        kv_heads=cfg.kv_head_count,
        heads=cfg.heads,
        cache_mib=full_cache / 2**20,
    )
    return model, measured


def decode_once(model, batch: int) -> tuple[float, int]:
    """Seconds to continue `batch` one-token prompts to the full context, greedily, with the KV cache; new tokens."""
    prompt = torch.full((batch, 1), model.cfg.bos_id)
    start = time.perf_counter()
    with torch.no_grad():
        out = generate(model, prompt=prompt, max_new_tokens=model.cfg.max_len)
    return time.perf_counter() - start, out.numel()


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:,.0f} (n=1)"
    return f"{statistics.mean(values):,.0f} ± {statistics.stdev(values):,.0f} (n={len(values)})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog=module_command("src.bench.decoding"), description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run or sweep directories")
    parser.add_argument("--batch", type=int, default=64, help="sequences decoded together (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds over every run (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = run_dirs(args.runs)
    grouped, shared = configurations(runs)
    loaded = [load(run, args.batch) for run in runs]
    for model, _ in loaded:  # a first, untimed pass: allocations and kernels warmed alike
        decode_once(model, args.batch)
    for _ in range(args.repeats):
        for model, measured in loaded:
            seconds, tokens = decode_once(model, args.batch)
            measured.seconds.append(seconds)
            measured.new_tokens = tokens

    print(f"machine: {host_cpu()}, {args.threads} torch thread(s), batch {args.batch}")
    if shared:
        print(f"every run: {', '.join(f'{key}={short(value)}' for key, value in shared.items())}")
    print()
    print("| configuration | parameters | KV heads / heads | KV cache at full context (MiB) | decoding tokens/s |")
    print("| --- | --- | --- | --- | --- |")
    by_run = {m.run: m for _, m in loaded}
    for configuration in grouped:
        members = [by_run[run.directory] for run in configuration.runs]
        speeds = [m.new_tokens / statistics.median(m.seconds) for m in members]
        parameters = sorted({m.parameters for m in members})
        first = members[0]
        print(
            f"| {configuration.label} | {', '.join(f'{p:,}' for p in parameters)} | {first.kv_heads} / {first.heads} | "
            f"{first.cache_mib:.4g} | {mean_std(speeds)} |"
        )


if __name__ == "__main__":
    main()
