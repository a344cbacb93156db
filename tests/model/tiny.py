"""Tiny models of every architecture for the axis tests (tests/model/test_grouped_query_attention.py,
test_architecture_axes.py): one config builder, one model builder (float64, eval mode), one token batch."""

from __future__ import annotations

import torch

from src.model import PAD_ID, TransformerConfig, build_model

D, H = 16, 4  # d_model, query heads


def config(arch: str = "decoder_only", **overrides) -> TransformerConfig:
    values = dict(
        arch=arch,
        src_vocab_size=13,
        tgt_vocab_size=11,
        num_classes=3,
        d_model=D,
        heads=H,
        enc_layers=1,
        dec_layers=2,
        d_ff=32,
        dropout=0.0,
        max_len=32,
    )
    values.update(overrides)
    return TransformerConfig(**values).validate()


def model_for(arch: str = "decoder_only", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(config(arch, **overrides)).double().eval()


def tokens(b: int = 3, t: int = 6, vocab: int = 11, seed: int = 1, pad_last_row: bool = False) -> torch.Tensor:
    x = torch.randint(4, vocab, (b, t), generator=torch.Generator().manual_seed(seed))
    if pad_last_row:
        x[-1, t // 2 :] = PAD_ID
    return x


def assert_flops_estimate_is_counted(model, src: torch.Tensor, tgt: torch.Tensor) -> None:
    """summary.flops_per_token times the tokens it is per equals PyTorch's FlopCounterMode on one forward pass of
    `model` (need_weights: the explicit attention path is plain matmuls, which the counter sees; it skips CPU SDPA),
    less the classifier head, which the estimate leaves out."""
    import pytest
    from torch.utils.flop_counter import FlopCounterMode

    from src.model.summary import flops_per_token

    cfg, arch = model.cfg, model.cfg.arch
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        if arch == "encoder_decoder":
            model(src, tgt, need_weights=True)
        else:
            model(tgt if arch == "decoder_only" else src, need_weights=True)
    counted = src.size(1) if arch == "encoder_only" else tgt.size(1)
    head = 2 * cfg.d_model * cfg.num_classes if arch == "encoder_only" else 0
    estimate = flops_per_token(cfg, src_len=src.size(1), tgt_len=tgt.size(1)) * counted
    assert estimate == pytest.approx(counter.get_total_flops() - head, rel=1e-9)
