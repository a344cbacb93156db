"""src/model/points.py: every architecture passes its activations through named points, read and written by one
mechanism; with nothing attached the forward pass is the same computation, and the head gates are one edit."""

from __future__ import annotations

import pytest
import torch

from src.model import TransformerConfig, build_model
from src.model.head_mask import clear_head_mask, full_head_mask, set_head_mask
from src.model.points import activation_points, attached, find_points, recorded, split_point_name

ARCHS = ("encoder_decoder", "decoder_only", "encoder_only")


def model_of(arch: str, **settings) -> torch.nn.Module:
    settings = {"d_model": 16, "heads": 4, "enc_layers": 2, "dec_layers": 2, "d_ff": 32, "dropout": 0.0, **settings}
    cfg = TransformerConfig(arch=arch, src_vocab_size=11, tgt_vocab_size=11, num_classes=3, **settings)
    torch.manual_seed(0)
    return build_model(cfg).double().eval()


def run(model, arch: str, src, tgt):
    if arch == "encoder_decoder":
        return model(src, tgt).logits
    if arch == "decoder_only":
        return model(tgt).logits
    return model(src).logits


def inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 11, (2, 5), generator=generator)
    tgt = torch.randint(3, 11, (2, 6), generator=generator)
    src[1, -2:] = 0  # padding: the points see padded batches too
    return src, tgt


def test_each_architecture_names_its_points_by_site_and_layer_as_ablate_does():
    names = list(activation_points(model_of("encoder_decoder")))
    first_layer = {name for name in names if name.endswith("@encoder_self:0")}
    assert first_layer == {
        f"{kind}@encoder_self:0" for kind in ("resid_pre", "out", "resid_post", "q", "k", "v", "z")
    } | {"pattern@encoder_self:0"}
    assert names[0] == "embed@encoder"
    assert {"z@cross:1", "pattern@cross:1", "out@decoder_ffn:1", "embed@decoder"} <= set(names)
    assert len(names) == 2 + 2 * (2 * 3 + 5) + 2 * (3 * 3 + 2 * 5)  # embeddings; encoder layers; decoder layers
    decoder_only = set(activation_points(model_of("decoder_only")))
    assert "z@decoder_self:1" in decoder_only and not any("cross" in n or "encoder" in n for n in decoder_only)
    encoder_only = set(activation_points(model_of("encoder_only")))
    assert "resid_post@encoder_ffn:1" in encoder_only and "embed@decoder" not in encoder_only
    for name in names:  # the part after @ is what ablate reads
        kind, where = split_point_name(name)
        assert kind in ("embed", "resid_pre", "out", "resid_post", "q", "k", "v", "z", "pattern")


@pytest.mark.parametrize("arch", ARCHS)
def test_edits_that_return_their_input_change_nothing(arch):
    model, (src, tgt) = model_of(arch), inputs()
    plain = run(model, arch, src, tgt)
    every = [n for n in activation_points(model) if not n.startswith("pattern@")]  # pattern: the explicit path
    with recorded(model, every) as seen:
        read = run(model, arch, src, tgt)
    assert torch.equal(read, plain) and set(seen) == set(every)
    with recorded(model, [n for n in activation_points(model) if n.startswith("pattern@")]):
        explicit = run(model, arch, src, tgt)  # the weights formed: the same numbers by the explicit path
    torch.testing.assert_close(explicit, plain, rtol=1e-12, atol=1e-12)
    assert not any(p.edits for p in activation_points(model).values())  # taken off after the block


def test_a_read_pattern_is_the_attention_map_and_a_read_z_is_what_w_o_receives():
    model, (src, tgt) = model_of("encoder_decoder"), inputs()
    output = model(src, tgt, need_weights=True)
    with recorded(model, ["pattern@cross:1", "z@cross:1", "out@cross:1"]) as seen:
        model(src, tgt)
    torch.testing.assert_close(seen["pattern@cross:1"], output.attentions["cross"][1], rtol=0, atol=1e-12)
    attention = model.decoder.layers[1].cross_attn
    z = seen["z@cross:1"]  # (B, H, T, Dh)
    merged = z.transpose(1, 2).reshape(z.size(0), z.size(2), -1)
    torch.testing.assert_close(attention.out_proj(merged), seen["out@cross:1"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_patching_every_position_of_the_residual_stream_with_the_clean_run_gives_the_clean_output(arch):
    model = model_of(arch)
    clean_src, clean_tgt = inputs(1)
    corrupt_src, corrupt_tgt = inputs(2)
    stack = "decoder_self" if arch == "decoder_only" else "encoder_self"
    point = f"resid_pre@{stack}:1"
    with recorded(model, [point]) as clean:
        clean_logits = run(model, arch, clean_src, clean_tgt)
    with recorded(model, [point]) as corrupt:
        corrupt_logits = run(model, arch, corrupt_src, corrupt_tgt)
    with attached(model, {point: lambda x: clean[point]}):
        patched = run(model, arch, corrupt_src, corrupt_tgt)
    if arch == "decoder_only":  # the stream is all the later layers read
        assert torch.equal(patched, clean_logits)
    else:  # the classifier also reads which positions are padding, from its own input: equal where they agree
        torch.testing.assert_close(patched[0], clean_logits[0], rtol=0, atol=1e-12)
    with attached(model, {point: lambda x: corrupt[point]}):  # the run's own activation: nothing changes
        assert torch.equal(run(model, arch, corrupt_src, corrupt_tgt), corrupt_logits)


def test_the_last_layers_stream_read_through_the_final_norm_and_the_unembedding_is_the_models_logits():
    model = model_of("decoder_only", norm_position="pre")  # pre-LN: a final norm before the unembedding
    _, tgt = inputs()
    with recorded(model, ["resid_post@decoder_ffn:1"]) as seen:
        logits = model(tgt).logits
    lens = model.out_proj(model.decoder.final_norm(seen["resid_post@decoder_ffn:1"]))
    torch.testing.assert_close(lens, logits, rtol=0, atol=1e-12)


def test_the_head_gates_of_ablate_are_one_edit_on_z():
    model, (src, tgt) = model_of("encoder_decoder"), inputs()
    mask = full_head_mask(model)
    mask["cross"][1, 2] = 0.0
    set_head_mask(model, mask)
    point = find_points(model, ["z@cross:1"])["z@cross:1"]
    assert len(point.edits) == 1  # the gates, while they are set
    gated = model(src, tgt).logits
    clear_head_mask(model)
    assert point.edits == []

    def zero_head_2(z):
        z = z.clone()
        z[:, 2] = 0.0
        return z

    with attached(model, {"z@cross:1": zero_head_2}):
        torch.testing.assert_close(model(src, tgt).logits, gated, rtol=0, atol=1e-12)


def test_an_edited_pattern_is_the_one_the_values_are_weighed_by():
    model, (_, tgt) = model_of("decoder_only"), inputs()

    def first_token_only(weights):
        edited = torch.zeros_like(weights)
        edited[..., 0] = 1.0
        return edited

    with recorded(model, ["z@decoder_self:0"]) as seen, attached(model, {"pattern@decoder_self:0": first_token_only}):
        model(tgt)
    v = model.decoder.layers[0].self_attn.qkv_proj(model.decoder.embed_point(model.tgt_embed(tgt, model.positional)))
    v = v.split(16, dim=-1)[2].view(2, 6, 4, 4).transpose(1, 2)  # (B, H, T, Dh)
    torch.testing.assert_close(seen["z@decoder_self:0"], v[:, :, :1].expand_as(v), rtol=0, atol=1e-12)


def test_a_name_the_model_lacks_is_refused_with_what_it_has():
    model = model_of("decoder_only")
    with pytest.raises(
        ValueError, match=r"'z@cross:0': the model has no such point \(its z points: z@decoder_self:0, "
    ):
        find_points(model, ["z@cross:0"])
    with pytest.raises(ValueError, match="is not an activation point"):
        find_points(model, ["cross:0"])
