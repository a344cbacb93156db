"""Per-head summary statistics of attention weights, for scalar charts next to the attention maps.

For one query i with attention distribution p_i over keys j (a row of the weight matrix):

- entropy     H_i = -sum_j p_ij log p_ij          (nats; 0 = looks at one key, log(n) = uniform over n keys)
- distance    D_i =  sum_j p_ij |i - j|            (expected offset of the attended key; 0 = itself, 1 = a neighbour)
- confidence  C_i =  max_j p_ij                    (weight of the strongest key)

Each is averaged over the valid query rows of the batch, separately per head. A query row is valid when the
query is not padding (``query_mask``) and the row has any weight at all: a row whose keys were all masked comes
out of SDPA as zeros and says nothing about the head, so it is left out rather than counted as "entropy 0".
For cross-attention |i - j| compares a target position with a source position; it is still informative for
monotonic tasks (copy: diagonal, reverse: anti-diagonal) but has no built-in meaning otherwise.
"""

from __future__ import annotations

import torch

STATISTICS = ("entropy", "distance", "confidence")


def valid_query_rows(weights: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, Tq) bool: rows that take part in the averages (non-pad query with a non-empty distribution)."""
    valid = weights.sum(dim=-1) > 0  # (B, H, Tq)
    if query_mask is None:
        return valid
    batch, _, num_queries = valid.shape
    if tuple(query_mask.shape) != (batch, num_queries):
        raise ValueError(f"query_mask has shape {tuple(query_mask.shape)} but the weights have (batch, queries) = "
                         f"{(batch, num_queries)}: pass one boolean per query position, True = real token")
    return valid & query_mask.to(torch.bool)[:, None, :]


def _mean_over_valid_rows(per_row: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """per_row (B, H, Tq), valid (B, H, Tq) -> (H,) mean over valid rows; NaN for a head with no valid row."""
    weight = valid.to(per_row.dtype)
    total = (per_row * weight).sum(dim=(0, 2))  # (H,)
    count = weight.sum(dim=(0, 2))  # (H,)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


def head_statistics(weights: torch.Tensor, query_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Entropy, mean attended distance and confidence of every head, averaged over valid query rows.

    Args:
        weights: (B, H, Tq, Tk) attention probabilities (rows sum to 1, or to 0 when fully masked).
        query_mask: optional (B, Tq) bool, True for real (non-pad) query positions.

    Returns:
        {"entropy": (H,), "distance": (H,), "confidence": (H,)} float32 tensors on the CPU.
    """
    if weights.dim() != 4:
        raise ValueError(f"attention weights must be (batch, heads, queries, keys), got shape {tuple(weights.shape)}")
    weights = weights.detach().to("cpu", torch.float32)
    if query_mask is not None:
        query_mask = query_mask.detach().to("cpu")
    valid = valid_query_rows(weights, query_mask)  # (B, H, Tq)
    num_queries, num_keys = weights.shape[-2:]

    # xlogy(p, p) = p * log(p) with the limit 0 * log(0) = 0, so masked keys (p = 0) cost nothing.
    entropy = -torch.special.xlogy(weights, weights).sum(dim=-1)  # (B, H, Tq)

    query_positions = torch.arange(num_queries, dtype=torch.float32)[:, None]  # (Tq, 1)
    key_positions = torch.arange(num_keys, dtype=torch.float32)[None, :]  # (1, Tk)
    offsets = (query_positions - key_positions).abs()  # (Tq, Tk) |i - j|
    distance = (weights * offsets).sum(dim=-1)  # (B, H, Tq)

    confidence = weights.amax(dim=-1)  # (B, H, Tq)

    return {
        "entropy": _mean_over_valid_rows(entropy, valid),
        "distance": _mean_over_valid_rows(distance, valid),
        "confidence": _mean_over_valid_rows(confidence, valid),
    }
