"""model.ffn=false: attention-only layers (Elhage et al. 2021; Olsson et al. 2022). No feed-forward parameters (the
count is the hand count), forward and backward for every architecture, no *_ffn activation points or sites (an
ablate spec naming one is refused in one line), the FLOPs estimate is the hand count and PyTorch's FLOP counter's,
cached decoding, seeds stacked under vmap and the analyses that walk a layer's sublayers work without them, the
FFN settings it leaves unread get one warning, and `python -m src.run model.ffn=false` trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.model import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    ConfigError,
    TransformerConfig,
    build_model,
    count_parameters,
    flops_per_token,
    generate,
)
from src.model.ablation import Ablation, apply_ablation, parse_ablation, sublayer_blocks, sublayer_layout_of
from src.model.points import activation_points

D, H, FF, V, C = 16, 4, 32, 19, 3
ARCHS = ("decoder_only", "encoder_decoder", "encoder_only")
ATTENTION_SITES = {
    "decoder_only": ["decoder_self"],
    "encoder_decoder": ["encoder_self", "decoder_self", "cross"],
    "encoder_only": ["encoder_self"],
}


def config(arch: str, **overrides) -> TransformerConfig:
    values = dict(
        arch=arch,
        src_vocab_size=V,
        tgt_vocab_size=V,
        num_classes=C,
        d_model=D,
        heads=H,
        enc_layers=2,
        dec_layers=2,
        d_ff=FF,
        dropout=0.0,
        max_len=32,
        ffn=False,
    )
    values.update(overrides)
    return TransformerConfig(**values)


def model_of(arch: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(config(arch, **overrides))


def tokens(rows: int = 3, length: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randint(4, V, (rows, length), generator=torch.Generator().manual_seed(seed))


def logits_of(model: torch.nn.Module, arch: str, **kwargs) -> torch.Tensor:
    src, tgt = tokens(seed=1), tokens(length=5, seed=2)
    if arch == "encoder_decoder":
        return model(src, tgt, **kwargs).logits
    return model(tgt if arch == "decoder_only" else src, **kwargs).logits


# --- parameters ---------------------------------------------------------------------------------------------------


def test_the_parameter_count_is_the_hand_count_without_any_feed_forward_network():
    attention, norm = 4 * D * D + 4 * D, 2 * D  # W_Q, W_K, W_V, W^O with biases; a norm's gain and shift
    # decoder-only, post-LN (no final norm), the output projection tied to the embedding
    assert count_parameters(model_of("decoder_only")) == V * D + 2 * (attention + norm)
    # encoder-decoder: two embeddings; a decoder layer has self- and cross-attention
    assert count_parameters(model_of("encoder_decoder")) == 2 * V * D + 2 * (attention + norm) + 2 * 2 * (
        attention + norm
    )
    # encoder-only, pre-LN: the stack's final norm; the mean pooling has no parameters; the classifier head
    assert count_parameters(model_of("encoder_only", norm_position="pre")) == (
        V * D + 2 * (attention + norm) + norm + D * C + C
    )


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("activation", ["relu", "swiglu"])
def test_ffn_false_removes_exactly_each_layers_feed_forward_network_and_its_norm(arch, activation):
    with_ffn, without = model_of(arch, ffn=True, activation=activation), model_of(arch, activation=activation)
    layers = {"decoder_only": 2, "encoder_decoder": 4, "encoder_only": 2}[arch]
    ffn = (3 if activation == "swiglu" else 2) * D * FF + (2 * FF if activation == "swiglu" else FF) + D
    assert count_parameters(with_ffn) - count_parameters(without) == layers * (ffn + 2 * D)
    assert not [name for name, _ in without.named_parameters() if "ffn" in name]
    stacks = [getattr(without, stack) for stack in ("encoder", "decoder") if hasattr(without, stack)]
    assert all(layer.ffn is None and layer.ffn_block is None for stack in stacks for layer in stack.layers)


def test_d_ff_activation_and_ffn_dropout_are_not_checked_when_nothing_reads_them():
    build_model(config("decoder_only", d_ff=0, activation="nonesuch", ffn_dropout=2.0))
    with pytest.raises(ConfigError, match="model.d_ff=0 must be a positive integer"):
        config("decoder_only", d_ff=0, ffn=True).validate()
    with pytest.raises(ConfigError, match="model.activation='nonesuch' is not known"):
        config("decoder_only", activation="nonesuch", ffn=True).validate()


# --- forward and backward -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_forward_and_backward_reach_every_parameter(arch, norm_position):
    model = model_of(arch, norm_position=norm_position).train()
    logits = logits_of(model, arch)
    assert logits.shape == ((3, C) if arch == "encoder_only" else (3, 5, V))
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    explicit = logits_of(model, arch, need_weights=True)  # the explicit attention path agrees with the fused one
    torch.testing.assert_close(explicit, logits, atol=1e-5, rtol=0)


def test_an_attention_only_model_learns_a_tiny_batch():
    model = model_of("decoder_only", d_model=32, norm_position="pre").train()
    tgt = tokens(rows=4, length=7)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(tgt[:, :-1]).logits.flatten(0, 1), tgt[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_cached_decoding_equals_full_recomputation():
    model = model_of("encoder_decoder").double().eval()
    with torch.no_grad():
        model.out_proj.weight[EOS_ID] *= 0.0  # sequences that run long enough to exercise the cache
    src = tokens()
    generated = generate(model, src=src, max_new_tokens=6, strategy="greedy")
    prefix = torch.full((3, 1), BOS_ID)
    with torch.no_grad():
        for _ in range(6):  # greedy without a cache, the whole prefix each step
            step = model(src, prefix).logits[:, -1]
            step[:, [PAD_ID, BOS_ID]] = float("-inf")  # never output
            prefix = torch.cat([prefix, step.argmax(-1, keepdim=True)], 1)
    assert torch.equal(generated, prefix[:, 1:])


def test_seeds_stacked_under_vmap_give_each_members_own_output():
    from src.model.stacked import StackedModel

    members = [model_of("decoder_only"), build_model(config("decoder_only"))]  # two initialisations
    stacked = StackedModel(members)
    tgt = tokens()
    outputs = stacked.call(lambda model, x: model(x, padded=True).logits, torch.stack([tgt, tgt]))  # (M, B, T, V)
    for member, model in enumerate(members):
        torch.testing.assert_close(outputs[member], model(tgt).logits, atol=1e-5, rtol=0)


# --- sites, points, ablation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_no_feed_forward_site_or_point_exists(arch):
    model, cfg = model_of(arch), config(arch)
    sites = ATTENTION_SITES[arch]
    assert set(sublayer_layout_of(cfg)) == set(sublayer_blocks(model)) == set(sites)
    points = activation_points(model)
    assert not [name for name in points if "ffn" in name]
    outs = {name for name in points if name.startswith("out@")}
    assert outs == {f"out@{site}:{layer}" for site in sites for layer in range(2)}
    stacks = [getattr(model, stack) for stack in ("encoder", "decoder") if hasattr(model, stack)]
    assert [site for stack in stacks for site, _, _ in stack.layers[0].sublayers()] == sites


@pytest.mark.parametrize(
    "ablate",
    [
        {"sublayers": ["decoder_ffn:0"]},
        {"sublayers": ["encoder_ffn"]},
        {"sublayers": ["decoder_self:0", "decoder_ffn:*"]},
        {"heads": ["decoder_ffn:0"]},
    ],
)
def test_an_ablate_spec_naming_a_feed_forward_sublayer_is_refused_in_one_line(ablate):
    with pytest.raises(ConfigError) as refused:
        parse_ablation(ablate, config("encoder_decoder"))
    message = str(refused.value)
    assert "\n" not in message
    assert "this model has no feed-forward sublayers (model.ffn=false" in message
    assert message.endswith("choose one of encoder_self, decoder_self, cross")


def test_attention_sublayers_still_ablate_and_a_hand_built_ffn_ablation_is_refused():
    model = model_of("decoder_only", norm_position="pre").eval()
    tgt = tokens()
    apply_ablation(model, parse_ablation({"sublayers": ["decoder_self:*"]}, config("decoder_only")))
    with torch.no_grad():  # every sublayer removed: the logits read the embeddings alone
        stream = model.decoder.final_norm(model.tgt_embed(tgt, model.positional))
        torch.testing.assert_close(model(tgt).logits, model.out_proj(stream), atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="has no feed-forward sublayers"):
        apply_ablation(model, Ablation(sublayers={"decoder_ffn": (0,)}))


# --- FLOPs --------------------------------------------------------------------------------------------------------


def test_the_flops_estimate_is_the_hand_count_and_pytorchs_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    s, t = 6, 5
    self_attention = lambda n: 2 * n * 4 * D * D + 4 * n * n * D  # noqa: E731
    lm = 2 * self_attention(t) + 2 * t * D * V
    assert flops_per_token(config("decoder_only"), src_len=0, tgt_len=t) == pytest.approx(lm / t)
    cross = 2 * t * 2 * D * D + 2 * s * 2 * D * D + 4 * t * s * D
    seq2seq = 2 * self_attention(s) + 2 * (self_attention(t) + cross) + 2 * t * D * V
    cfg = config("encoder_decoder")
    assert flops_per_token(cfg, src_len=s, tgt_len=t) == pytest.approx(seq2seq / t)
    model = build_model(cfg)
    # need_weights: the explicit path is plain matmuls, which the counter sees (it skips CPU SDPA)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(tokens(rows=1, length=s), tokens(rows=1, length=t), need_weights=True)
    assert counter.get_total_flops() == pytest.approx(seq2seq, rel=1e-9)


# --- the analyses that walk a layer's sublayers -----------------------------------------------------------------


def test_the_logit_lens_direct_logit_attribution_and_path_patching_work_without_feed_forward_sublayers():
    from src.analysis.lens import direct_logit_attribution, logit_lens
    from src.analysis.patching import path_patching
    from src.training.inference import IGNORE_INDEX, forward_batch, scored_target

    model = model_of("decoder_only", norm_position="pre").double()
    tgt = tokens(length=6)
    batch = {"tgt_in": torch.cat([torch.full((3, 1), BOS_ID), tgt[:, :-1]], 1), "tgt_out": tgt}
    assert [layer.label for layer in logit_lens(model, "lm", batch)] == ["embed", "0", "1"]
    parts = direct_logit_attribution(model, "lm", batch)
    assert not [name for name in parts if "ffn" in name]
    logits = forward_batch(model, "lm", batch).logits
    target = scored_target(model, "lm", batch)
    own = logits.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (target != IGNORE_INDEX)
    torch.testing.assert_close(sum(parts.values()), own, atol=1e-10, rtol=0)
    corrupted = {key: value.flip(0) for key, value in batch.items()}
    result = path_patching(
        model, "lm", batch, corrupted, "decoder_self:0:1", "decoder_self:1:2", "q", lambda x, b: x[:, -1, 5]
    )
    assert torch.isfinite(torch.tensor(result.value))


# --- the command line ---------------------------------------------------------------------------------------------


def unread_warnings(compose, capsys, *overrides: str) -> list[str]:
    from src.cli.validation import warn_unread_settings

    capsys.readouterr()
    warn_unread_settings(compose(*overrides))
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_the_feed_forward_settings_an_attention_only_model_leaves_unread_get_one_warning(compose, capsys, monkeypatch):
    assert unread_warnings(compose, capsys, "model.ffn=false") == []  # the model preset's d_ff is no choice
    assert unread_warnings(compose, capsys, "model.activation=gelu", "model.ffn_dropout=0.1") == []  # ffn=true
    from src.cli import validation

    monkeypatch.setattr(validation, "typed_settings", lambda: {"model.d_ff", "model.activation", "model.ffn"})
    lines = unread_warnings(
        compose, capsys, "model.ffn=false", "model.d_ff=64", "model.activation=gelu", "model.ffn_bias=false"
    )
    assert lines == [
        "warning: model.d_ff=64, model.activation=gelu, model.ffn_bias=false have no effect with model.ffn=false "
        "(attention-only layers: no feed-forward sublayer): only model.ffn=true reads them"
    ]


def test_src_run_trains_an_attention_only_language_model_and_refuses_an_ffn_ablation(tmp_path):
    from tests.conftest import run_in_process

    text = tmp_path / "text.txt"
    text.write_text("attention is all you need\n" * 40)
    args = [
        "task=char_lm",
        f"task.path={text}",
        "model.arch=decoder_only",
        "model.ffn=false",
        "model.d_model=16",
        "model.heads=2",
        "model.layers=1",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.enable_progress_bar=false",
        "optimizer.warmup_steps=1",
        "batch_size=8",
        "logger=none",
        "torch_threads=1",
    ]
    code, out, err = run_in_process("src.run", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, err
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state and not [key for key in state if "ffn" in key]
    code, out, err = run_in_process(
        "src.run", *args, "ablate.sublayers=[decoder_ffn:0]", f"hydra.run.dir={tmp_path / 'no'}"
    )
    assert code == 2 and not (tmp_path / "no").exists()
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: ablate.sublayers: 'decoder_ffn:0': this model has no feed-forward sublayers (model.ffn=false: "
        "attention-only layers): choose one of decoder_self"
    ]
