"""`ablate.*` on a trained model (src/analysis/ablation.py): the fill of mean ablation is each head's mean output
over the real (non-pad) query positions, an ablated head outputs g*h + (1-g)*fill, and the heads a checkpoint was
trained without stay zero whatever is asked on top."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from src.analysis.ablation import ablate_trained_model, mean_head_outputs, reference_batches
from src.cli.command_line import compose_run_config
from src.cli.schema import model_config_for, to_plain
from src.data import build_datamodule
from src.model import PAD_ID
from src.model.head_mask import attention_sites, set_head_mask
from src.training.module import TransformerLitModule
from tests.model.test_decoding import model_for, source

QUERIES = {"encoder_self": "src", "decoder_self": "tgt_in", "cross": "tgt_in"}


def batches() -> list[dict[str, torch.Tensor]]:
    """Two seq2seq batches with padding in the source and in the target, in different places."""
    first_src, second_src = source(), source().flip(0)
    tgt = torch.randint(4, 11, (3, 5), generator=torch.Generator().manual_seed(7))
    first_tgt, second_tgt = tgt.clone(), tgt.clone()
    first_tgt[0, 3:] = PAD_ID
    second_tgt[2, 1:] = PAD_ID
    return [{"src": first_src, "tgt_in": first_tgt}, {"src": second_src, "tgt_in": second_tgt}]


def out_proj_inputs(model, run) -> dict[str, list[list[torch.Tensor]]]:
    """Per site and layer, what W^O read (B, T, H*Dh) in each forward pass of `run()`: the heads' outputs."""
    seen: dict[str, list[list[torch.Tensor]]] = {}
    hooks = []
    for site, modules in attention_sites(model).items():
        seen[site] = [[] for _ in modules]
        for layer, module in enumerate(modules):
            record = seen[site][layer].append
            hooks.append(module.out_proj.register_forward_pre_hook(lambda _m, args, r=record: r(args[0].clone())))
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_the_mean_is_each_heads_output_averaged_over_the_real_query_positions():
    model = model_for("encoder_decoder")
    data = batches()
    seen = out_proj_inputs(model, lambda: [model(b["src"], b["tgt_in"]) for b in data])
    means = mean_head_outputs(model, "seq2seq", data)
    heads, dh = 4, 4
    for site, layers in seen.items():
        assert means[site].shape == (2, heads, dh)
        real = torch.cat([(b[QUERIES[site]] != PAD_ID).flatten() for b in data])  # (N,) over both batches
        for layer, outputs in enumerate(layers):
            rows = torch.cat([out.flatten(0, 1) for out in outputs])[real]  # (real positions, H*Dh)
            for head in range(heads):
                expected = rows[:, head * dh : (head + 1) * dh].mean(dim=0)
                assert torch.allclose(means[site][layer, head], expected, atol=1e-12), (site, layer, head)
    # Padding is left out: the mean over every position would differ.
    everything = torch.cat([out.flatten(0, 1) for out in seen["encoder_self"][0]])[:, :dh].mean(dim=0)
    assert not torch.allclose(means["encoder_self"][0, 0], everything)


@pytest.mark.parametrize("gate", [0.0, 0.25])
def test_an_ablated_head_outputs_its_gate_times_itself_plus_the_rest_of_its_fill(gate):
    """Head 2 of the first decoder self-attention: nothing before it changes, so what W^O reads there is the
    unablated heads' output with head 2's slice replaced by g*h + (1-g)*fill at every position."""
    model = model_for("encoder_decoder")
    src, tgt = batches()[0]["src"], batches()[0]["tgt_in"]
    plain = out_proj_inputs(model, lambda: model(src, tgt))["decoder_self"][0][0]
    fill = {site: torch.randn(2, 4, 4, dtype=torch.float64) for site in attention_sites(model)}
    gates = {site: torch.ones(2, 4, dtype=torch.float64) for site in attention_sites(model)}
    gates["decoder_self"][0, 2] = gate
    set_head_mask(model, gates, fill)
    ablated = out_proj_inputs(model, lambda: model(src, tgt))["decoder_self"][0][0]
    expected = plain.clone()
    expected[..., 8:12] = gate * plain[..., 8:12] + (1 - gate) * fill["decoder_self"][0, 2]
    assert torch.allclose(ablated, expected, atol=1e-12)
    assert not torch.allclose(ablated, plain)


@pytest.fixture
def trained_without_a_head():
    """A module as a checkpoint of `src.run ablate.heads=[encoder_self:0:0]` loads (TransformerLitModule applies
    the run's ablation), with its run's data."""
    cfg = compose_run_config(
        "task.train_size=32",
        "task.val_size=8",
        "task.test_size=8",
        "model.d_model=16",
        "model.heads=2",
        "model.layers=1",
        "model.d_ff=32",
        "ablate.heads=[encoder_self:0:0]",
    )
    datamodule = build_datamodule(cfg.task, batch_size=8, seed=0)
    model_cfg = model_config_for(cfg, datamodule.src_vocab_size, datamodule.tgt_vocab_size, datamodule.num_classes)
    torch.manual_seed(0)
    module = TransformerLitModule(to_plain(cfg), asdict(model_cfg), datamodule.kind).eval()
    return module, datamodule


def test_heads_the_checkpoint_was_trained_without_stay_zero_under_mean_ablation(trained_without_a_head):
    module, datamodule = trained_without_a_head
    reference = reference_batches(datamodule, 16)
    means = mean_head_outputs(module.model, datamodule.kind, reference)  # with the trained ablation in force
    ablation = ablate_trained_model(
        module, datamodule, {"heads": ["encoder_self:0:1"], "method": "mean", "reference_examples": 16}
    )
    assert ablation.heads == {"encoder_self": ((0, 0), (0, 1))} and ablation.method == "mean"
    batch = datamodule.collate([datamodule.task.val[i] for i in range(4)])
    seen = out_proj_inputs(module.model, lambda: module(batch))["encoder_self"][0][0]  # (B, S, 2*8)
    assert torch.equal(seen[..., :8], torch.zeros_like(seen[..., :8]))  # trained without: zero, not a mean
    assert torch.allclose(seen[..., 8:], means["encoder_self"][0, 1].expand_as(seen[..., 8:]), atol=1e-6)


def test_asking_for_nothing_keeps_the_trained_ablation_alone(trained_without_a_head):
    module, datamodule = trained_without_a_head
    ablation = ablate_trained_model(module, datamodule, {"heads": [], "sublayers": [], "method": "mean"})
    assert ablation.heads == {"encoder_self": ((0, 0),)}
