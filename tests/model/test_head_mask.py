"""Head masks (Michel et al. 2019): ablating a head is exactly removing its slice of W^O's input, a mask of ones
changes nothing, the gate's gradient is the head's importance, and cached decoding honours the mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.model.head_mask import attention_sites, clear_head_mask, full_head_mask, set_head_mask
from tests.model.test_decoding import greedy_by_full_recomputation, model_for, source

ARCHS = ["encoder_decoder", "decoder_only", "encoder_only"]


def inputs(model, arch: str):
    """Arguments of model(...) for each architecture (padded source; a target for the decoders)."""
    src = source()
    tgt = torch.randint(4, 11, (3, 5), generator=torch.Generator().manual_seed(3))
    if arch == "encoder_decoder":
        return (src, tgt)
    if arch == "decoder_only":
        return (tgt,)
    return (src,)


def logits(model, arch: str, need_weights: bool = False) -> torch.Tensor:
    return model(*inputs(model, arch), need_weights=need_weights).logits


def built(arch: str):
    return model_for(arch, num_classes=3)


def prompt():
    """A decoder-only model's prompt: ids of its (target) vocabulary."""
    return torch.randint(4, 11, (3, 3), generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("arch", ARCHS)
def test_ablating_a_head_equals_zeroing_its_slice_of_the_output_projection(arch):
    model = built(arch)
    for site, modules in attention_sites(model).items():
        layer, head = len(modules) - 1, 1
        mask = full_head_mask(model)
        mask[site][layer, head] = 0.0
        set_head_mask(model, mask)
        ablated = logits(model, arch)
        clear_head_mask(model)

        reference = built(arch)
        out_proj = attention_sites(reference)[site][layer].out_proj
        dh = out_proj.in_features // modules[0].heads
        with torch.no_grad():
            out_proj.weight[:, head * dh : (head + 1) * dh] = 0.0  # head h's input columns of W^O
        assert torch.equal(ablated, logits(reference, arch)), site
        assert not torch.equal(ablated, logits(model, arch)), f"{site}: the ablation changed nothing"


def test_ablating_every_head_of_a_layer_leaves_the_bias_of_the_output_projection():
    model = built("encoder_decoder")
    attention = attention_sites(model)["cross"][0]
    attention.head_gate = torch.zeros(attention.heads, dtype=torch.float64)
    x, memory = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 7, 16, dtype=torch.float64)
    out, _ = attention(x, memory=memory)
    assert torch.equal(out, attention.out_proj.bias.expand_as(out))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("need_weights", [False, True])  # the fused path, and the explicit one
def test_a_mask_of_ones_is_bit_identical_to_no_mask(arch, need_weights):
    model = built(arch)
    plain = logits(model, arch, need_weights)
    set_head_mask(model, full_head_mask(model))
    assert torch.equal(logits(model, arch, need_weights), plain)
    model.train()  # dropout 0: the training path differs from eval only in the modes it switches
    assert torch.equal(logits(model, arch, need_weights), plain)


def test_mean_ablation_replaces_the_head_by_its_fill():
    model = built("encoder_decoder")
    attention = attention_sites(model)["decoder_self"][0]
    x = torch.randn(2, 4, 16, dtype=torch.float64)
    fill = torch.randn(attention.heads, 16 // attention.heads, dtype=torch.float64)
    attention.head_gate = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    attention.head_fill = fill
    mean_ablated, _ = attention(x)
    attention.head_fill = None
    zero_ablated, _ = attention(x)
    dh = 16 // attention.heads
    # The difference is head 1's fill passed through its slice of W^O, at every position.
    expected = fill[1] @ attention.out_proj.weight[:, dh : 2 * dh].T
    assert torch.allclose(mean_ablated - zero_ablated, expected.expand_as(mean_ablated), atol=1e-12)


def test_a_gate_per_batch_row_equals_running_each_row_with_its_own_mask():
    """(B, H) gates give every example its own mask (several ablations in one batch, src/analysis), with a fill
    shared by all rows (mean ablation) or one per row."""
    model = built("encoder_decoder")
    attention = attention_sites(model)["cross"][1]
    x, memory = torch.randn(3, 4, 16, dtype=torch.float64), torch.randn(3, 5, 16, dtype=torch.float64)
    gates = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    for fill in (None, torch.randn(4, 4, dtype=torch.float64), torch.randn(3, 4, 4, dtype=torch.float64)):
        attention.head_gate, attention.head_fill = gates, fill
        together, _ = attention(x, memory=memory)
        for row in range(3):
            attention.head_gate = gates[row]
            attention.head_fill = fill[row] if fill is not None and fill.dim() == 3 else fill
            alone, _ = attention(x[row : row + 1], memory=memory[row : row + 1])
            assert torch.allclose(together[row : row + 1], alone, atol=1e-12), row
    attention.head_gate = attention.head_fill = None


def test_the_gate_gradient_is_the_loss_change_of_scaling_the_head():
    """d loss / d g_h equals a central finite difference of the loss in g_h (float64, small model)."""
    model = built("encoder_decoder")
    src, tgt = inputs(model, "encoder_decoder")
    target = torch.randint(4, 11, tgt.shape, generator=torch.Generator().manual_seed(5))

    def loss_at(mask):
        set_head_mask(model, mask)
        out = model(src, tgt).logits
        return F.cross_entropy(out.flatten(0, 1), target.flatten())

    mask = {site: gates.clone().requires_grad_(True) for site, gates in full_head_mask(model).items()}
    loss_at(mask).backward()
    eps = 1e-6
    for site, gates in mask.items():
        for layer in range(gates.shape[0]):
            for head in range(gates.shape[1]):
                up = {s: g.detach().clone() for s, g in mask.items()}
                down = {s: g.detach().clone() for s, g in mask.items()}
                up[site][layer, head] += eps
                down[site][layer, head] -= eps
                with torch.no_grad():
                    numeric = (loss_at(up) - loss_at(down)) / (2 * eps)
                assert gates.grad[layer, head].item() == pytest.approx(numeric.item(), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only"])
def test_cached_decoding_with_a_head_removed_equals_full_recomputation_with_it_removed(arch):
    from src.model import generate

    model = built(arch)
    unmasked = (
        generate(model, src=source(), max_new_tokens=10)
        if arch == "encoder_decoder"
        else generate(model, prompt=prompt(), max_new_tokens=10)
    )
    mask = full_head_mask(model)
    for gates in mask.values():
        gates[0, 0] = 0.0  # the first head of the first layer of every site
    set_head_mask(model, mask)
    if arch == "encoder_decoder":
        cached = generate(model, src=source(), max_new_tokens=10)
        reference = greedy_by_full_recomputation(model, src=source(), steps=10)
    else:
        cached = generate(model, prompt=prompt(), max_new_tokens=10)
        reference = greedy_by_full_recomputation(model, prompt=prompt(), steps=10)
    assert torch.equal(cached, reference)
    assert not torch.equal(cached, unmasked), "removing the heads changed no output: the test proves nothing"


def test_a_mask_that_does_not_fit_the_model_is_refused():
    model = built("decoder_only")
    with pytest.raises(ValueError, match="the model has decoder_self"):
        set_head_mask(model, {"cross": torch.ones(2, 4)})
    with pytest.raises(ValueError, match="2 layers x 4 heads"):
        set_head_mask(model, {"decoder_self": torch.ones(3, 4)})
