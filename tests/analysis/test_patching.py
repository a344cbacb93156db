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


@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_the_shortcut_passes_skip_only_what_no_patch_changes(kind):
    """Resuming at the first patched decoder layer, the encoder's memory taken from the base run, and logits made
    at the scored positions only (PatchedRuns) give the full passes' values exactly, in chunks that mix layers,
    stacks and families, in both directions."""
    from src.analysis.causal import pair_metric
    from src.data.pairs import PairBatch

    model = model_of("decoder_only" if kind == "lm" else "encoder_decoder")
    clean, corrupted = pair(kind)
    pairs = PairBatch(clean, corrupted, torch.tensor([5, 3, 4]), torch.tensor([5, 7, 9]), torch.tensor([6, 8, 10]))
    metric = pair_metric("logit_diff", pairs, kind)
    sites = ["decoder_self"] + (["cross"] if kind == "seq2seq" else [])
    patches = [Patch(f"resid_pre@{site}:{layer}", p) for site in sites for layer in (1, 0) for p in range(0, 6, 2)]
    patches += [Patch(f"z@{site}:1", head=h) for site in sites for h in range(4)]
    patches += [Patch("out@decoder_ffn:1", 4), Patch("resid_post@decoder_ffn:0", 3)]
    if kind == "seq2seq":
        patches += [Patch("resid_post@encoder_ffn:0", position) for position in range(5)]
    for direction in ("denoising", "noising"):
        args = (model, kind, clean, corrupted, patches, metric, direction)
        fast = activation_patching(*args, patches_per_pass=5, scored=pairs.position)
        full = activation_patching(*args, patches_per_pass=5, shortcuts=False)
        torch.testing.assert_close(fast.values, full.values, rtol=0, atol=1e-12)
        assert fast.values.std() > 0


def test_resuming_at_a_layer_and_logits_at_positions_are_the_models_own_pass():
    model, (clean, _) = model_of(), pair()
    model.eval()
    tokens = clean["tgt_in"]
    with torch.no_grad(), recorded(model, ["resid_pre@decoder_self:1"]) as seen:
        whole, _ = model.decode(tokens)
    with torch.no_grad():
        resumed, _ = model.decode(tokens, resume=(1, seen["resid_pre@decoder_self:1"]))
        at, _ = model.decode(tokens, logits_at=torch.tensor([5, 0, 2]))
    torch.testing.assert_close(resumed, whole, rtol=0, atol=0)
    torch.testing.assert_close(at[:, 0], whole[torch.arange(3), torch.tensor([5, 0, 2])], rtol=0, atol=1e-15)
    assert at.shape == (3, 1, 13)


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
    with pytest.raises(ValueError, match="differ in keys or shape"):
        activation_patching(model, "lm", clean, {k: v[:, :-1] for k, v in corrupted.items()}, [], last_logit_difference)
    with pytest.raises(ValueError, match="direction='both'"):
        activation_patching(model, "lm", clean, corrupted, [], last_logit_difference, direction="both")


def test_attribution_patching_is_the_gradient_times_the_activation_difference_by_finite_difference():
    """Each estimate is the directional derivative of the metric along (clean - corrupted) at that place: a central
    finite difference in float64 along that direction gives the same number."""
    from src.analysis.patching import attribution_patching

    model, (clean, corrupted) = model_of(), pair()
    points = ["resid_pre@decoder_self:1", "z@decoder_self:0"]
    estimates = attribution_patching(model, "lm", clean, corrupted, points, last_logit_difference)
    assert estimates["resid_pre@decoder_self:1"].shape == (6,) and estimates["z@decoder_self:0"].shape == (4, 6)
    model.eval()
    with recorded(model, points) as clean_seen:
        forward_batch(model, "lm", clean)
    with recorded(model, points) as corrupted_seen:
        forward_batch(model, "lm", corrupted)

    def metric_moved(point, place, step):
        def move(x):
            x = x.clone()
            direction = clean_seen[point] - corrupted_seen[point]
            x[place] = x[place] + step * direction[place]
            return x

        with attached(model, {point: move}):
            return last_logit_difference(forward_batch(model, "lm", corrupted).logits, corrupted).mean()

    for point, place, estimate in [
        ("resid_pre@decoder_self:1", (slice(None), 3), estimates["resid_pre@decoder_self:1"][3]),
        ("z@decoder_self:0", (slice(None), 1, 2), estimates["z@decoder_self:0"][1, 2]),
    ]:
        step = 1e-5
        finite = (metric_moved(point, place, step) - metric_moved(point, place, -step)) / (2 * step)
        torch.testing.assert_close(estimate, finite, rtol=1e-6, atol=1e-9)
    assert estimates["resid_pre@decoder_self:1"].abs().sum() > 0


def test_path_patching_through_a_receivers_query_is_the_hand_written_two_pass_computation():
    """Pre-LN, so the receiver's query reads Norm(resid): the sender's path into it is its change of output, added
    to the clean stream before the receiver's layer and read through that layer's norm and W^Q."""
    from src.analysis.patching import path_patching

    torch.manual_seed(0)
    cfg = TransformerConfig(
        arch="decoder_only",
        d_model=16,
        heads=4,
        dec_layers=2,
        d_ff=32,
        dropout=0.0,
        norm_position="pre",
        src_vocab_size=13,
        tgt_vocab_size=13,
    )
    model = build_model(cfg).double().eval()
    clean, corrupted = pair()
    result = path_patching(
        model, "lm", clean, corrupted, "decoder_self:0:1", "decoder_self:1:2", "q", last_logit_difference
    )

    with recorded(model, ["resid_pre@decoder_self:1", "z@decoder_self:0"]) as seen_clean:
        forward_batch(model, "lm", clean)
    with recorded(model, ["z@decoder_self:0"]) as seen_corrupted:
        forward_batch(model, "lm", corrupted)
    layer0, layer1 = model.decoder.layers[0].self_attn, model.decoder.layers[1]
    w_o = layer0.out_proj.weight.view(16, 4, 4)[:, 1]  # (D, Dh): head 1's columns of W^O
    change = (seen_corrupted["z@decoder_self:0"][:, 1] - seen_clean["z@decoder_self:0"][:, 1]) @ w_o.T  # (B, T, D)
    stream = seen_clean["resid_pre@decoder_self:1"] + change
    q = layer1.self_attn.qkv_proj(layer1.self_block.norm(stream))[..., :16].view(3, 6, 4, 4).transpose(1, 2)

    def receive(x):
        x = x.clone()
        x[:, 2] = q[:, 2]
        return x

    with attached(model, {"q@decoder_self:1": receive}):
        expected = last_logit_difference(forward_batch(model, "lm", clean).logits, clean).mean()
    assert result.value == pytest.approx(float(expected), abs=1e-12)
    assert result.value != pytest.approx(result.clean, abs=1e-9)  # the path matters in this model
    with pytest.raises(ValueError, match="channel='o'"):
        path_patching(model, "lm", clean, corrupted, "decoder_self:0:1", "decoder_self:1:2", "o", last_logit_difference)


def test_path_patching_through_a_shared_key_reaches_the_receiver_head_alone():
    """Grouped-query attention (model.kv_heads=2 of 4 heads): the receiver head 3 reads KV group 1's key, which head
    2 reads too. The path changes group 1's key as the query test's computation does; only head 3's output, computed
    by hand from that key, enters the clean run."""
    from src.analysis.patching import path_patching

    torch.manual_seed(0)
    cfg = TransformerConfig(
        arch="decoder_only", d_model=16, heads=4, kv_heads=2, dec_layers=2, d_ff=32, dropout=0.0,
        norm_position="pre", src_vocab_size=13, tgt_vocab_size=13,
    )  # fmt: skip
    model = build_model(cfg).double().eval()
    clean, corrupted = pair()
    result = path_patching(
        model, "lm", clean, corrupted, "decoder_self:0:1", "decoder_self:1:3", "k", last_logit_difference
    )
    names = ["resid_pre@decoder_self:1", "z@decoder_self:0", "q@decoder_self:1", "v@decoder_self:1"]
    with recorded(model, names) as seen_clean:
        forward_batch(model, "lm", clean)
    with recorded(model, ["z@decoder_self:0"]) as seen_corrupted:
        forward_batch(model, "lm", corrupted)
    layer0, layer1 = model.decoder.layers[0].self_attn, model.decoder.layers[1]
    w_o = layer0.out_proj.weight.view(16, 4, 4)[:, 1]  # (D, Dh): head 1's columns of W^O
    change = (seen_corrupted["z@decoder_self:0"][:, 1] - seen_clean["z@decoder_self:0"][:, 1]) @ w_o.T  # (B, T, D)
    stream = seen_clean["resid_pre@decoder_self:1"] + change
    k = layer1.self_attn.qkv_proj(layer1.self_block.norm(stream))[..., 16:24].view(3, 6, 2, 4)[:, :, 1]  # group 1
    q, v = seen_clean["q@decoder_self:1"][:, 3], seen_clean["v@decoder_self:1"][:, 1]  # (B, T, Dh)
    scores = (q @ k.transpose(1, 2)) / 2.0  # (B, T, T), sqrt(Dh) = 2
    scores = scores.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf"))
    head_3 = torch.softmax(scores, -1) @ v  # (B, T, Dh)

    def only_head_3(z):
        z = z.clone()
        z[:, 3] = head_3
        return z

    with attached(model, {"z@decoder_self:1": only_head_3}):
        expected = last_logit_difference(forward_batch(model, "lm", clean).logits, clean).mean()
    assert result.value == pytest.approx(float(expected), abs=1e-12)
    assert result.value != pytest.approx(result.clean, abs=1e-9)


def test_a_patch_that_does_not_fit_its_point_and_a_path_that_runs_backwards_are_refused():
    from src.analysis.patching import path_patching

    model, (clean, corrupted) = model_of(), pair()
    for patch, message in [
        (Patch("resid_pre@decoder_self:1", head=1), "has no heads"),
        (Patch("z@decoder_self:1", head=7), "has 4 heads, numbered 0-3"),
        (Patch("z@decoder_self:1", position=6), "has 6 positions, numbered 0-5"),
    ]:
        with pytest.raises(ValueError, match=message):
            activation_patching(model, "lm", clean, corrupted, [patch], last_logit_difference)
    with pytest.raises(ValueError, match="patches_per_pass=0"):
        activation_patching(model, "lm", clean, corrupted, [], last_logit_difference, patches_per_pass=0)
    assert activation_patching(model, "lm", clean, corrupted, [], last_logit_difference).values.shape == (0,)
    with pytest.raises(ValueError, match="the sender must run before the receiver"):
        path_patching(model, "lm", clean, corrupted, "decoder_self:1:1", "decoder_self:0:2", "q", last_logit_difference)


@pytest.mark.parametrize(
    "sender, receiver, channel, reaches",
    [
        ("encoder_self", "cross", "k", True),  # a cross-attention's keys and values read the encoder's output
        ("encoder_ffn", "cross", "v", True),
        ("encoder_self", "cross", "q", False),  # its query reads the decoder's stream
        ("decoder_self", "cross", "q", True),
        ("decoder_ffn", "cross", "k", False),
        ("encoder_ffn", "decoder_self", "q", False),  # a self-attention reads its own stack's stream only
        ("decoder_ffn", "decoder_self", "k", True),
        ("encoder_self", "encoder_self", "v", True),
    ],
)
def test_a_sender_reaches_a_receiving_heads_query_keys_and_values_through_the_stream_each_reads(
    sender, receiver, channel, reaches
):
    from src.analysis.patching import reachable

    assert reachable(sender, receiver, channel) == reaches


def _unknown_site_asks():
    """Every function of the analyses that reads what a site is from a site's name, given a misspelt one."""
    from src.analysis.causal import stack_of
    from src.analysis.causal_report import forward_order
    from src.analysis.patching import decoder_layer_of, path_patching, reachable, runs_before
    from src.dashboard.explorer import site_sides
    from src.training.inference import site_inputs

    def path():
        model, (clean, corrupted) = model_of(), pair()
        path_patching(model, "lm", clean, corrupted, "decoder_slef:0:1", "decoder_self:1:0", "q", last_logit_difference)

    return {
        "runs_before": lambda: runs_before(("decoder_slef", 0), ("decoder_self", 1)),
        "reachable": lambda: reachable("decoder_self", "decoder_slef", "q"),
        "decoder_layer_of": lambda: decoder_layer_of("z@decoder_slef:1"),
        "forward_order": lambda: forward_order((1, "decoder_slef")),
        "stack_of": lambda: stack_of("decoder_slef"),
        "site_inputs": lambda: site_inputs("decoder_slef"),
        "site_sides": lambda: site_sides("decoder_slef"),
        "path_patching": path,
    }


@pytest.mark.parametrize("asked", list(_unknown_site_asks()))
def test_a_name_that_is_no_site_is_refused_in_one_line_naming_the_sites(asked):
    """names.site_named: a typo in an API call is a ValueError that says what a site can be, not a KeyError."""
    message = "'decoder_slef' is not a site: give one of encoder_self, decoder_self, cross, encoder_ffn, decoder_ffn"
    with pytest.raises(ValueError, match=f"^{message}$"):
        _unknown_site_asks()[asked]()


def test_pairs_the_model_answers_otherwise_are_warned_about():
    """A negative clean logit difference, or a clean answer rarely the top-1 prediction, says the pairs test a
    behaviour the model does not have (an answer off by one token gives both)."""
    from src.analysis.causal import CausalAnalysis, wrong_answer

    def analysis(metric: str, clean: float) -> CausalAnalysis:
        return CausalAnalysis(metric, "denoising", 4, clean, -3.0, [], {}, {})

    assert "prefers the corrupted answer (mean logit difference -0.5" in wrong_answer(analysis("logit_diff", -0.5), 0.0)
    assert "top-1 prediction in only 25%" in wrong_answer(analysis("loss", 1.0), 0.25)
    assert wrong_answer(analysis("logit_diff", 2.0), 0.75) is None


def test_a_fraction_is_not_defined_where_the_clean_and_corrupted_runs_score_the_same():
    """Nothing to restore: NaN for activation and path patching alike, never an infinity or a ZeroDivisionError."""
    import math

    from src.analysis.patching import PatchingResult, PathPatchingResult, fraction

    assert fraction(0.5, 1.0, 0.0) == 0.5
    assert math.isnan(fraction(0.3, 0.2, 0.2))
    assert torch.isnan(fraction(torch.tensor([0.3, 0.2]), 0.2, 0.2)).all()
    assert torch.isnan(PatchingResult([Patch("embed@decoder")], torch.tensor([0.3]), 0.2, 0.2).restored).all()
    assert math.isnan(PathPatchingResult("decoder_self:0:1", "decoder_self:1:2", "q", 0.3, 0.2, 0.2).restored)
