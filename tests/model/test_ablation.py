"""`ablate.*` specs (src/model/ablation.py): what each spelling selects, the one-line refusal of each kind of bad
spec, removed sublayers leaving the residual stream, and apply_ablation being exactly a head mask."""

from __future__ import annotations

import pytest
import torch

from src.model import ConfigError
from src.model.ablation import Ablation, apply_ablation, layout_of, parse_ablation, restore_sublayers
from src.model.head_mask import attention_sites, clear_head_mask, full_head_mask, set_head_mask
from tests.model.test_decoding import model_for, source
from tests.model.test_head_mask import logits


def config(arch: str = "encoder_decoder", **overrides):
    """The TransformerConfig of model_for's models: 2 + 2 layers of 4 heads."""
    return model_for(arch, num_classes=3 if arch == "encoder_only" else 0, **overrides).cfg


def test_every_spelling_of_a_spec_selects_its_heads():
    cfg = config()
    every = tuple((layer, head) for layer in range(2) for head in range(4))
    assert parse_ablation({"heads": ["cross"]}, cfg).heads == {"cross": every}
    assert parse_ablation({"heads": ["cross:*:*"]}, cfg).heads == {"cross": every}
    assert parse_ablation({"heads": ["cross:1"]}, cfg).heads == {"cross": tuple((1, h) for h in range(4))}
    assert parse_ablation({"heads": ["cross:*:3"]}, cfg).heads == {"cross": ((0, 3), (1, 3))}
    assert parse_ablation({"heads": ["cross::3"]}, cfg).heads == {"cross": ((0, 3), (1, 3))}
    # One string is one spec; repeats count once; each site's pairs come sorted.
    assert parse_ablation({"heads": "cross:1:3"}, cfg) == parse_ablation({"heads": ["cross:1:3"]}, cfg)
    both = parse_ablation({"heads": ["encoder_self:1:2", "encoder_self:0:1", " encoder_self:1:2"]}, cfg)
    assert both.heads == {"encoder_self": ((0, 1), (1, 2))}
    subs = parse_ablation({"sublayers": ["decoder_ffn", "cross:1"]}, cfg)
    assert subs.sublayers == {"decoder_ffn": (0, 1), "cross": (1,)} and not subs.heads
    assert parse_ablation(None, cfg).empty and parse_ablation({"heads": [], "sublayers": ""}, cfg).empty
    assert parse_ablation({"method": "mean"}, cfg).method == "mean"


def test_union_describe_and_specs():
    cfg = config()
    layout = layout_of(cfg)
    trained = parse_ablation({"heads": ["encoder_self:0:1"], "sublayers": ["decoder_ffn:0"]}, cfg)
    asked = parse_ablation({"heads": ["cross:1:3", "encoder_self:0"], "method": "mean"}, cfg)
    both = trained.union(asked)
    assert both.heads == {"encoder_self": tuple((0, h) for h in range(4)), "cross": ((1, 3),)}
    assert both.sublayers == {"decoder_ffn": (0,)} and both.method == "mean" and both.head_count() == 5
    assert both.describe(layout) == "encoder_self:0 (all 4 heads), cross:1:3; sublayer decoder_ffn:0; mean ablation"
    assert trained.describe(layout) == "encoder_self:0:1; sublayer decoder_ffn:0; zero ablation"
    assert Ablation().describe(layout) == "nothing ablated"
    # The specs a run records read back as the same ablation.
    assert parse_ablation({**both.as_specs(), "method": "mean"}, cfg) == both


@pytest.mark.parametrize(
    "arch, ablate, named, fix",
    [
        ("encoder_decoder", {"heads": ["crosss:0:1"]}, "site 'crosss' is not known", "choose one of"),
        ("decoder_only", {"heads": ["cross"]}, "this model (decoder_only) has no cross site", "choose one of"),
        ("encoder_only", {"sublayers": ["decoder_ffn"]}, "has no decoder_ffn site", "choose one of encoder_self"),
        ("encoder_decoder", {"heads": ["encoder_ffn:0"]}, "encoder_ffn has no heads", "ablate.sublayers="),
        ("encoder_decoder", {"heads": ["cross:2"]}, "layer 2 is out of range", "numbered 0-1: choose"),
        ("encoder_decoder", {"heads": ["cross:1:4"]}, "head 4 is out of range", "numbered 0-3: choose"),
        ("encoder_decoder", {"heads": ["cross:-1"]}, "layer -1 is out of range", "choose"),
        ("encoder_decoder", {"sublayers": ["encoder_self:5"]}, "layer 5 is out of range", "choose"),
        ("encoder_decoder", {"heads": ["cross:one"]}, "layer 'one' is not a number", "write e.g. cross:1:3"),
        ("encoder_decoder", {"heads": ["cross:1:3:0"]}, "is not site:layer:head", "write e.g."),
        ("encoder_decoder", {"heads": [":1:3"]}, "is not site:layer:head", "write e.g."),
        ("encoder_decoder", {"heads": ["cross:1:"]}, "ends in ':' with no number", "cross:1:* for every head"),
        ("encoder_decoder", {"sublayers": ["cross:"]}, "ends in ':' with no layer", "write cross:<layer> or cross:*"),
        ("encoder_decoder", {"sublayers": ["cross:1:3"]}, "is not site:layer", "write e.g."),
        ("encoder_decoder", {"heads": 3}, "ablate.heads=3 is not a list of specs", "write ablate.heads=["),
        ("encoder_decoder", {"method": "median"}, "ablate.method='median' is not known", "choose one of zero"),
    ],
)
def test_each_kind_of_bad_spec_is_one_line_with_the_fix(arch, ablate, named, fix):
    cfg = config(arch)
    with pytest.raises(ConfigError) as refused:
        parse_ablation(ablate, cfg)
    message = str(refused.value)
    assert "\n" not in message and named in message and fix in message, message


def encoder_layer_io(model, layer: int = 0):
    """Run the encoder-only model on the test source; (the layer's input, its output, its attention block's)."""
    seen = {}
    module = model.encoder.layers[layer]
    hooks = [
        module.register_forward_hook(lambda _m, args, out: seen.update(x=args[0], out=out[0])),
        module.attn_block.register_forward_hook(lambda _m, _args, out: seen.update(attn=out[0])),
    ]
    with torch.no_grad():
        model(source())
    for hook in hooks:
        hook.remove()
    return seen["x"], seen["out"], seen["attn"]


def test_a_removed_pre_ln_sublayer_leaves_the_layer_its_input_plus_the_other_sublayer():
    model = model_for("encoder_only", num_classes=3, norm_position="pre")
    cfg = model.cfg
    apply_ablation(model, parse_ablation({"sublayers": ["encoder_self:0", "encoder_ffn:0"]}, cfg))
    x, out, _ = encoder_layer_io(model)
    assert torch.equal(out, x)  # both sublayers gone: the layer is the identity
    restore_sublayers(model)
    apply_ablation(model, parse_ablation({"sublayers": ["encoder_ffn:0"]}, cfg))
    x, out, after_attention = encoder_layer_io(model)
    assert torch.equal(out, after_attention) and not torch.equal(out, x)  # x + attention(norm(x)), no FFN
    restore_sublayers(model)
    x, out, after_attention = encoder_layer_io(model)
    assert not torch.equal(out, after_attention)  # restored: the FFN adds to the stream again


def test_removing_an_attention_sublayer_is_gating_all_its_heads_without_the_output_bias():
    """Every head gated still adds W^O's bias; removing the sublayer adds nothing. Without the bias, the same."""
    cfg = config(norm_position="pre")
    gated, removed = model_for(norm_position="pre"), model_for(norm_position="pre")
    for model in (gated, removed):
        with torch.no_grad():
            attention_sites(model)["cross"][1].out_proj.bias.zero_()
    apply_ablation(gated, parse_ablation({"heads": ["cross:1"]}, cfg))
    apply_ablation(removed, parse_ablation({"sublayers": ["cross:1"]}, cfg))
    assert torch.allclose(logits(gated, "encoder_decoder"), logits(removed, "encoder_decoder"), atol=1e-12)


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "encoder_only"])
def test_apply_ablation_is_exactly_the_head_mask_it_describes(arch):
    model = model_for(arch, num_classes=3)
    cfg = model.cfg
    sites = list(layout_of(cfg))
    specs = [f"{sites[0]}:1:2", f"{sites[-1]}:0"]
    mask = full_head_mask(model)
    mask[sites[0]][1, 2] = 0.0
    mask[sites[-1]][0, :] = 0.0
    set_head_mask(model, mask)
    by_hand = logits(model, arch)
    clear_head_mask(model)
    plain = logits(model, arch)
    apply_ablation(model, parse_ablation({"heads": specs}, cfg))
    assert torch.equal(logits(model, arch), by_hand) and not torch.equal(by_hand, plain)


def test_an_empty_ablation_leaves_the_model_untouched():
    model = model_for()
    apply_ablation(model, parse_ablation({"heads": [], "sublayers": []}, model.cfg))
    assert all(module.head_gate is None for modules in attention_sites(model).values() for module in modules)


def test_every_name_the_description_gives_is_a_spec_that_selects_what_it_names():
    """The `ablated: ...` line names heads, layers and sublayers as the specs do (counted from 0), so each name can
    be pasted back: `cross:1:3` is head 3 of layer 1, `encoder_self:0 (all 4 heads)` layer 0's heads."""
    cfg = config()
    layout = layout_of(cfg)
    ablation = parse_ablation(
        {"heads": ["cross:1:3", "cross:1:0", "encoder_self:0"], "sublayers": ["decoder_ffn", "cross:0"]}, cfg
    )
    line = ablation.describe(layout)
    assert line == (
        "encoder_self:0 (all 4 heads), cross:1:0, cross:1:3; sublayers cross:0, decoder_ffn:0, decoder_ffn:1; "
        "zero ablation"
    )
    heads, sublayers, _ = line.split("; ")
    pasted = [name.removesuffix(" (all 4 heads)") for name in heads.split(", ")]
    assert parse_ablation({"heads": pasted}, cfg).heads == ablation.heads
    pasted = sublayers.removeprefix("sublayers ").split(", ")
    assert parse_ablation({"sublayers": pasted}, cfg).sublayers == ablation.sublayers
    # Without the model's layout a whole layer is not known to be whole: each head is named.
    assert Ablation({"cross": ((1, 0), (1, 1))}).describe() == "cross:1:0, cross:1:1; zero ablation"
    assert Ablation(sublayers={"decoder_ffn": (1,)}).describe() == "sublayer decoder_ffn:1"


def test_an_out_of_range_head_names_its_layer_as_a_spec_does():
    with pytest.raises(ConfigError, match=r"head 4 is out of range: cross:1 has 4 heads, numbered 0-3"):
        parse_ablation({"heads": ["cross:1:4"]}, config())
