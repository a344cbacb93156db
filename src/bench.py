"""Benchmark: training-step throughput of the scratch model against torch.nn.Transformer.

    python -m src.bench                 # eager, the shape below
    python -m src.bench --compile       # both models under torch.compile
    make bench ARGS="--repeats 7"

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

    cfg = TransformerConfig(
        src_vocab_size=1000,
        tgt_vocab_size=1000,
        d_model=256,
        heads=8,
        enc_layers=3,
        dec_layers=3,
        d_ff=1024,
        dropout=0.1,
        max_len=args.length + 1,
    )
    torch.manual_seed(0)
    models = {"scratch": build_model(cfg).train(), "torch.nn.Transformer": TorchTransformerBaseline(cfg).train()}
    forwards = {"scratch": lambda m, s, t: m(s, t).logits, "torch.nn.Transformer": lambda m, s, t: m(s, t)}
    if args.compile:
        models = {name: torch.compile(m) for name, m in models.items()}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    batches = make_batches(cfg, args.steps, args.batch, args.length)

    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, compile={args.compile}; "
        f"parameters: " + ", ".join(f"{n} {p:,}" for n, p in params.items())
    )
    for name, model in models.items():  # warm-up (and compilation)
        train_steps(model, optimizers[name], batches[: args.warmup] or batches[:1], forwards[name])

    results = {name: [] for name in models}
    for repeat in range(args.repeats):
        for name in list(models) if repeat % 2 == 0 else list(reversed(models)):  # alternate the order
            results[name].append(train_steps(models[name], optimizers[name], batches, forwards[name]))
    for name, runs in results.items():
        print(
            f"{name:>22}: median {statistics.median(runs):8.0f} target tokens/s  "
            f"(runs: {', '.join(f'{r:.0f}' for r in runs)})"
        )
    ratio = statistics.median(results["scratch"]) / statistics.median(results["torch.nn.Transformer"])
    print(f"ratio scratch / torch.nn.Transformer: {ratio:.3f}")


if __name__ == "__main__":
    main()
