"""The fused attention without a mask tensor where the mask needs none (src/model/masks.py SiteMask, attention.py
sdpa_arguments): the same outputs as the explicit computation for every mask scheme and positional scheme, with and
without padding; the call each site makes is the one its kernel needs; the kernel table of docs/model.md is the
code's; and the padding of tokens on a GPU is never read (it would wait for the device)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.model import EOS_ID, PAD_ID, build_model
from src.model.attention import explicit_attention, fused_attention, sdpa_arguments
from src.model.head_mask import attention_sites
from src.model.masks import (
    MASK_SCHEMES,
    MaskForm,
    SiteMask,
    build_mask_scheme,
    causal_mask,
    form_of,
    has_padding,
)
from src.model.positional import POSITIONAL_SCHEMES
from tests.model.test_transformer import small_config, small_mask

ARCHS = ("encoder_decoder", "decoder_only", "encoder_only")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "model.md"


def tokens(padded: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A source (3, 7) and a target (3, 6); padded: right padding of different lengths in both."""
    g = torch.Generator().manual_seed(seed)
    src, tgt = torch.randint(4, 19, (3, 7), generator=g), torch.randint(4, 19, (3, 6), generator=g)
    if padded:
        src[1, 5:], src[2, 3:], tgt[2, 4:] = PAD_ID, PAD_ID, PAD_ID
    return src, tgt


def inputs(arch: str, padded: bool) -> tuple[torch.Tensor, ...]:
    src, tgt = tokens(padded)
    return {"encoder_decoder": (src, tgt), "decoder_only": (tgt,), "encoder_only": (src,)}[arch]


# --- the same numbers ----------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:mask=none")
@pytest.mark.parametrize("mask_type,pos", list(itertools.product(MASK_SCHEMES, POSITIONAL_SCHEMES)))
def test_every_call_form_equals_the_explicit_attention(mask_type, pos):
    """float64 on the CPU, every architecture, with and without padding; without padding also when the caller says
    so (padded=False), as a GPU's caller would."""
    for arch, padded in itertools.product(ARCHS, (False, True)):
        torch.manual_seed(0)
        model = build_model(small_config(arch=arch, mask=small_mask(mask_type), pos_encoding=pos)).double()
        x = inputs(arch, padded)
        explicit = model(*x, need_weights=True).logits
        torch.testing.assert_close(model(*x).logits, explicit, atol=1e-6, rtol=0)
        if not padded:
            torch.testing.assert_close(model(*x, padded=False).logits, explicit, atol=1e-6, rtol=0)


@pytest.mark.parametrize("with_bias", [False, True])
def test_the_look_ahead_form_equals_the_explicit_mask_at_the_function_level(with_bias):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(3, 5, 5, generator=g, dtype=torch.float64) if with_bias else None
    causal = SiteMask(MaskForm.CAUSAL, lambda: causal_mask(5, 5)[None, None])
    every = SiteMask(MaskForm.EVERY_KEY, lambda: torch.ones(1, 1, 5, 5, dtype=torch.bool))
    assert sdpa_arguments(causal, bias, q.dtype)[1] is (not with_bias)
    torch.testing.assert_close(
        fused_attention(q, k, v, causal, bias), explicit_attention(q, k, v, causal_mask(5, 5), bias)[0]
    )
    torch.testing.assert_close(fused_attention(q, k, v, every, bias), explicit_attention(q, k, v, None, bias)[0])


# --- the call each site makes, and the kernel it means -----------------------------------------------------------


def recorded_calls(model, x, monkeypatch) -> dict[str, tuple[bool, bool]]:
    """site -> (a mask tensor given, is_causal) of the first layer's SDPA call in a forward pass on `x`."""
    calls: dict[str, tuple[bool, bool]] = {}
    site_now: list[str] = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        calls.setdefault(site_now[-1], (attn_mask is not None, is_causal))
        return sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    for site, layers in attention_sites(model).items():
        layers[0].register_forward_pre_hook(lambda *_, site=site: site_now.append(site))
    model(*x)
    return calls


@pytest.mark.filterwarnings("ignore:mask=none")
@pytest.mark.parametrize("mask_type", list(MASK_SCHEMES))
def test_each_site_calls_sdpa_as_its_kernel_needs(mask_type, monkeypatch):
    """flash <=> no mask tensor; is_causal=True exactly where the structure is the look-ahead mask and no key is
    padding (standard's decoder: is_causal=True, attn_mask None); ALiBi's bias is always a tensor."""
    for arch, padded, pos in itertools.product(ARCHS, (False, True), ("sinusoidal", "alibi")):
        model = build_model(small_config(arch=arch, d_model=32, mask=small_mask(mask_type), pos_encoding=pos))
        x = inputs(arch, padded)
        kernels = model.attention_kernels(*x)
        calls = recorded_calls(model, x, monkeypatch)
        assert set(calls) == set(kernels)
        decoder_only = arch == "decoder_only"
        structures = {
            "encoder_self": model.mask_scheme.encoder_form(7),
            "decoder_self": model.mask_scheme.decoder_form(6, 6, decoder_only=decoder_only),
            "cross": MaskForm.EVERY_KEY,
        }
        for site, (given_a_tensor, is_causal) in calls.items():
            assert given_a_tensor == (kernels[site] != "flash"), (arch, padded, pos, site)
            biased = pos == "alibi" and site != "cross"
            assert is_causal == (structures[site] is MaskForm.CAUSAL and not padded and not biased), (arch, site)
    standard = build_model(small_config(d_model=32))
    assert recorded_calls(standard, inputs("encoder_decoder", False), monkeypatch)["decoder_self"] == (False, True)


def test_the_kernel_rules_by_dtype_head_size_and_mask():
    from src.model.attention import cuda_kernel

    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    assert cuda_kernel(None, torch.bfloat16, 64) == "flash"
    assert cuda_kernel(None, torch.float16, 256) == "flash"
    assert cuda_kernel(mask, torch.bfloat16, 64) == "memory-efficient"
    assert cuda_kernel(None, torch.float32, 64) == "memory-efficient"  # flash takes no float32
    assert cuda_kernel(mask, torch.bfloat16, 12) == "math"  # head size not a multiple of 8
    assert cuda_kernel(None, torch.float64, 64) == "math"


def table_of_the_docs() -> dict[str, list[str]]:
    section = DOCS.read_text().split("## Which attention kernel runs", 1)[1]
    rows = re.findall(r"^\| (\w+) \| (.+) \|$", section, flags=re.MULTILINE)
    return {name: [cell.strip() for cell in cells.split("|")] for name, cells in rows if name in MASK_SCHEMES}


@pytest.mark.filterwarnings("ignore:mask=none")
def test_the_kernel_table_of_the_docs_is_the_code_s():
    """Every registered scheme has its row, and each cell (no padding / padding) is what the model reports."""
    table = table_of_the_docs()
    assert set(table) == set(MASK_SCHEMES)
    for name, cells in table.items():
        computed = []
        seq2seq = build_model(small_config(d_model=32, mask=small_mask(name)))
        lm = build_model(small_config(arch="decoder_only", d_model=32, mask=small_mask(name)))
        for model, arch, site in [
            (seq2seq, "encoder_decoder", "encoder_self"),
            (seq2seq, "encoder_decoder", "decoder_self"),
            (seq2seq, "encoder_decoder", "cross"),
            (lm, "decoder_only", "decoder_self"),
        ]:
            plain, padded = (model.attention_kernels(*inputs(arch, p))[site] for p in (False, True))
            computed.append(f"{plain} / {padded}")
        assert cells == computed, name


def test_the_weights_and_a_stacked_model_s_attention_dropout_take_the_explicit_path(monkeypatch):
    """need_weights computes the weights it returns; a stacked model (seeds trained together, `per_member`) with
    attention dropout draws each member's masks itself, which the fused kernel under vmap cannot. Without dropout a
    stacked model's attention is the fused call (its members folded into the batch: src/model/stacked.py)."""
    model = build_model(small_config(d_model=32, dropout=0.1)).train()
    x = inputs("encoder_decoder", False)
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: pytest.fail("SDPA was called"))
    assert model(*x, need_weights=True).attentions is not None
    for layers in attention_sites(model).values():
        for attention in layers:
            attention.per_member = True  # what StackedModel sets
    model(*x)
    assert set(model.attention_kernels(*x).values()) == {"explicit"}
    monkeypatch.setattr(F, "scaled_dot_product_attention", sdpa)
    model.eval()  # no dropout: the fused call
    assert "explicit" not in set(model.attention_kernels(*x).values())


# --- the forms, and what is read to find them ----------------------------------------------------------------------


def test_forms_are_read_off_each_scheme_s_own_structure():
    standard = build_mask_scheme({"type": "standard"}, max_len=16)
    assert standard.encoder_form(5) is MaskForm.EVERY_KEY
    assert standard.decoder_form(5, 5) is MaskForm.CAUSAL
    assert standard.decoder_form(1, 6, q_offset=5) is MaskForm.EVERY_KEY  # a cached decoding step
    assert standard.decoder_form(2, 6, q_offset=4) is MaskForm.TENSOR  # two new tokens after four
    assert build_mask_scheme({"type": "causal"}, 16).encoder_form(5) is MaskForm.CAUSAL
    assert build_mask_scheme({"type": "none"}, 16).decoder_form(5, 5) is MaskForm.EVERY_KEY
    window = build_mask_scheme({"type": "window", "window": 3}, 16)
    assert window.encoder_form(5) is MaskForm.TENSOR and window.decoder_form(5, 5) is MaskForm.TENSOR
    assert window.encoder_form(3) is MaskForm.EVERY_KEY and window.decoder_form(3, 3) is MaskForm.CAUSAL
    prefix = build_mask_scheme({"type": "prefix", "prefix_len": 1}, 16)
    assert prefix.decoder_form(5, 5, decoder_only=True) is MaskForm.CAUSAL  # a prefix of one: the look-ahead mask
    assert build_mask_scheme({"type": "prefix", "prefix_len": 4}, 16).encoder_form(4) is MaskForm.EVERY_KEY
    assert form_of(None) is MaskForm.EVERY_KEY
    # the forms are remembered per shape, not settings: the scheme still equals one that never computed them
    assert window == build_mask_scheme({"type": "window", "window": 3}, 16)


def test_padding_on_a_gpu_is_not_read_unless_the_caller_says():
    """Tokens off the CPU (meta tensors stand in for a GPU's: reading them fails) count as padded; the caller's
    padded=False makes the structure's form the call's."""
    keys = torch.empty(2, 5, dtype=torch.long, device="meta")
    scheme = build_mask_scheme({"type": "standard"}, 16)
    unknown = scheme.decoder_self_mask(5, 5, real_keys=keys != PAD_ID, device="meta")
    assert unknown.form is MaskForm.TENSOR
    said = scheme.decoder_self_mask(5, 5, real_keys=keys != PAD_ID, device="meta", padded=False)
    assert said.form is MaskForm.CAUSAL
    assert scheme.cross_mask(keys, PAD_ID, padded=False).form is MaskForm.EVERY_KEY
    assert scheme.encoder_self_mask(keys, PAD_ID).form is MaskForm.TENSOR


def test_padding_is_read_on_the_host_as_the_masks_define_it():
    src, tgt = tokens(padded=True)
    assert has_padding(src, PAD_ID, EOS_ID) and has_padding(tgt, PAD_ID, EOS_ID, decoder_side=True)
    src, tgt = tokens(padded=False)
    assert not has_padding(src, PAD_ID, EOS_ID) and not has_padding(tgt, PAD_ID, EOS_ID, decoder_side=True)
    # a decoder input that starts with the pad id (Marian's) is not padded there
    assert not has_padding(torch.tensor([[PAD_ID, 5, 6]]), PAD_ID, EOS_ID, decoder_side=True)
    assert has_padding(torch.tensor([[PAD_ID, 5, 6]]), PAD_ID, EOS_ID)
