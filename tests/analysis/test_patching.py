"""src/analysis/patching.py: patching the clean activation into the corrupted run at every position of a residual
point gives the clean value (and the corrupted run's own activation changes nothing); many patches per forward pass
give what one patch per pass gives; a head's patch is that head's slice of z."""

from __future__ import annotations

import pytest
import torch

from src.analysis.patching import Patch, activation_patching
from src.model import BOS_ID, TransformerConfig, build_model
from src.model.points import attached, recorded
from src.training.inference import forward_batch


def model_of(arch: str = "decoder_only") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = TransformerConfig(
        arch=arch,
        d_model=16,
        heads=4,
        enc_layers=2,
        dec_layers=2,
        d_ff=32,
        dropout=0.0,
        src_vocab_size=13,
        tgt_vocab_size=13,
    )
    return build_model(cfg).double()


def pair(kind: str = "lm") -> tuple[dict, dict]:
    """A clean batch and its corruption: one token changed per row (the third)."""
    generator = torch.Generator().manual_seed(5)
    tokens = torch.randint(4, 13, (3, 6), generator=generator)
    corrupted = tokens.clone()
    corrupted[:, 2] = 4 + (corrupted[:, 2] - 4 + 3) % 9
    make = lambda t: {"tgt_in": torch.cat([torch.full((3, 1), BOS_ID), t[:, :-1]], 1), "tgt_out": t}  # noqa: E731
    clean, bad = make(tokens), make(corrupted)
    if kind == "seq2seq":
        src = torch.randint(4, 13, (3, 5), generator=generator)
        clean, bad = {**clean, "src": src}, {**bad, "src": src.flip(1)}
    return clean, bad


def last_logit_difference(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """(B,): the last position's logit of token 5 minus token 6 (a stand-in for a task's two answers)."""
    return logits[:, -1, 5] - logits[:, -1, 6]


def test_patching_every_position_of_the_stream_restores_the_clean_value_and_its_own_changes_nothing():
    model, (clean, corrupted) = model_of(), pair()
    patches = [Patch("resid_pre@decoder_self:1"), Patch("resid_post@decoder_ffn:1")]
    result = activation_patching(model, "lm", clean, corrupted, patches, last_logit_difference)
    assert result.clean != result.corrupted
    torch.testing.assert_close(result.values, torch.full((2,), result.clean, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(result.restored, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    same = activation_patching(model, "lm", corrupted, corrupted, patches, last_logit_difference)
    torch.testing.assert_close(same.values, torch.full((2,), same.clean, dtype=torch.float64), rtol=0, atol=1e-12)
    noised = activation_patching(model, "lm", clean, corrupted, patches, last_logit_difference, direction="noising")
    torch.testing.assert_close(noised.restored, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_many_patches_per_pass_give_what_one_patch_per_pass_gives(kind):
    model = model_of("decoder_only" if kind == "lm" else "encoder_decoder")
    clean, corrupted = pair(kind)
    sites = ["decoder_self"] + (["cross"] if kind == "seq2seq" else [])
    patches = [
        Patch(f"resid_pre@{site}:{layer}", position) for site in sites for layer in (0, 1) for position in range(6)
    ]
    patches += [Patch(f"z@{site}:1", position, head) for site in sites for position in (2, 5) for head in range(4)]
    if kind == "seq2seq":
        patches += [Patch("resid_post@encoder_ffn:0", position) for position in range(5)]
    batched = activation_patching(model, kind, clean, corrupted, patches, last_logit_difference, patches_per_pass=7)
    alone = activation_patching(model, kind, clean, corrupted, patches, last_logit_difference, patches_per_pass=1)
    torch.testing.assert_close(batched.values, alone.values, rtol=0, atol=1e-12)
    assert batched.values.shape == (len(patches),) and batched.values.std() > 0


def test_a_heads_patch_puts_that_heads_clean_output_at_that_position():
    model, (clean, corrupted) = model_of(), pair()
    patch = Patch("z@decoder_self:1", position=4, head=2)
    result = activation_patching(model, "lm", clean, corrupted, [patch], last_logit_difference)
    model.eval()
    with recorded(model, ["z@decoder_self:1"]) as seen:
        forward_batch(model, "lm", clean)

    def by_hand(z):
        z = z.clone()
        z[:, 2, 4] = seen["z@decoder_self:1"][:, 2, 4]
        return z

    with attached(model, {"z@decoder_self:1": by_hand}):
        expected = last_logit_difference(forward_batch(model, "lm", corrupted).logits, corrupted).mean()
    torch.testing.assert_close(result.values[0], expected, rtol=0, atol=1e-12)


def test_batches_of_different_shapes_and_unknown_directions_are_refused():
    model, (clean, corrupted) = model_of(), pair()
    with pytest.raises(ValueError, match="differ in shape"):
        activation_patching(model, "lm", clean, {k: v[:, :-1] for k, v in corrupted.items()}, [], last_logit_difference)
    with pytest.raises(ValueError, match="direction='both'"):
        activation_patching(model, "lm", clean, corrupted, [], last_logit_difference, direction="both")
