"""Attention statistics on hand-made weights whose answers are known; AttentionStatsLogger writes them per head
inside a real Trainer."""

import math
import re

import pytest
import torch

from src.dashboard import AttentionStatsLogger, read_events
from src.dashboard.attention_stats import head_statistics, valid_query_rows
from src.model.names import site_title

from .conftest import HEADS, LAYERS, SITES_BY_KIND


def one_hot_rows(target_columns: list[int], num_keys: int) -> torch.Tensor:
    """(Tq, Tk) with row i putting all its weight on key target_columns[i]."""
    weights = torch.zeros(len(target_columns), num_keys)
    weights[torch.arange(len(target_columns)), torch.tensor(target_columns)] = 1.0
    return weights


# --- the statistics -----------------------------------------------------------------------------------------------


def test_uniform_attention_has_entropy_log_n_and_confidence_one_over_n():
    num_keys = 7
    weights = torch.full((2, 3, 5, num_keys), 1.0 / num_keys)  # (B, H, Tq, Tk)
    stats = head_statistics(weights)
    assert stats["entropy"].shape == (3,)
    torch.testing.assert_close(stats["entropy"], torch.full((3,), math.log(num_keys)))
    torch.testing.assert_close(stats["confidence"], torch.full((3,), 1.0 / num_keys))


def test_diagonal_attention_has_distance_zero_and_entropy_zero():
    weights = torch.eye(6).expand(1, 2, 6, 6)
    stats = head_statistics(weights)
    torch.testing.assert_close(stats["distance"], torch.zeros(2))
    torch.testing.assert_close(stats["entropy"], torch.zeros(2))
    torch.testing.assert_close(stats["confidence"], torch.ones(2))


def test_previous_token_attention_has_distance_one():
    # Row 0 has no previous token: it attends to itself (distance 0), so leave it out with the query mask.
    weights = one_hot_rows([0, 0, 1, 2, 3], num_keys=5)[None, None]  # (1, 1, 5, 5)
    query_mask = torch.tensor([[False, True, True, True, True]])
    stats = head_statistics(weights, query_mask)
    torch.testing.assert_close(stats["distance"], torch.ones(1))


def test_heads_are_kept_apart():
    diagonal = torch.eye(4)
    uniform = torch.full((4, 4), 0.25)
    weights = torch.stack([diagonal, uniform])[None]  # (1, 2, 4, 4)
    stats = head_statistics(weights)
    torch.testing.assert_close(stats["entropy"], torch.tensor([0.0, math.log(4)]))
    # uniform over 4 keys: mean over rows i of mean_j |i - j| = (1.5 + 1 + 1 + 1.5) / 4
    torch.testing.assert_close(stats["distance"], torch.tensor([0.0, 1.25]))


def test_pad_queries_and_empty_rows_do_not_count():
    # Example 0: 3 real tokens attending diagonally, then 2 pad rows that (wrongly) attend uniformly.
    # Example 1: one fully masked row (all zeros, as SDPA returns) among diagonal rows.
    weights = torch.zeros(2, 1, 5, 5)
    weights[0, 0, :3, :3] = torch.eye(3)
    weights[0, 0, 3:] = 0.2
    weights[1, 0] = torch.eye(5)
    weights[1, 0, 2] = 0.0
    query_mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    valid = valid_query_rows(weights, query_mask)
    assert valid.sum().item() == 3 + 4
    stats = head_statistics(weights, query_mask)
    torch.testing.assert_close(stats["entropy"], torch.zeros(1))  # the uniform pad rows would add log(5)
    torch.testing.assert_close(stats["confidence"], torch.ones(1))  # the empty row would pull this below 1


def test_a_head_with_no_valid_row_gives_nan():
    stats = head_statistics(torch.zeros(1, 2, 3, 3))
    assert torch.isnan(stats["entropy"]).all()


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match="batch, heads, queries, keys"):
        head_statistics(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="query_mask"):
        head_statistics(torch.rand(2, 1, 4, 4), torch.ones(2, 5, dtype=torch.bool))


# --- the callback -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["seq2seq", "lm", "classification"])
def test_every_head_gets_its_scalars(tmp_path, fit, kind):
    module = fit(kind, [AttentionStatsLogger(every_n_steps=2, probe_size=4)])
    events = read_events(tmp_path)
    sites = SITES_BY_KIND[kind]

    # Every head of every layer, entropy and distance, after steps 2 and 4 (filed under 2 and 4, as the run counts).
    stats_tags = events.tags_with_prefix("val_heads/")
    assert len(stats_tags) == len(sites) * LAYERS * HEADS * 2
    # The tag ends in the head as ablate.heads names it: layer 1, head 1 (counted from 0)
    assert f"val_heads/entropy/{sites[0]}:1:1" in stats_tags
    assert [step for step, _ in events.scalars[f"val_heads/distance/{sites[0]}:0:0"]] == [2, 4]
    # CUSTOM SCALARS: one chart per site, layer and statistic; its pattern matches exactly that chart's heads
    assert len(events.custom_scalars) == len(sites)
    charts = events.custom_scalars[f"attention heads: {sites[0]} ({site_title(sites[0])})"]
    assert len(charts) == LAYERS * 2
    (pattern,) = charts[f"{sites[0]}:1 entropy"]
    matched = {tag for tag in stats_tags if re.search(pattern, tag)}
    assert matched == {f"val_heads/entropy/{sites[0]}:1:{h}" for h in range(HEADS)}
    assert module.model.attention_map_calls == 2  # only on the two logging steps


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="unknown attention statistics"):
        AttentionStatsLogger(statistics=["entropy", "sharpness"])
