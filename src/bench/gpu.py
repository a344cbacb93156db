"""`make bench-gpu`: the GPU figures (issue 25) beside their goals, measured on one CUDA GPU in under 8 minutes.

    python -m src.bench.gpu [--out DIR] [--data DIR] [--budget-s 450] [--only STEP ...]

The steps, in the order they run (the goals are the issue's, for one NVIDIA H200):

  peak                 bf16 matrix-multiply rate, products of two 8192 x 8192 matrices: what utilisation is counted
                       against
  base_shape           the paper's base shape (d_model 512, 8 heads, 6+6 layers, d_ff 2048, vocabulary 32,000,
                       dropout 0.1), bf16 autocast, fused AdamW, batches of 128 x 256 tokens: our model against
                       torch.nn.Transformer side by side (target tokens/s; goal: ahead) and our model FLOPs
                       utilisation (goal: >= 45% of the peak); also on padded batches (a quarter padding)
  attention_kernels    which scaled_dot_product_attention back end (flash, efficient, cudnn, math) runs, for a
                       causal mask without padding and with padding (decoder-only), and in the encoder-decoder
  default              the default experiment on the GPU (`python -m src.run trainer=gpu`): its 600 steps' time
                       (goal: <= 4 s of training) and launch to the first step (<= 6 s); then 8 seeds trained
                       together (hydra/launcher=stacked), whole command against that one run (<= 1.2x)
  loop                 the framework's loop against a bare PyTorch loop on the GPU (src/bench/loop.py; >= 0.95)
  multi30k             experiment=multi30k_de_en on the GPU with a 60 s training budget: test sacreBLEU (>= 35)
  default_compiled     the default experiment with compile=true: does torch.compile pay on its step rate?
  base_shape_compiled  the base shape under torch.compile, ours and torch.nn.Transformer

Each step runs in a process of its own (`--step NAME`, which writes what it has measured to a JSON file as it
goes) under a hard time limit: when its time is up its whole process group is killed, and what it measured
before is kept. A step that fails or runs out of time prints its error line, and the next step runs. Steps are
started only while the whole budget (--budget-s, 450 s: with start-up, under 8 minutes) lasts; a step gets the
lesser of its own limit and what is left. The figures are printed as a table, each beside its goal, under the GPU's
name and the torch version, and written to <out>/gpu.json; every step's own output goes to <out>/steps.log.
The exit status is 0 when every step ran through (whether or not its goals were met), 1 when one failed, ran out
of time or was skipped, and 2 without a CUDA GPU (one `error:` line).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:
    import torch
except ModuleNotFoundError:  # make bench-gpu runs GPU_PYTHON (python3 by default), which may lack torch here
    print(
        f"error: {sys.executable} has no torch: run with the Python that has this project and a CUDA build of torch "
        "(make bench-gpu GPU_PYTHON=<that python>)",
        file=sys.stderr,
    )
    sys.exit(2)
import torch.nn.functional as F
from torch import nn

from src.bench.quality import DEFAULT_DATA, ROOT
from src.model import PAD_ID, TransformerConfig, build_model
from src.model.summary import flops_per_token
from src.provenance import module_command

BUDGET_S = 450.0  # the whole: 7.5 minutes of steps, so that start-up and the table stay under 8 minutes
LEAST_FOR_A_STEP_S = 20.0  # a step is not started with less time left than this: it could measure nothing

# --- the steps' measurements (run in the step's own process) ------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait until `device` has done the work queued to it (nothing to wait for on the CPU). A clock read on the host
    means nothing for GPU work until then: the host only queues it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepContext:
    """What a step's process gets: where to keep its figures, the data sets, and a scratch folder."""

    result_file: Path
    data: Path
    scratch: Path
    values: dict = field(default_factory=dict)

    def record(self, **values) -> None:
        """Keep these figures now, on disk: a step stopped later (its time limit, a crash) still has them."""
        self.values.update(values)
        temporary = self.result_file.with_suffix(".partial")
        temporary.write_text(json.dumps(self.values, indent=2))
        temporary.replace(self.result_file)


def matmul_peak_bf16(device: torch.device, size: int = 8192, seconds: float = 2.0) -> dict[str, float]:
    """The device's bf16 matrix-multiply rate (FLOP/s): rounds of 10 products (size x size) @ (size x size) of
    random numbers, each 2 * size^3 FLOPs, timed from one synchronisation to the next. The best round is the peak
    (as step.matmul_peak on the CPU); the median shows how steady the clocks were."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    out = torch.empty(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):  # warm-up: the library's kernel choice, the clocks' ramp
        torch.matmul(a, b, out=out)
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or not rates:
        synchronize(device)
        started = time.perf_counter()
        for _ in range(10):
            torch.matmul(a, b, out=out)
        synchronize(device)
        rates.append(10 * 2 * size**3 / (time.perf_counter() - started))
    return {"peak_flops_per_s": max(rates), "median_flops_per_s": statistics.median(rates), "rounds": len(rates)}


def peak(ctx: StepContext) -> None:
    ctx.record(**matmul_peak_bf16(torch.device("cuda")), size=8192)


# The paper's base model (Vaswani et al. 2017, table 3), with a 32,000-token vocabulary on each side.
BASE_SHAPE = dict(
    src_vocab_size=32000, tgt_vocab_size=32000, d_model=512, heads=8, enc_layers=6, dec_layers=6, d_ff=2048
)
BASE_BATCH, BASE_LENGTH = 128, 256  # 32,768 target tokens (and as many source tokens) a step: fills the GPU


def base_config(length: int = BASE_LENGTH, **changes) -> TransformerConfig:
    return TransformerConfig(**{**BASE_SHAPE, "dropout": 0.1, "max_len": length + 1, **changes})


def training_flops_per_step(cfg: TransformerConfig, batch: int, src_len: int, tgt_len: int) -> float:
    """FLOPs of one training step of `cfg`'s encoder-decoder on `batch` sequences: 3 x the forward pass's (the
    backward pass costs about twice the forward), the forward counted by the project's own
    src.model.summary.flops_per_token. That counts every matrix product, a multiply-add as 2: the attention
    projections, the attention scores and weighted sums over all Tq x Tk pairs (a causal mask's skipped half
    included), the feed-forward networks and the output projection; norms, softmax, biases and the embedding
    look-ups are left out as small. Every position counts, padding included: on a GPU the model computes it (the
    feed-forward networks skip the padding on the CPU only), and the batches measured here have none.
    (`6 x parameters x tokens` would count the source embedding table, which is looked up and not multiplied,
    and leave out the attention scores.)"""
    return 3 * flops_per_token(cfg, src_len, tgt_len) * batch * tgt_len


def full_batches(cfg: TransformerConfig, count: int, batch: int, length: int, device: torch.device, seed: int = 0):
    """`count` batches (src, tgt_in, tgt_out) of random tokens without padding: every position a token, so the FLOPs
    counted are the FLOPs done."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        src = torch.randint(4, cfg.src_vocab_size, (batch, length), generator=generator)
        tgt = torch.randint(4, cfg.tgt_vocab_size, (batch, length + 1), generator=generator)
        batches.append((src.to(device), tgt[:, :-1].to(device), tgt[:, 1:].to(device)))
    return batches


def padded_batches(cfg: TransformerConfig, count: int, batch: int, length: int, device: torch.device):
    """step.py's batches (each row right-padded to a length between half and all of `length`), on `device`."""
    from src.bench.step import make_batches

    return [tuple(t.to(device) for t in batch) for batch in make_batches(cfg, count, batch, length)]


def timed_steps(model: nn.Module, optimizer, batches, forward: Callable, steps: int, device: torch.device):
    """`steps` training steps over `batches` in turn, in bf16 autocast (as trainer=gpu trains): (seconds, target
    tokens). The device is synchronised before and after, not between steps, and the tokens are counted on the
    device, so the host queues the next step while the device runs this one, as in any training loop."""
    tokens = torch.zeros((), dtype=torch.long, device=device)
    synchronize(device)
    started = time.perf_counter()
    for index in range(steps):
        src, tgt_in, tgt_out = batches[index % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = forward(model, src, tgt_in)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1), ignore_index=PAD_ID)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokens += (tgt_out != PAD_ID).sum()
    synchronize(device)
    return time.perf_counter() - started, int(tokens)


def side_by_side(
    models: dict[str, nn.Module],
    batches,
    device: torch.device,
    repeats: int = 3,
    steps: int = 10,
    warmup: int = 3,
) -> dict:
    """Target tokens/s of each model (median over `repeats` timed runs of `steps` steps, the models' order
    alternating from one repeat to the next, after `warmup` untimed steps each), with fused AdamW."""
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True) for name, model in models.items()}
    forwards = {name: model_forward(model) for name, model in models.items()}
    for name, model in models.items():
        timed_steps(model, optimizers[name], batches, forwards[name], warmup, device)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    rates: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(repeats):
        for name in list(models) if repeat % 2 == 0 else list(reversed(models)):
            spent, tokens = timed_steps(models[name], optimizers[name], batches, forwards[name], steps, device)
            seconds[name].append(spent / steps)
            rates[name].append(tokens / spent)
    return {
        "tokens_per_s": {name: statistics.median(runs) for name, runs in rates.items()},
        "step_s": {name: statistics.median(runs) for name, runs in seconds.items()},
        "runs_tokens_per_s": rates,
    }


def model_forward(model: nn.Module) -> Callable:
    """How to get logits from `model` (ours returns a ModelOutput, torch.nn.Transformer's baseline a tensor)."""
    from src.bench.step import TorchTransformerBaseline

    inner = getattr(model, "_orig_mod", model)  # under torch.compile, the model it wraps
    if isinstance(inner, TorchTransformerBaseline):
        return lambda m, src, tgt: m(src, tgt)
    return lambda m, src, tgt: m(src, tgt).logits


def base_models(device: torch.device, compile: bool = False) -> dict[str, nn.Module]:
    from src.bench.step import TorchTransformerBaseline

    cfg = base_config()
    torch.manual_seed(0)
    models = {
        "scratch": build_model(cfg).to(device).train(),
        "torch.nn.Transformer": TorchTransformerBaseline(cfg).to(device).train(),
    }
    if compile:
        return {name: torch.compile(model) for name, model in models.items()}  # type: ignore[misc]
    return models


def base_shape(ctx: StepContext) -> None:
    device = torch.device("cuda")
    cfg = base_config()
    models = base_models(device)
    parameters = {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}
    flops = training_flops_per_step(cfg, BASE_BATCH, BASE_LENGTH, BASE_LENGTH)
    ctx.record(batch=BASE_BATCH, length=BASE_LENGTH, parameters=parameters, training_flops_per_step=flops)
    full = side_by_side(models, full_batches(cfg, 4, BASE_BATCH, BASE_LENGTH, device), device)
    ctx.record(full=full, model_flops_per_s=flops / full["step_s"]["scratch"])
    padded = side_by_side(models, padded_batches(cfg, 4, BASE_BATCH, BASE_LENGTH, device), device)
    ctx.record(padded=padded, peak_memory_gib=torch.cuda.max_memory_allocated(device) / 2**30)


def base_shape_compiled(ctx: StepContext) -> None:
    """Ours first, then torch.nn.Transformer, each compiled and timed alone, so that a time limit reached while
    the second compiles keeps the first."""
    device = torch.device("cuda")
    cfg = base_config()
    batches = full_batches(cfg, 4, BASE_BATCH, BASE_LENGTH, device)
    flops = training_flops_per_step(cfg, BASE_BATCH, BASE_LENGTH, BASE_LENGTH)
    for name, model in base_models(device, compile=True).items():
        started = time.perf_counter()
        figures = side_by_side({name: model}, batches, device)
        key = "scratch" if name == "scratch" else "torch"
        ctx.record(**{key: {**figures, "seconds_with_compilation": time.perf_counter() - started}})
        if name == "scratch":
            ctx.record(model_flops_per_s=flops / figures["step_s"]["scratch"])


ATTENTION_BACK_ENDS = {  # the aten op each back end of scaled_dot_product_attention runs as (forward)
    "flash": "aten::_scaled_dot_product_flash_attention",
    "efficient": "aten::_scaled_dot_product_efficient_attention",
    "cudnn": "aten::_scaled_dot_product_cudnn_attention",
    "math": "aten::_scaled_dot_product_attention_math",
    "flash (CPU)": "aten::_scaled_dot_product_flash_attention_for_cpu",
}


def attention_ops(model: nn.Module, inputs: Sequence[torch.Tensor], device: torch.device) -> dict:
    """One forward and backward pass of `model` on `inputs` in bf16 autocast, under torch.profiler: which
    scaled_dot_product_attention back ends ran (by their aten ops, forward and backward, counted), and the device
    kernels whose names say attention (flash, fmha, ...)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(*inputs).logits
        logits.float().mean().backward()
        synchronize(device)
    ops, kernels = {}, {}
    for event in profiler.key_averages():
        name = event.key
        if name.startswith("aten::") and ("scaled_dot_product" in name or "efficient_attention" in name):
            ops[name] = event.count
        elif not name.startswith("aten::") and any(w in name.lower() for w in ("flash", "fmha", "attention")):
            kernels[name[:120]] = event.count
    back_ends = sorted(end for end, op in ATTENTION_BACK_ENDS.items() if op in ops)
    return {"back_ends": back_ends, "aten_ops": ops, "kernels": kernels}


def attention_cases(device: torch.device, length: int = BASE_LENGTH, batch: int = 8, **changes) -> dict[str, tuple]:
    """Models of the base shape (with `changes`, e.g. a smaller one for a test) and their inputs, one per mask: a
    decoder-only model (causal mask) on rows without padding and on right-padded rows, and the encoder-decoder
    (padding masks, and a causal one in the decoder) likewise. (case -> (model, inputs))"""
    cfg = base_config(length, **changes)
    torch.manual_seed(0)
    decoder_only = build_model(base_config(length, arch="decoder_only", **changes)).to(device)  # mask: standard
    encoder_decoder = build_model(cfg).to(device)
    generator = torch.Generator().manual_seed(0)

    def tokens(padded: bool) -> torch.Tensor:
        rows = torch.randint(4, cfg.tgt_vocab_size, (batch, length), generator=generator)
        if padded:  # every other row loses its last quarter to padding
            rows[::2, 3 * length // 4 :] = PAD_ID
        return rows.to(device)

    return {
        "decoder-only, causal mask, no padding": (decoder_only, (tokens(False),)),
        "decoder-only, causal mask, padded rows": (decoder_only, (tokens(True),)),
        "encoder-decoder, no padding": (encoder_decoder, (tokens(False), tokens(False))),
        "encoder-decoder, padded rows": (encoder_decoder, (tokens(True), tokens(True))),
    }


def attention_kernels(ctx: StepContext) -> None:
    device = torch.device("cuda")
    for case, (model, inputs) in attention_cases(device).items():
        ctx.record(**{case: attention_ops(model.train(), inputs, device)})


DEFAULT_STEPS = 600  # the default experiment's trainer.max_steps (conf/config.yaml)


def default(ctx: StepContext) -> None:
    """The default experiment as a user starts it on a GPU, whole command; then its 8 seeds stacked."""
    from src.bench import quality, stacked

    settings = ["trainer=gpu", "trainer.enable_progress_bar=false"]
    seconds, metrics, record = quality.timed_run("gpu_default", *settings)
    speed = record.get("speed", {})
    ctx.record(
        one_run={
            "whole_command_s": seconds,
            "steps": DEFAULT_STEPS,
            "speed": speed,
            "val_exact_match": metrics.get("val/exact_match"),
        }
    )
    seeds = ",".join(str(seed) for seed in range(8))
    where = ctx.scratch / "stacked8"
    # When it began (Unix time): if the step's limit stops it, the time it had run is a lower bound (figure_rows).
    ctx.record(stacked={"seeds": 8, "started_at": time.time()})
    stacked_s = stacked.timed("-m", f"seed={seeds}", "hydra/launcher=stacked", *settings, f"hydra.sweep.dir={where}")
    members = sorted(where.glob("*/run.json"))
    first = json.loads(members[0].read_text()) if members else {}
    ctx.record(stacked={"seeds": 8, "whole_command_s": stacked_s, "members": len(members), "speed": first.get("speed")})


def loop_ratio(ctx: StepContext) -> None:
    """Two rounds of src/bench/loop.py's turns on the GPU (205 steps each, turns of 25)."""
    from src.bench import loop
    from src.cli.command_line import compose_run_config

    cfg = compose_run_config("trainer=gpu", *loop.loop_overrides(205, dashboard_every=0))
    rounds = []
    for _ in range(2):
        rounds.append(loop.framework_vs_bare(cfg, turn=25))
        ctx.record(rounds=rounds, framework_vs_bare=statistics.median(r["framework_vs_bare"] for r in rounds))


def multi30k(ctx: StepContext) -> None:
    from src.bench import quality

    folder = ctx.data / "multi30k"
    if not (folder / "test_2016_flickr.en.gz").is_file():
        raise SystemExit(f"error: {folder} lacks the Multi30k .gz files: give --data DIR, the folder holding multi30k/")
    seconds, metrics, record = quality.timed_run(
        "gpu_multi30k",
        "experiment=multi30k_de_en",
        "trainer=gpu",
        "trainer.max_time=00:00:01:00",
        "trainer.enable_progress_bar=false",
        f"task.data_dir={folder}",
    )
    ctx.record(
        whole_command_s=seconds,
        speed=record.get("speed", {}),
        test_sacrebleu=metrics.get("test/sacrebleu"),
        test_sacrebleu_lowercase=metrics.get("test/sacrebleu_lowercase"),
    )


def default_compiled(ctx: StepContext) -> None:
    from src.bench import quality

    settings = ["trainer=gpu", "compile=true", "trainer.enable_progress_bar=false"]
    seconds, metrics, record = quality.timed_run("gpu_default_compiled", *settings)
    ctx.record(whole_command_s=seconds, speed=record.get("speed", {}), val_exact_match=metrics.get("val/exact_match"))


# --- the runner (the parent process) ------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    limit_s: float  # hard: the step's processes are killed when it is spent
    measure: Callable[[StepContext], None]


STEPS = [
    Step("peak", 30, peak),
    Step("base_shape", 60, base_shape),
    Step("attention_kernels", 30, attention_kernels),
    Step("default", 170, default),
    Step("loop", 75, loop_ratio),
    Step("multi30k", 150, multi30k),
    Step("default_compiled", 100, default_compiled),
    Step("base_shape_compiled", 100, base_shape_compiled),
]
STEP_NAMES = [step.name for step in STEPS]


def error_line(output: str) -> str:
    """What a failed step says in one line: its last `error: ...` line, else its last line (a traceback's last
    line names the exception)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1]


def run_step(command: Sequence[str], limit_s: float, result_file: Path, log: Path) -> dict:
    """Run one step's process under a hard time limit and return its outcome: status (ok, failed, timed out),
    seconds, its error line, and what it recorded in `result_file` (kept also when it failed or was stopped).

    The process starts a session of its own, so that at its limit its whole process group is killed: the commands
    it started too (a `python -m src.run`), which would otherwise go on using the GPU under the next steps. Its
    output (stdout and stderr) is appended to `log`."""
    started = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        try:
            code: int | None = process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if process.poll() is None:  # its time is up (or this process is being interrupted)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        seconds = time.perf_counter() - started
        ended_at = time.time()
        output.seek(0)
        text = output.read()
    with log.open("a") as file:
        file.write(f"===== {' '.join(command)}\n{text}\n===== exit {code}, {seconds:.1f} s\n\n")
    outcome: dict = {"seconds": round(seconds, 1), "ended_at": ended_at, "result": {}}
    if result_file.is_file():
        outcome["result"] = json.loads(result_file.read_text())
    if code == 0:
        outcome["status"] = "ok"
    elif code is None:
        outcome.update(status="timed out", error=f"stopped at its {limit_s:.0f} s limit; last line: {error_line(text)}")
    else:
        outcome.update(status="failed", error=f"exit {code}: {error_line(text)}")
    return outcome


def run_steps(
    steps: Sequence[Step],
    command_for: Callable[[Step, Path], list[str]],
    budget_s: float,
    scratch: Path,
    log: Path,
    after_each: Callable[[dict], None] = lambda outcomes: None,
) -> dict[str, dict]:
    """Run `steps` one after another, each by `command_for(step, its result file)`, each under the lesser of its
    own limit and what is left of `budget_s`; a step is skipped when less than LEAST_FOR_A_STEP_S is left. A step
    that fails or times out does not stop the others. `after_each(outcomes so far)` is called after every step
    (main writes the JSON file then, so that an interrupted run keeps what it has)."""
    deadline = time.perf_counter() + budget_s
    outcomes: dict[str, dict] = {}
    for number, step in enumerate(steps, 1):
        left = deadline - time.perf_counter()
        limit = min(step.limit_s, left)
        if limit < min(LEAST_FOR_A_STEP_S, step.limit_s):
            outcomes[step.name] = {"status": "skipped", "error": f"the whole budget ({budget_s:.0f} s) is spent"}
            print(f"[{number}/{len(steps)}] {step.name}: skipped, the whole budget ({budget_s:.0f} s) is spent")
            continue
        print(f"[{number}/{len(steps)}] {step.name} (at most {limit:.0f} s) ...", flush=True)
        outcome = run_step(command_for(step, scratch / f"{step.name}.json"), limit, scratch / f"{step.name}.json", log)
        outcomes[step.name] = outcome
        said = f": {outcome['error']}" if "error" in outcome else ""
        print(f"    {outcome['status']} in {outcome['seconds']:.1f} s{said}", flush=True)
        after_each(outcomes)
    return outcomes


# --- the figures beside their goals -------------------------------------------------------------------------------


def figure_rows(outcomes: dict[str, dict]) -> list[dict]:
    """Every figure of the issue beside its goal, from the steps' outcomes: measured (a text), goal, and status
    (met, MISSED, `-` where there is no goal, or `not measured: <why>`)."""
    rows: list[dict] = []

    def result(step: str) -> dict:
        return outcomes.get(step, {}).get("result", {})

    def add(figure: str, step: str, measured: str | None, goal: str, met: bool | None) -> None:
        if measured is None:
            outcome = outcomes.get(step, {"status": "not run", "error": "left out (--only)"})
            why = outcome.get("error", outcome.get("status", ""))
            rows.append({"figure": figure, "measured": None, "goal": goal, "status": f"not measured: {why}"})
        else:
            status = "-" if met is None else ("met" if met else "MISSED")
            rows.append({"figure": figure, "measured": measured, "goal": goal, "status": status})

    peak_rate = result("peak").get("peak_flops_per_s")
    measured = None
    if peak_rate:
        measured = f"{peak_rate / 1e12:.0f} TFLOP/s (median {result('peak')['median_flops_per_s'] / 1e12:.0f})"
    add("bf16 matrix-multiply peak, 8192^3 products", "peak", measured, "(the 100% below)", None)

    base = result("base_shape")
    flops_per_s = base.get("model_flops_per_s")
    measured, met = None, None
    if flops_per_s and peak_rate:
        share = flops_per_s / peak_rate
        measured, met = f"{share:.0%} ({flops_per_s / 1e12:.0f} TFLOP/s)", share >= 0.45
    figure = f"base shape, model FLOPs utilisation of ours (bf16, fused AdamW, {BASE_BATCH} x {BASE_LENGTH} tokens)"
    add(figure, "base_shape" if peak_rate else "peak", measured, ">= 45% of the peak", met)
    for batches, label in (("full", "no padding"), ("padded", "padded rows")):
        tokens = base.get(batches, {}).get("tokens_per_s")
        measured, met = None, None
        if tokens:
            ratio = tokens["scratch"] / tokens["torch.nn.Transformer"]
            measured = f"{ratio:.2f} ({tokens['scratch']:,.0f} vs {tokens['torch.nn.Transformer']:,.0f} tokens/s)"
            met = ratio > 1.0
        add(f"base shape, ours vs torch.nn.Transformer, {label}", "base_shape", measured, "> 1 (ahead)", met)

    for case, seen in result("attention_kernels").items():
        back_ends = ", ".join(seen["back_ends"]) or "none found"
        add(f"attention back end: {case}", "attention_kernels", back_ends, "(what runs)", None)
    if not result("attention_kernels"):
        add("attention back ends per mask", "attention_kernels", None, "(what runs)", None)

    one = result("default").get("one_run", {})
    speed = one.get("speed", {})
    measured, met = None, None
    if speed.get("steps_per_s"):
        training = DEFAULT_STEPS / speed["steps_per_s"]
        measured = (
            f"{training:.1f} s ({speed['steps_per_s']:.1f} steps/s; whole command {one['whole_command_s']:.0f} s)"
        )
        met = training <= 4
    add("default experiment, its 600 steps' training time (trainer=gpu)", "default", measured, "<= 4 s", met)
    launch = speed.get("launch_to_first_step_s")
    add(
        "launch to the first step (src.run trainer=gpu)",
        "default",
        None if launch is None else f"{launch:.1f} s",
        "<= 6 s",
        None if launch is None else launch <= 6,
    )
    group = result("default").get("stacked", {})
    stopped = outcomes.get("default", {}).get("status") == "timed out"
    measured, met = None, None
    if group.get("whole_command_s") and one.get("whole_command_s"):
        ratio = group["whole_command_s"] / one["whole_command_s"]
        measured = f"{ratio:.2f}x ({group['whole_command_s']:.0f} s vs {one['whole_command_s']:.0f} s, whole commands)"
        met = ratio <= 1.2
    elif group.get("started_at") and one.get("whole_command_s") and stopped:  # stopped while the seeds trained
        ran, whole = outcomes["default"]["ended_at"] - group["started_at"], one["whole_command_s"]
        ratio = ran / whole
        measured = f"> {ratio:.2f}x (stopped at the step's limit after {ran:.0f} s; one run {whole:.0f} s)"
        met = False if ratio > 1.2 else None
    add("8 seeds stacked (hydra/launcher=stacked) vs one run", "default", measured, "<= 1.2x", met)

    loop = result("loop")
    measured, met = None, None
    if loop.get("framework_vs_bare"):
        ratio = loop["framework_vs_bare"]
        last = loop["rounds"][-1]
        rounds = ", ".join(f"{one_round['framework_vs_bare']:.3f}" for one_round in loop["rounds"])
        measured = (
            f"{ratio:.3f} (rounds {rounds}; the framework adds {last['framework_ms_per_step']:.2f} ms to a "
            f"{last['bare_step_ms']:.2f} ms step)"
        )
        met = ratio >= 0.95
    add("tokens/s, src.run's loop vs a bare PyTorch loop (trainer=gpu)", "loop", measured, ">= 0.95", met)

    translation = result("multi30k")
    measured, met = None, None
    if translation.get("test_sacrebleu") is not None:
        bleu, training = translation["test_sacrebleu"], translation.get("speed", {}).get("training_s", float("nan"))
        measured = (
            f"{bleu:.1f} after {training:.0f} s of training (whole command {translation['whole_command_s']:.0f} s)"
        )
        met = bleu >= 35 and training <= 60
    add("Multi30k de-en test sacreBLEU, 60 s training budget (trainer=gpu)", "multi30k", measured, ">= 35", met)

    compiled = result("default_compiled").get("speed", {})
    measured, met = None, None
    if compiled.get("steps_per_s"):
        training = DEFAULT_STEPS / compiled["steps_per_s"]
        eager = speed.get("steps_per_s")
        versus = f"; eager {eager:.1f} steps/s" if eager else ""
        measured = f"{training:.1f} s ({compiled['steps_per_s']:.1f} steps/s{versus})"
        met = training <= 4
    add("default experiment, 600 steps' training time, compile=true", "default_compiled", measured, "<= 4 s", met)

    compiled = result("base_shape_compiled")
    eager = base.get("full", {}).get("tokens_per_s", {})
    measured, met = None, None
    if compiled.get("scratch"):
        tokens = compiled["scratch"]["tokens_per_s"]["scratch"]
        pays = f"; {tokens / eager['scratch']:.2f}x eager" if eager else ""
        share = f", {compiled['model_flops_per_s'] / peak_rate:.0%} of the peak" if peak_rate else ""
        measured = f"{tokens:,.0f} tokens/s{pays}{share}"
        met = tokens > eager["scratch"] if eager else None
    add("base shape, ours under torch.compile", "base_shape_compiled", measured, "> eager (compile pays)", met)
    measured, met = None, None
    if compiled.get("scratch") and compiled.get("torch"):
        ours = compiled["scratch"]["tokens_per_s"]["scratch"]
        theirs = compiled["torch"]["tokens_per_s"]["torch.nn.Transformer"]
        measured, met = f"{ours / theirs:.2f} ({ours:,.0f} vs {theirs:,.0f} tokens/s)", ours > theirs
    add("base shape, ours vs torch.nn.Transformer, both compiled", "base_shape_compiled", measured, "> 1", met)
    return rows


def host_cpu() -> str:
    """The host CPU's model name (Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog=module_command("src.bench.gpu"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "gpu", help="where gpu.json goes")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the folder holding multi30k/*.gz")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="seconds for all the steps together")
    parser.add_argument("--only", choices=STEP_NAMES, action="append", help="run only these steps (repeatable)")
    parser.add_argument("--step", choices=STEP_NAMES, help=argparse.SUPPRESS)  # a step's own process
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.step:  # in a step's process: measure, recording as it goes
        context = StepContext(args.result, args.data, args.scratch)
        next(step for step in STEPS if step.name == args.step).measure(context)
        return
    if not torch.cuda.is_available():
        print(
            f"error: src.bench.gpu measures a CUDA GPU, and torch {torch.__version__} sees none here: "
            "run it on a machine with one",
            file=sys.stderr,
        )
        raise SystemExit(2)

    now = datetime.datetime.now()
    machine: dict[str, str | None] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "host_cpu": f"{host_cpu()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "date": now.isoformat(timespec="seconds"),
    }
    print(f"{machine['gpu']}, torch {machine['torch']} (CUDA {machine['cuda']}); host {machine['host_cpu']}")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "steps.log"
    log.write_text("")
    report = args.out / "gpu.json"
    steps = [step for step in STEPS if not args.only or step.name in args.only]

    def write(outcomes: dict) -> None:
        content = {**machine, "budget_s": args.budget_s, "steps": outcomes, "figures": figure_rows(outcomes)}
        report.write_text(json.dumps(content, indent=2) + "\n")

    # Stopped from outside (`timeout`, a scheduler's SIGTERM): stop as Ctrl-C would, through run_step's `finally`,
    # which kills the step running now and the commands it started (they run in a session of their own, which a
    # signal to this process's group would not reach).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    scratch = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:

        def command_for(step: Step, result_file: Path) -> list[str]:
            return [
                sys.executable,
                "-m",
                "src.bench.gpu",
                f"--step={step.name}",
                f"--result={result_file}",
                f"--data={args.data}",
                f"--scratch={scratch}",
            ]

        outcomes = run_steps(steps, command_for, args.budget_s, scratch, log, after_each=write)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write(outcomes)

    print()
    print(f"GPU figures: {machine['gpu']}, torch {machine['torch']}, {now:%Y-%m-%d}")
    print()
    print("| figure | measured | goal | |")
    print("| --- | --- | --- | --- |")
    for row in figure_rows(outcomes):
        print(f"| {row['figure']} | {row['measured'] or ''} | {row['goal']} | {row['status']} |")
    print(f"\nfigures: {report}; each step's output: {log}")
    if any(outcome["status"] != "ok" for outcome in outcomes.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
