"""induction: random token sequences in which a random segment occurs twice (decoder-only), the task on which a
small attention-only model forms induction heads (Olsson et al. 2022, "In-context learning and induction heads").

Each sequence is seq_len + 1 random content tokens (the model reads seq_len of them, as char_lm's windows) with one
segment of min_segment_len..max_segment_len tokens written a second time later on:

    random | segment | random filler | the segment again | random
             a                          b = a + offset

The segment's length, the offset between the two occurrences (from the segment's length, occurrences side by side,
up to what the sequence holds) and where the first one starts are drawn per sequence, so neither the position nor
the distance of the repeat gives it away: only looking back at what followed the earlier occurrence of the current
token (an induction head) predicts the second occurrence after its first token.

The examples hold nothing but their tokens ({"tokens": (seq_len + 1,)}, as collate_lm reads them). Where the repeat
is follows from the tokens alone: `repeat_offsets` finds every token that continues an earlier run of at least
min_segment_len equal tokens, and the data are drawn so that it finds exactly the repeated segment (a sequence in
which random tokens also happen to repeat such a run, or extend the repeat by one token at either end, is drawn
again; check_settings refuses settings where that is likely). `predictable_targets` turns a batch into the target
positions predictable from the earlier occurrence, and `repeated_loss_sums` is the loss there (the study's main
curve).

Each split draws from its own random stream (from the seed and the split's name, as the synthetic tasks), so the
data are reproducible and a split does not change when another split's size changes; held-out splits contain no
sequence of an earlier split (train, then val, then test).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from ..pairs import Pair
from ..prepared import PreparedTask
from ..registry import TaskSpec, register_task
from ..vocab import SymbolVocab, synthetic_symbols
from .synthetic import split_seed

# Its sequences are read by a decoder-only model, which predicts each next token: the kind the induction analysis
# (src/analysis/induction.py) runs its batches as.
KIND = "lm"


@dataclass
class InductionTaskConfig:
    """induction: random tokens in which a random segment occurs twice, at an offset drawn per sequence."""

    name: str = "induction"
    vocab_size: int = 50  # number of content tokens (shown as 0-9, then a-z, then s36, s37, ...)
    seq_len: int = 64  # tokens the model reads per sequence (each sequence holds one more: the last is only a target)
    min_segment_len: int = 8  # length range of the repeated segment; a run this long is never repeated by chance
    max_segment_len: int = 24
    train_size: int = 20000
    val_size: int = 500
    test_size: int = 500


# Settings with more random runs of min_segment_len equal tokens than this per sequence, on average, are refused:
# most sequences would have to be drawn again, and a shorter repeat would be one of several.
MAX_CHANCE_RUNS = 0.5
CHECK_CHUNK = 4096  # sequences drawn and checked at once


def chance_runs(cfg) -> float:
    """How many runs of min_segment_len equal tokens, at any offset, a sequence of uniform random tokens holds on
    average: what would make the repeat ambiguous."""
    n, m = cfg.seq_len + 1, cfg.min_segment_len
    windows = sum(max(0, n - offset - m + 1) for offset in range(1, n))
    return windows / float(cfg.vocab_size) ** m


def check_settings(cfg) -> None:
    """The vocabulary, lengths and split sizes (one line each); run before any data is drawn."""
    if cfg.vocab_size < 2:
        raise DataError(f"task.vocab_size={cfg.vocab_size} must be >= 2 (a corrupted pair replaces one token)")
    if not 2 <= cfg.min_segment_len <= cfg.max_segment_len:
        raise DataError(
            f"task.min_segment_len={cfg.min_segment_len}, task.max_segment_len={cfg.max_segment_len}: need "
            "2 <= min_segment_len <= max_segment_len (a segment of one token predicts nothing)"
        )
    if 2 * cfg.max_segment_len > cfg.seq_len:
        raise DataError(
            f"task.seq_len={cfg.seq_len} cannot hold two occurrences of task.max_segment_len={cfg.max_segment_len} "
            f"tokens: raise seq_len to {2 * cfg.max_segment_len} or lower max_segment_len"
        )
    for split in ("train_size", "val_size", "test_size"):
        if getattr(cfg, split) < 1:
            raise DataError(f"task.{split}={getattr(cfg, split)} must be >= 1")
    expected = chance_runs(cfg)
    if expected > MAX_CHANCE_RUNS:
        raise DataError(
            f"task.min_segment_len={cfg.min_segment_len}: random sequences of task.vocab_size={cfg.vocab_size} tokens "
            f"repeat a run that long by chance ({expected:.2g} per sequence), so the repeat would be ambiguous: raise "
            "min_segment_len or vocab_size"
        )


def repeat_offsets(tokens: Tensor, min_segment_len: int, real: Optional[Tensor] = None) -> Tensor:
    """(B, N) token ids -> (B, N) long: at each token of a later occurrence of a run of at least min_segment_len
    tokens, how far back its earlier occurrence is (the offset d: tokens[t] == tokens[t - d] along the run); 0
    elsewhere. A token that continues several runs gets the smallest offset (the task's sequences have one run).
    `real` (B, N) bool leaves padding out. All tensor operations, on the tokens' device: no wait for the device."""
    batch, n = tokens.shape
    m = min_segment_len
    if n <= m:
        return torch.zeros_like(tokens, dtype=torch.long)
    position = torch.arange(n, device=tokens.device)
    earlier = position[None, :] - torch.arange(1, n, device=tokens.device)[:, None]  # (D, N): t - d, d = 1..N-1
    valid = earlier >= 0
    earlier = earlier.clamp(min=0)
    same = (tokens[:, earlier] == tokens[:, None, :]) & valid  # (B, D, N)
    if real is not None:
        same &= real[:, None, :] & real[:, earlier]
    ends = F.pad(same.cumsum(-1), (1, 0))  # (B, D, N + 1): matches before each position
    full = (ends[..., m:] - ends[..., :-m]) == m  # (B, D, N - m + 1): the m tokens from s on all match
    # A token is in a run when one of the m windows that hold it matches entirely.
    windows = F.pad(full.flatten(0, 1).unsqueeze(1).float(), (m - 1, m - 1))  # (B * D, 1, N + m - 1)
    covered = F.max_pool1d(windows, kernel_size=m, stride=1).view(batch, n - 1, n) > 0  # (B, D, N)
    first = covered.to(torch.uint8).argmax(dim=1)  # (B, N): the smallest offset that covers the token
    return torch.where(covered.any(dim=1), first + 1, torch.zeros_like(first))


def predictable_positions(tokens: Tensor, min_segment_len: int, real: Optional[Tensor] = None) -> Tensor:
    """(B, N) token ids -> (B, N) bool: the tokens of a later occurrence after its first one, which the token before
    them and the earlier occurrence predict (the first token of a repeat follows random filler: unpredictable)."""
    offsets = repeat_offsets(tokens, min_segment_len, real)
    previous = F.pad(offsets[:, :-1], (1, 0))
    return (offsets > 0) & (previous == offsets)


def predictable_targets(batch: dict[str, Tensor], min_segment_len: int) -> Tensor:
    """An lm batch (collate_lm) -> (B, T) bool over tgt_out: the targets predictable from the repeat's earlier
    occurrence, padding left out. tgt_out[:, p] is token p + 1 of the sequence."""
    tokens = torch.cat([batch["tgt_in"][:, :1], batch["tgt_out"]], dim=1)  # (B, T + 1): the sequences
    real = batch.get("tgt_real")
    if real is not None:
        real = torch.cat([torch.ones_like(real[:, :1]), real], dim=1)
    return predictable_positions(tokens, min_segment_len, real)[:, 1:]


def repeated_loss_sums(logits: Tensor, batch: dict[str, Tensor], min_segment_len: int) -> tuple[Tensor, Tensor]:
    """The summed cross-entropy (nats) over the batch's predictable targets and their number (both 0-d tensors, no
    device sync): their ratio is the loss on the repeated occurrences, the curve an induction head bends."""
    chosen = predictable_targets(batch, min_segment_len)  # (B, T)
    losses = F.cross_entropy(
        logits.float().flatten(0, 1), batch["tgt_out"].flatten(), reduction="none"
    )  # (B * T,): every target, padding included (masked next)
    weights = chosen.flatten().to(losses.dtype)
    return (losses * weights).sum(), weights.sum()


def task_metrics(cfg, batch: dict[str, Tensor], logits: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """The task's own validation metric: `repeated_loss`, the mean loss on the predictable tokens of the repeated
    occurrences, as (summed loss, token count) to be weighted over batches."""
    return {"repeated_loss": repeated_loss_sums(logits, batch, cfg.min_segment_len)}


# --- drawing the sequences --------------------------------------------------------------------------------------

HASH_PRIME = 2_147_483_647  # 2**31 - 1: window hashes stay below it, so hash * HASH_BASE fits in int64
HASH_BASE = 1_000_003


def draw_sequences(generator: torch.Generator, cfg, count: int) -> tuple[Tensor, Tensor, Tensor]:
    """`count` sequences of content indices (0..vocab_size-1), (K, N), each with its segment tokens[a:a + L] written
    again at b = a + d; and per sequence L (K,) and what repeat_offsets should find in it (K, N): d along the second
    occurrence, 0 elsewhere. The offset is drawn from L (side by side) to what the sequence holds, then a."""
    n = cfg.seq_len + 1
    tokens = torch.randint(cfg.vocab_size, (count, n), generator=generator)
    length = torch.randint(cfg.min_segment_len, cfg.max_segment_len + 1, (count,), generator=generator)
    uniform = torch.rand(2, count, generator=generator, dtype=torch.float64)
    offset = length + (uniform[0] * (n - 2 * length + 1)).long()
    start = (uniform[1] * (n - offset - length + 1)).long()
    position = torch.arange(n)[None, :]
    second = (position >= (start + offset)[:, None]) & (position < (start + offset + length)[:, None])  # (K, N)
    tokens = tokens.gather(1, torch.where(second, position - offset[:, None], position))
    return tokens, length, torch.where(second, offset[:, None], 0)


def repeated_windows(tokens: Tensor, width: int) -> Tensor:
    """(K, N) -> (K,): how many of each sequence's windows of `width` tokens repeat an earlier equal window (compared
    by a hash: two different windows sharing one, about one in 2**31, only count one more)."""
    count = tokens.size(1) - width + 1
    codes = torch.zeros(tokens.size(0), count, dtype=torch.long)
    for j in range(width):
        codes = (codes * HASH_BASE + tokens[:, j : j + count] + 1) % HASH_PRIME
    ordered = codes.sort(dim=1).values
    return (ordered[:, 1:] == ordered[:, :-1]).sum(dim=1)


def draw_split(cfg, seed: int, size: int, vocab: SymbolVocab, exclude: set | None, split: str) -> list[dict]:
    """`size` sequences whose only repeat is their segment; with `exclude`, none already in an earlier split (and
    each one added to it).

    A run of min_segment_len equal tokens at some offset (what repeat_offsets finds) is a window of that many tokens
    that occurs twice. The segment of length L makes L - min_segment_len + 1 such windows; a sequence with more
    (tokens that repeat by chance, the segment extended by one equal token at either end, or a segment that repeats
    a window of its own) is drawn again, so repeat_offsets finds exactly the segment in every sequence kept."""
    generator = torch.Generator().manual_seed(split_seed(seed, cfg.name, split))
    first_id = vocab.id_of[vocab.symbols[0]]
    examples: list[dict] = []
    drawn = 0
    max_draws = 50 * size + 1000
    while len(examples) < size:
        if drawn > max_draws:
            raise DataError(
                f"task: only {len(examples)} of {size} {split} sequences drawn in {drawn} tries: raise "
                "task.vocab_size or task.min_segment_len"
            )
        wanted = min(CHECK_CHUNK, 2 * (size - len(examples)) + 8)
        tokens, length, _ = draw_sequences(generator, cfg, wanted)
        drawn += wanted
        kept = repeated_windows(tokens, cfg.min_segment_len) == length - cfg.min_segment_len + 1
        tokens = tokens[kept]
        rows = tokens.numpy()
        for row, sequence in enumerate((tokens + first_id).unbind(0)):
            if len(examples) == size:
                break
            if exclude is not None:
                key = rows[row].tobytes()
                if key in exclude:
                    continue
                exclude.add(key)
            examples.append({"tokens": sequence})
    return examples


def build_induction(cfg: InductionTaskConfig, seed: int, run_dir: Optional[Path] = None) -> PreparedTask:
    check_settings(cfg)
    vocab = SymbolVocab(synthetic_symbols(cfg.vocab_size))

    def split(name: str, size: int, exclude: set) -> list[dict]:
        return draw_split(cfg, seed, size, vocab, exclude, name)

    seen: set = set()
    train = split("train", cfg.train_size, seen)
    val = split("val", cfg.val_size, seen)
    test = split("test", cfg.test_size, seen)
    return PreparedTask(
        kind=KIND,
        train=train,
        val=val,
        test=test,
        src_vocab=None,
        tgt_vocab=vocab,
        max_src_len=0,
        max_tgt_len=cfg.seq_len,
    )


# --- counterfactual pairs (src/data/pairs.py) ---------------------------------------------------------------------


def replacement_tokens(tokens: list[int], start: int, offset: int, length: int, k: int, vocab_ids: range) -> list[int]:
    """The tokens a corruption may write at index k of the first occurrence: none that the sequence holds, so the
    only evidence for it is the changed token. When the sequence holds every token: none of either occurrence or
    the token on each side of it, and none that follows the token before index k anywhere (what an induction head
    would copy instead)."""
    held = set(tokens)
    absent = [t for t in vocab_ids if t not in held]
    if absent:
        return absent
    n, cue = len(tokens), tokens[start + k - 1]
    near = {
        tokens[i] for first in (start, start + offset) for i in range(max(0, first - 1), min(n, first + length + 1))
    }
    near |= {tokens[i + 1] for i in range(n - 1) if tokens[i] == cue}
    return [t for t in vocab_ids if t not in near]


def induction_pairs(cfg, task: PreparedTask, examples, count: int, rng: random.Random) -> list[Pair]:
    """`count` pairs in ONE template, so that a position means the same in every pair and the by-position tables of
    activation patching are defined: the layout of the split's first sequence (where its segment starts, its length
    L and the offset of its repeat) and one index k (drawn from 1..L-1) of the segment. The clean sequences are the
    task's, drawn in that layout (drawn again, as the split's are, until the segment is their only repeat); each
    corrupted one has the token at index k of the segment's FIRST occurrence replaced by one the sequence does not
    hold (symmetric token replacement). The scored position reads the token before index k of the second
    occurrence: by induction it should predict the clean token (answer), and in the corrupted run the replacement
    (wrong)."""
    vocab = task.tgt_vocab
    assert isinstance(vocab, SymbolVocab)
    first_id = vocab.id_of[vocab.symbols[0]]
    vocab_ids = range(first_id, vocab.size)
    layout = next((found for example in examples if (found := segment_layout(example["tokens"], cfg))), None)
    if layout is None:
        return []  # no sequence of this task in the split
    start, offset, length, n = layout
    k = rng.randint(1, length - 1)
    generator = torch.Generator().manual_seed(rng.randrange(2**62))
    sequences: list[Tensor] = []
    for _ in range(50):  # a handful of draws suffice: the split's own sequences were drawn so
        tokens = torch.randint(cfg.vocab_size, (2 * count + 8, n), generator=generator)
        tokens[:, start + offset : start + offset + length] = tokens[:, start : start + length]  # the repeat
        kept = repeated_windows(tokens, cfg.min_segment_len) == length - cfg.min_segment_len + 1
        sequences += list((tokens[kept] + first_id).unbind(0))
        if len(sequences) >= count:
            break
    pairs: list[Pair] = []
    second = start + offset
    for tokens in sequences[:count]:
        ids = tokens.tolist()
        choices = replacement_tokens(ids, start, offset, length, k, vocab_ids)
        if not choices:
            continue
        replacement = choices[rng.randrange(len(choices))]
        corrupted = tokens.clone()
        corrupted[start + k] = replacement
        pairs.append(
            Pair(
                clean={"tokens": tokens},
                corrupted={"tokens": corrupted},
                position=second + k - 1,  # tgt_out[p] is token p + 1: this position predicts token second + k
                answer=ids[second + k],
                wrong=replacement,
            )
        )
    return pairs


def segment_layout(tokens: Tensor, cfg) -> tuple[int, int, int, int] | None:
    """(start, offset, length, sequence length) of a task sequence's segment and its repeat; None without one."""
    offsets = repeat_offsets(tokens[None, :], cfg.min_segment_len)[0]
    where = offsets.nonzero().flatten()
    if where.numel() < 2:
        return None
    second, offset = int(where[0]), int(offsets[where[0]])
    return second - offset, offset, int(where.numel()), int(tokens.numel())


def induction_longest(cfg: Any) -> int:
    return cfg.seq_len


register_task(
    TaskSpec(
        name="induction",
        kind=KIND,
        schema=InductionTaskConfig,
        build=build_induction,
        validate=check_settings,
        longest_sequence=induction_longest,
        pairs=induction_pairs,
        metrics=task_metrics,
        metric_names=("repeated_loss",),
    )
)
