"""Training-step throughput of the scratch model against torch.nn.Transformer, and its FLOP/s against the
machine's fp32 matrix-multiply peak.

    python -m src.bench.step             # eager, the shape below
    python -m src.bench.step --compile   # both models under torch.compile

Both models get the same shape (vocab 1000, d_model 256, 8 heads, 3+3 layers, d_ff 1024, dropout 0.1),
the same embeddings-with-sinusoidal-positions and tied output projection around the stacks, the same
batches (32 x 64, right-padded to varied lengths), Adam, fp32, on the CPU. Runs alternate between the
two models so drift in machine load hits both; the figure is the median over repeats of target
(non-pad) tokens per second.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from src.model import PAD_ID, TransformerConfig, build_model
from src.model.feedforward import FEEDFORWARDS
from src.model.summary import flops_per_token


class TorchTransformerBaseline(nn.Module):
    """torch.nn.Transformer with the same embedding, positions and output projection as ours."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.d_model
        self.src_embed = nn.Embedding(cfg.src_vocab_size, d, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, d, padding_idx=PAD_ID)
        position = torch.arange(cfg.max_len)[:, None]
        inv_freq = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
        table = torch.zeros(cfg.max_len, d)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * inv_freq), torch.cos(position * inv_freq)
        self.register_buffer("positions", table, persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.transformer = nn.Transformer(
            d, cfg.heads, cfg.enc_layers, cfg.dec_layers, cfg.d_ff, cfg.dropout, batch_first=True
        )
        self.out_proj = nn.Linear(d, cfg.tgt_vocab_size, bias=False)
        self.out_proj.weight = self.tgt_embed.weight
        self.scale = math.sqrt(d)

    def forward(self, src, tgt):
        s, t = src.size(1), tgt.size(1)
        src_x = self.dropout(self.src_embed(src) * self.scale + self.positions[:s])
        tgt_x = self.dropout(self.tgt_embed(tgt) * self.scale + self.positions[:t])
        causal = torch.ones(t, t, dtype=torch.bool, device=tgt.device).triu(1)  # True = blocked
        out = self.transformer(
            src_x,
            tgt_x,
            tgt_mask=causal,
            src_key_padding_mask=src == PAD_ID,
            tgt_key_padding_mask=tgt == PAD_ID,
            memory_key_padding_mask=src == PAD_ID,
        )
        return self.out_proj(out)


def executed_flops(cfg: TransformerConfig, batches, length: int) -> float:
    """Forward FLOPs our model computes on `batches`: every position's (flops_per_token), less the feed-forward
    FLOPs of the padding positions, which it skips (2 x the FFN's weight entries per position and layer)."""
    ffn_weights = sum(
        p.numel() for p in FEEDFORWARDS[cfg.activation](cfg.d_model, cfg.d_ff, 0.0).parameters() if p.dim() == 2
    )
    total = 0.0
    for src, tgt_in, _ in batches:
        padding = cfg.enc_layers * int((src == PAD_ID).sum()) + cfg.dec_layers * int((tgt_in[:, 1:] == PAD_ID).sum())
        total += flops_per_token(cfg, length, length) * src.size(0) * length - 2 * ffn_weights * padding
    return total


def make_batches(cfg: TransformerConfig, count: int, batch: int, length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        src = torch.randint(4, cfg.src_vocab_size, (batch, length), generator=g)
        tgt = torch.randint(4, cfg.tgt_vocab_size, (batch, length + 1), generator=g)
        for row in range(batch):  # varied lengths, right-padded, as real batches are
            src[row, torch.randint(length // 2, length + 1, (1,), generator=g).item() :] = PAD_ID
            tgt[row, torch.randint(length // 2, length + 1, (1,), generator=g).item() :] = PAD_ID
        batches.append((src, tgt[:, :-1], tgt[:, 1:]))
    return batches


def train_steps(model, optimizer, batches, forward) -> float:
    """Run one training step per batch; return target tokens per second."""
    tokens = 0
    start = time.perf_counter()
    for src, tgt_in, tgt_out in batches:
        logits = forward(model, src, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1), ignore_index=PAD_ID)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokens += int((tgt_out != PAD_ID).sum())
    return tokens / (time.perf_counter() - start)


BENCH_SHAPE = dict(src_vocab_size=1000, tgt_vocab_size=1000, d_model=256, heads=8, enc_layers=3, dec_layers=3)


def bench_config(length: int) -> TransformerConfig:
    return TransformerConfig(**BENCH_SHAPE, d_ff=1024, dropout=0.1, max_len=length + 1)


def matmul_peak(size: int = 1024, seconds: float = 2.0) -> float:
    """This machine's fp32 matrix-multiply rate (FLOP/s) at the current thread count: the best of several timed
    rounds of (size x size) @ (size x size), each 2 * size^3 FLOPs."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # first call: allocations, thread start-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start))
    return best


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")  # the matrix products, as PyTorch's profiler names them
ATTENTION = "scaled_dot_product"  # PyTorch's fused attention kernels, forward and backward


def kernel_seconds(function, calls: int) -> dict[str, float]:
    """Seconds per call of `function` spent in the matrix products and in the fused attention kernels, and in all
    of its operators, as PyTorch's profiler counts their own (self) CPU time: how much of a workload is kernels that
    no implementation around them can make faster. (The profiler adds a little to each operator's time, the same
    to any implementation.)"""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        for _ in range(calls):
            function()
    events = profiled.key_averages()

    def seconds(chosen) -> float:
        return sum(event.self_cpu_time_total for event in events if chosen(event.key)) / 1e6 / calls

    return {
        "matmul_s": seconds(lambda key: key in MATMULS),
        "attention_s": seconds(lambda key: ATTENTION in key),
        "all_s": seconds(lambda key: True),
    }


def compare_with_torch(
    repeats: int = 5, steps: int = 5, warmup: int = 2, batch: int = 32, length: int = 64, compile: bool = False
) -> dict:
    """Target tokens/s of both models (medians over `repeats` alternating runs), and the scratch model's FLOP/s."""
    cfg = bench_config(length)
    torch.manual_seed(0)
    models = {"scratch": build_model(cfg).train(), "torch.nn.Transformer": TorchTransformerBaseline(cfg).train()}
    forwards = {"scratch": lambda m, s, t: m(s, t).logits, "torch.nn.Transformer": lambda m, s, t: m(s, t)}
    if compile:
        models = {name: torch.compile(m) for name, m in models.items()}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    batches = make_batches(cfg, steps, batch, length)
    for name, model in models.items():  # warm-up (and compilation)
        train_steps(model, optimizers[name], batches[:warmup] or batches[:1], forwards[name])

    results: dict[str, list[float]] = {name: [] for name in models}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(repeats):
        for name in list(models) if repeat % 2 == 0 else list(reversed(models)):  # alternate the order
            start = time.perf_counter()
            results[name].append(train_steps(models[name], optimizers[name], batches, forwards[name]))
            seconds[name].append(time.perf_counter() - start)
    # The hardware's work: every position is computed (B * L per step), padding included, except in the
    # feed-forward networks, which skip the padding on the CPU (feedforward.at_real_positions); each costs the
    # forward FLOPs three times (forward, and a backward of about twice that).
    step_flops = 3 * executed_flops(cfg, batches, length) / len(batches)
    return {
        "tokens_per_s": {name: statistics.median(runs) for name, runs in results.items()},
        "runs": results,
        "flops_per_s": step_flops * steps / statistics.median(seconds["scratch"]),
        "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model (median reported)")
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="run both models under torch.compile")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = compare_with_torch(args.repeats, args.steps, args.warmup, args.batch, args.length, args.compile)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, compile={args.compile}; parameters: "
        + ", ".join(f"{n} {p:,}" for n, p in result["parameters"].items())
    )
    for name, runs in result["runs"].items():
        shown = ", ".join(f"{r:.0f}" for r in runs)
        print(f"{name:>22}: median {statistics.median(runs):8.0f} target tokens/s  (runs: {shown})")
    tokens = result["tokens_per_s"]
    print(f"ratio scratch / torch.nn.Transformer: {tokens['scratch'] / tokens['torch.nn.Transformer']:.3f}")
    peak = matmul_peak()
    print(
        f"scratch model: {result['flops_per_s'] / 1e9:.1f} GFLOP/s; fp32 matmul peak {peak / 1e9:.1f} GFLOP/s "
        f"({result['flops_per_s'] / peak:.0%})"
    )


if __name__ == "__main__":
    main()
