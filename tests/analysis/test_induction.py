"""src/analysis/induction.py: with attention patterns written by hand at the pattern point, the induction and
previous-token scores are the hand-computed values (a head that attends to the previous token scores exactly 1.0);
the loss on the repeats is the cross-entropy at their predictable targets, heads ablated as head masks ablate them,
many ablations per pass as one at a time."""

from __future__ import annotations

import pytest
import torch

from src.analysis.induction import head_scores, head_table, repeated_loss, repeated_losses, task_batches
from src.model import ConfigError, TransformerConfig, build_model
from src.model.head_mask import full_head_mask, set_head_mask
from src.model.points import attached

# Row 0 repeats [4, 5, 6] at offset 5 (queries 7, 8, 9), row 1 at offset 4 (queries 4, 5, 6); m = 3.
SEQUENCES = torch.tensor(
    [[20, 21, 4, 5, 6, 22, 23, 4, 5, 6, 24, 25, 26], [4, 5, 6, 20, 4, 5, 6, 21, 22, 23, 24, 25, 26]]
)
REPEAT_QUERIES = {0: {7: 5, 8: 5, 9: 5}, 1: {4: 4, 5: 4, 6: 4}}  # row -> query position -> offset
T = 12


def model_of() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = TransformerConfig(
        arch="decoder_only", d_model=12, heads=3, dec_layers=2, d_ff=16, dropout=0.0, tgt_vocab_size=30, max_len=16
    )
    return build_model(cfg).double()


def batches() -> list[dict]:
    return task_batches([{"tokens": row} for row in SEQUENCES], batch_size=2)


def hand_pattern() -> torch.Tensor:
    """(2, 3, T, T): head 0 attends to the previous token (position 0 to itself), head 1 evenly to every key it
    sees, head 2 from each repeated token to the one after its earlier occurrence (else to position 0)."""
    pattern = torch.zeros(2, 3, T, T, dtype=torch.float64)
    for t in range(T):
        pattern[:, 0, t, max(t - 1, 0)] = 1.0
        pattern[:, 1, t, : t + 1] = 1.0 / (t + 1)
        for row in range(2):
            offset = REPEAT_QUERIES[row].get(t)
            pattern[row, 2, t, t - offset + 1 if offset else 0] = 1.0
    return pattern


def test_scores_of_hand_written_patterns_are_the_hand_computed_values():
    model, pattern = model_of(), hand_pattern()
    with attached(model, {"pattern@decoder_self:0": lambda weights: pattern.to(weights)}):
        scores = head_scores(model, batches(), 3)
    assert list(scores.induction) == [f"decoder_self:{layer}:{head}" for layer in (0, 1) for head in range(3)]
    assert scores.induction_queries == 6 and scores.previous_queries == 2 * (T - 1)
    uniform_previous = sum(1 / (t + 1) for t in range(1, T)) / (T - 1)
    uniform_induction = sum(1 / (t + 1) for t in (7, 8, 9, 4, 5, 6)) / 6
    expected = {  # head -> (induction, previous token)
        "decoder_self:0:0": (0.0, 1.0),  # the previous token is never the one after the earlier occurrence here
        "decoder_self:0:1": (uniform_induction, uniform_previous),
        "decoder_self:0:2": (1.0, 2 / 22),  # position 1 of each row attends to position 0: its previous token
    }
    for head, (induction, previous) in expected.items():
        assert scores.induction[head] == pytest.approx(induction, abs=1e-12)
        assert scores.previous_token[head] == pytest.approx(previous, abs=1e-12)
    # chance: what the head attending evenly over the keys it sees (head 1) scores
    assert scores.chance == pytest.approx({"induction": uniform_induction, "previous_token": uniform_previous})
    assert scores.rows()[0] == ("decoder_self:0:0", scores.induction["decoder_self:0:0"], 1.0)


def test_the_repeat_loss_is_the_cross_entropy_at_the_predictable_targets_with_heads_ablated_as_masks_do():
    model = model_of()
    targets = [(0, 7), (0, 8), (1, 4), (1, 5)]  # tgt_out positions of each repeat's tokens after its first

    def by_hand() -> float:
        with torch.no_grad():
            logits = model(SEQUENCES[:, :-1]).logits.log_softmax(-1)
        return -sum(float(logits[row, p, SEQUENCES[row, p + 1]]) for row, p in targets) / len(targets)

    intact = by_hand()
    assert repeated_loss(model, batches(), 3) == pytest.approx(intact, abs=1e-12)
    mask = full_head_mask(model)
    mask["decoder_self"][1, 2] = 0.0
    mask["decoder_self"][0, :] = 0.0
    set_head_mask(model, mask)
    ablated = by_hand()
    set_head_mask(model, full_head_mask(model))
    specs = ["decoder_self:1:2", "decoder_self:0"]
    assert repeated_loss(model, batches(), 3, specs) == pytest.approx(ablated, abs=1e-12)
    assert ablated != pytest.approx(intact)
    ablations = [[], specs, ["decoder_self:1:0"], ["decoder_self:0:1", "decoder_self:1:1"]]
    together = repeated_losses(model, batches(), 3, ablations)
    one_pass_each = repeated_losses(model, batches(), 3, ablations, rows_per_batch=1)
    assert together == pytest.approx(one_pass_each, abs=1e-12)
    assert together[:2] == pytest.approx([intact, ablated], abs=1e-12)
    rows, chance = head_table(model, batches(), 3)
    assert 0 < chance["previous_token"] < 1 and 0 < chance["induction"] < 1
    assert [row.head for row in rows] == [f"decoder_self:{layer}:{head}" for layer in (0, 1) for head in range(3)]
    assert rows[3].repeated_loss == pytest.approx(together[2], abs=1e-12)
    assert rows[3].loss_increase == pytest.approx(together[2] - intact, abs=1e-12)
    with pytest.raises(ConfigError, match="head 3 is out of range"):
        repeated_loss(model, batches(), 3, ["decoder_self:1:3"])


def test_heads_already_off_are_marked_and_never_ablated_again():
    """A head gated off (ablate.heads) and the heads of a removed sublayer (ablate.sublayers) still compute a
    pattern, and so scores, but write nothing: head_table marks them, and ablates only the heads in use."""
    from src.model.ablation import sublayer_blocks

    model = model_of()
    mask = full_head_mask(model)
    mask["decoder_self"][1, 2] = 0.0
    set_head_mask(model, mask)
    sublayer_blocks(model)["decoder_self"][0].removed = True
    rows, _ = head_table(model, batches(), 3)
    off = {row.head for row in rows if row.removed_before}
    assert off == {"decoder_self:0:0", "decoder_self:0:1", "decoder_self:0:2", "decoder_self:1:2"}
    intact = repeated_loss(model, batches(), 3)
    for row in rows:
        if row.removed_before:
            assert row.repeated_loss != row.repeated_loss and row.loss_increase != row.loss_increase  # NaN
        else:
            assert row.repeated_loss == pytest.approx(repeated_loss(model, batches(), 3, [row.head]), abs=1e-12)
            assert row.loss_increase == pytest.approx(row.repeated_loss - intact, abs=1e-12)


def test_the_repeated_random_sequences_carry_their_repeats_and_score_as_a_search_finds_them():
    """The second half of each sequence repeats the first at offset `half`, and the batches say so: in a vocabulary
    large enough that no run of 4 recurs by chance, the scores and losses are those a search for the repeats gives;
    in a small one a search counts chance runs too, the batches' own repeats only the second half."""
    from src.analysis.induction import REPEATS, head_scores, repeated_random_batches, sequence_offsets
    from src.data.tasks.induction import predictable_targets

    def model_with(content: int) -> torch.nn.Module:
        torch.manual_seed(0)
        cfg = TransformerConfig(arch="decoder_only", d_model=12, heads=3, dec_layers=2, d_ff=16, dropout=0.0,
                                tgt_vocab_size=content + 4, max_len=64)  # fmt: skip
        return build_model(cfg).double()

    half, count = 16, 32
    model = model_with(200)
    known = repeated_random_batches(model, count, half, batch_size=16)
    searched = [{key: value for key, value in batch.items() if key != REPEATS} for batch in known]
    exact, found = head_scores(model, known), head_scores(model, searched, 4)
    assert exact.induction_queries == found.induction_queries == count * (half - 1)
    assert exact.induction == pytest.approx(found.induction, abs=1e-12)
    assert exact.chance == pytest.approx(found.chance, abs=1e-12)
    assert repeated_losses(model, known, None, [[], ["decoder_self:1:0"]]) == pytest.approx(
        repeated_losses(model, searched, 4, [[], ["decoder_self:1:0"]]), abs=1e-12
    )
    assert all(predictable_targets(batch, 4)[:, : half - 1].sum() == 0 for batch in searched)

    (small,) = repeated_random_batches(model_with(4), count, half, batch_size=count)
    assert head_scores(model_with(4), [small]).induction_queries == count * (half - 1)  # the second half only
    searched_small = sequence_offsets({key: value for key, value in small.items() if key != REPEATS}, 4)
    assert not torch.equal(searched_small, small[REPEATS])  # chance runs, or shorter offsets in the second half
    with pytest.raises(ValueError, match="need min_segment_len"):
        head_scores(model, searched)
