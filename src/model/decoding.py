"""Autoregressive decoding: greedy, beam search and sampling, all through a key/value cache.

With the cache, each step feeds only the newest token: self-attention appends its key/value to the
cache and cross-attention reuses the encoder memory projected once, so a step costs O(T) instead of
re-running the whole prefix (O(T^2)). A "stepper" hides which architecture is decoding.

Per layer the cache holds each attention's keys and values, (B, KVH, T, Dh) each: with grouped-query attention
(`model.kv_heads`, attention.py) only the KV heads, so its memory is 2 * layers * KVH * Dh numbers per token and
sequence, KVH/H of multi-head attention's. Reordering and dropping rows (below) act on the batch dimension alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ConfigError
from .head_mask import head_gate_rows, keep_head_gate_rows, restore_head_gate_rows
from .transformer import DecoderOnly, EncoderDecoder


class _Stepper:
    """Feeds tokens to a model one step at a time, keeping its key/value cache."""

    cache: list[dict]

    def reorder(self, index: Tensor) -> None:
        """Beam search moved hypotheses between rows: row i now continues old row index[i]."""
        for layer_cache in self.cache:
            for name in ("k", "v"):
                layer_cache["self_attn"][name] = layer_cache["self_attn"][name].index_select(0, index)

    def keep_rows(self, rows: Tensor) -> None:
        """Greedy decoding dropped finished rows: only `rows` go on (every cache and per-row input)."""
        for layer_cache in self.cache:
            for part in layer_cache.values():  # the self-attention's and the cross-attention's
                for name in list(part):
                    part[name] = part[name].index_select(0, rows)


class _EncoderDecoderStepper(_Stepper):
    # Beams move between rows of the same batch item only, and those rows share one memory, so
    # only the self-attention cache needs reordering (the base class's reorder does just that).

    def __init__(self, model: EncoderDecoder, src: Tensor, repeats: int = 1):
        src = src.repeat_interleave(repeats, dim=0)  # (B*K, S): one copy per beam
        self.model, self.src = model, src
        self.memory, _ = model.encode(src)  # (B*K, S, D), computed once
        self.cache = model.decoder.new_cache()
        self.position = 0
        self.prompt = torch.full((src.size(0), 1), model.cfg.bos_id, dtype=torch.long, device=src.device)

    def keep_rows(self, rows: Tensor) -> None:
        super().keep_rows(rows)
        self.memory, self.src = self.memory.index_select(0, rows), self.src.index_select(0, rows)

    def step(self, tokens: Tensor) -> Tensor:
        """tokens (N, t) at the next t positions -> logits of the last one (N, V)."""
        logits, _, _ = self.model.decode(tokens, self.memory, self.src, self.cache, start=self.position)
        self.position += tokens.size(1)
        return logits[:, -1]


class _DecoderOnlyStepper(_Stepper):
    def __init__(self, model: DecoderOnly, prompt: Tensor, repeats: int = 1):
        self.model = model
        self.cache = model.decoder.new_cache()
        self.position = 0
        self.prompt = prompt.repeat_interleave(repeats, dim=0)  # (B*K, P)

    def step(self, tokens: Tensor) -> Tensor:
        logits, _ = self.model.decode(tokens, self.cache, start=self.position)
        self.position += tokens.size(1)
        return logits[:, -1]


def _stepper(model, src, prompt, repeats):
    # Each architecture reads one of src and prompt; the other is refused rather than ignored, so that a caller
    # who meant it (a prompt for the decoder of a translation model, say) learns it was not read.
    if isinstance(model, EncoderDecoder):
        if src is None:
            raise ValueError("an encoder-decoder model decodes from src: pass src=(B, S) token ids")
        if prompt is not None:
            raise ValueError(
                "generate(prompt=...) is for decoder-only models: an encoder-decoder model decodes from src alone, "
                "its decoder starting from BOS; drop prompt"
            )
        return _EncoderDecoderStepper(model, src, repeats)
    if isinstance(model, DecoderOnly):
        if src is not None:
            raise ValueError(
                "generate(src=...) is for encoder-decoder models: a decoder-only model continues prompt=(B, P) "
                "token ids (default: one BOS); pass prompt instead of src"
            )
        device = next(model.parameters()).device
        if prompt is None:
            prompt = torch.full((1, 1), model.cfg.bos_id, dtype=torch.long, device=device)
        if model.cfg.dedicated_pad and (prompt == model.cfg.pad_id).any():
            raise ConfigError("the prompt contains PAD tokens: generate from unpadded prompts of equal length")
        needed = model.mask_scheme.min_prompt_len
        if prompt.size(1) < needed:
            raise ConfigError(
                f"the prompt of {prompt.size(1)} tokens is shorter than the {needed} tokens "
                f"mask={model.cfg.mask['type']} "
                "needs: a prefix-LM must be given its whole (bidirectional) prefix before it generates"
            )
        return _DecoderOnlyStepper(model, prompt, repeats)
    raise ValueError(f"{type(model).__name__} does not generate text (it is a classifier)")


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Keep the k most likely tokens and/or the smallest set whose probability reaches p (nucleus);
    the rest get -inf. logits (N, V)."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token already >= p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def ban_repeated_ngrams(logits: Tensor, history: Tensor, n: int) -> Tensor:
    """No n-gram twice in a row's text (Paulus et al. 2018; transformers' no_repeat_ngram_size): a token that would
    complete an n-gram the row already holds gets -inf. logits (B, V); history (B, T), the row's tokens so far."""
    if n <= 0 or history.size(1) < n - 1:
        return logits
    windows = history.unfold(1, n, 1)  # (B, T-n+1, n): every n-gram so far (n-1 = its prefix, then the token)
    prefix = history[:, history.size(1) - (n - 1) :]  # (B, n-1): what the next token would extend
    seen = (windows[:, :, :-1] == prefix[:, None, :]).all(-1)  # (B, T-n+1): n-grams with that prefix
    rows, starts = seen.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return logits
    logits = logits.clone()
    logits[rows, windows[rows, starts, -1]] = float("-inf")
    return logits


def ends_text(tokens: Tensor, cfg) -> Tensor:
    """Which of `tokens` end a text: the model's EOS, or one of its further stop ids (cfg.stop_ids, where its
    config lists several, as Llama 3.1's instruct models do)."""
    ended = tokens == cfg.eos_id
    for stop in cfg.stop_ids:
        ended |= tokens == stop
    return ended


def _forbid_special_tokens(logits: Tensor, cfg) -> Tensor:
    """PAD and BOS are never outputs: the model may still give them mass, decoding must not pick them. Unless
    they also end a text (GPT-2's <|endoftext|> is all three; a stop id of cfg.stop_ids), or the model's BOS is one
    of its outputs (cfg.bos_is_output: Llama's <s>)."""
    never = (cfg.pad_id,) if cfg.bos_is_output else (cfg.pad_id, cfg.bos_id)
    forbidden = [i for i in never if i != cfg.eos_id and i not in cfg.stop_ids]
    if not forbidden:
        return logits
    logits = logits.clone()
    logits[:, forbidden] = float("-inf")
    return logits


def _greedy(stepper, model, max_new_tokens: int) -> Tensor:
    """Greedy decoding that stops computing a row once it has ended: finished rows leave the batch (their caches
    and per-row head gates with them) once they are an eighth of it, so a batch of mixed lengths does not pay for
    its longest output on every row. Each row's tokens are those of decoding it alone."""
    cfg = model.cfg
    logits = stepper.step(stepper.prompt)  # (B, V)
    batch = logits.size(0)
    out = torch.full((batch, max_new_tokens), cfg.pad_id, dtype=torch.long, device=logits.device)
    active = torch.arange(batch, device=logits.device)  # the batch rows still in the computation
    finished = torch.zeros(batch, dtype=torch.bool, device=logits.device)  # of the active rows
    saved = head_gate_rows(model)
    try:
        for step in range(max_new_tokens):
            next_token = _forbid_special_tokens(logits, cfg).argmax(-1).masked_fill(finished, cfg.pad_id)  # (A,)
            out[active, step] = next_token
            finished |= ends_text(next_token, cfg)
            if finished.all() or step == max_new_tokens - 1:
                return out[:, : step + 1]
            if int(finished.sum()) * 8 >= finished.numel():
                rows = (~finished).nonzero().squeeze(1)
                stepper.keep_rows(rows)
                keep_head_gate_rows(model, rows)
                active, finished, next_token = active[rows], finished[rows], next_token[rows]
            logits = stepper.step(next_token[:, None])
        return out
    finally:
        restore_head_gate_rows(model, saved)


def _greedy_or_sample(
    stepper, max_new_tokens, sample, temperature, top_k, top_p, generator, no_repeat_ngram_size=0
) -> Tensor:
    cfg = stepper.model.cfg
    logits = stepper.step(stepper.prompt)  # (B, V)
    finished = torch.zeros(logits.size(0), dtype=torch.bool, device=logits.device)
    generated: list[Tensor] = []
    for _ in range(max_new_tokens):
        logits = _forbid_special_tokens(logits, cfg)
        if no_repeat_ngram_size > 0:
            history = torch.cat([stepper.prompt, *(token[:, None] for token in generated)], dim=1)  # (B, P + t)
            logits = ban_repeated_ngrams(logits, history, no_repeat_ngram_size)
        if sample:
            probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
            next_token = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        else:
            next_token = logits.argmax(-1)  # (B,)
        next_token = next_token.masked_fill(finished, cfg.pad_id)
        generated.append(next_token)
        finished |= ends_text(next_token, cfg)
        if finished.all() or len(generated) == max_new_tokens:
            break
        logits = stepper.step(next_token[:, None])
    return torch.stack(generated, dim=1)  # (B, L)


def length_penalty_factor(length: Tensor, alpha: float) -> Tensor:
    """GNMT's length penalty lp(L) = ((5 + L) / 6)^alpha; scores are divided by it (alpha 0 = none)."""
    return ((5.0 + length.float()) / 6.0) ** alpha


def _all_items_decided(scores, lengths, finished, batch, k, alpha, max_length) -> bool:
    """True when no live beam can still beat the best finished one, in every item.

    A live beam's summed log-probability s (<= 0) only falls as it grows, and lp() grows with length,
    so the best normalised score it can still reach is s / lp(max_length)."""
    neg_inf = torch.tensor(float("-inf"), device=scores.device)
    best_finished = torch.where(finished, scores / length_penalty_factor(lengths, alpha), neg_inf)
    live_bound = torch.where(~finished, scores / length_penalty_factor(torch.tensor(max_length), alpha), neg_inf)
    return bool((best_finished.view(batch, k).max(-1).values >= live_bound.view(batch, k).max(-1).values).all())


def _beam_search(stepper, batch: int, beam_size: int, max_new_tokens: int, alpha: float) -> Tensor:
    k, cfg = beam_size, stepper.model.cfg
    logits = stepper.step(stepper.prompt)  # (B*K, V): the K copies are identical so far
    device, vocab = logits.device, logits.size(-1)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # start from one live beam per item, or the K copies would all be picked
    scores = scores.view(-1)  # (B*K,) summed log-probabilities
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * k, dtype=torch.long, device=device)
    tokens = torch.empty(batch * k, 0, dtype=torch.long, device=device)
    offsets = (torch.arange(batch, device=device) * k)[:, None]  # (B, 1) first row of each item

    for step in range(max_new_tokens):
        log_probs = _forbid_special_tokens(logits.float(), cfg).log_softmax(-1)  # (B*K, V)
        # A finished beam may only be extended by PAD, at no cost, so its score stays fixed.
        pad_only = torch.full_like(log_probs, float("-inf"))
        pad_only[:, cfg.pad_id] = 0.0
        log_probs = torch.where(finished[:, None], pad_only, log_probs)
        candidate_scores = scores[:, None] + log_probs  # (B*K, V)
        candidate_lengths = (lengths + (~finished).long())[:, None].expand(-1, vocab)
        # Rank by length-normalised score so finished short beams and live long ones compete fairly.
        ranking = candidate_scores / length_penalty_factor(candidate_lengths, alpha)
        _, best = ranking.view(batch, k * vocab).topk(k, dim=-1)  # (B, K) indices into K*V
        rows = (offsets + best // vocab).view(-1)  # (B*K,) which beam each survivor extends
        next_token = (best % vocab).view(-1)  # (B*K,)

        scores = candidate_scores.view(batch, k * vocab).gather(1, best).view(-1)
        lengths = candidate_lengths.reshape(batch, k * vocab).gather(1, best).view(-1)
        tokens = torch.cat([tokens[rows], next_token[:, None]], dim=1)
        finished = finished[rows] | ends_text(next_token, cfg)
        if _all_items_decided(scores, lengths, finished, batch, k, alpha, max_new_tokens) or step == max_new_tokens - 1:
            break
        stepper.reorder(rows)
        logits = stepper.step(next_token[:, None])

    final = (scores / length_penalty_factor(lengths, alpha)).view(batch, k)
    best_beam = final.argmax(-1)  # (B,)
    return tokens.view(batch, k, -1)[torch.arange(batch, device=device), best_beam]  # (B, L)


@dataclass(frozen=True)
class DecodeSettings:
    """generate()'s settings, of which each strategy reads its own (Strategy.settings)."""

    beam_size: int
    length_penalty: float
    temperature: float
    top_k: int
    top_p: float
    generator: torch.Generator | None
    no_repeat_ngram_size: int


def _decode_greedy(model, src, prompt, max_new_tokens: int, settings: DecodeSettings) -> Tensor:
    stepper = _stepper(model, src, prompt, repeats=1)
    if settings.no_repeat_ngram_size == 0:  # the cheaper loop, which drops finished rows, has no n-gram ban
        return _greedy(stepper, model, max_new_tokens)
    return _greedy_or_sample(
        stepper, max_new_tokens, False, settings.temperature, settings.top_k, settings.top_p, settings.generator,
        settings.no_repeat_ngram_size,
    )  # fmt: skip


def _decode_sample(model, src, prompt, max_new_tokens: int, settings: DecodeSettings) -> Tensor:
    if settings.temperature <= 0:
        raise ConfigError(f"decode.temperature={settings.temperature} must be > 0 (use strategy=greedy for argmax)")
    stepper = _stepper(model, src, prompt, repeats=1)
    return _greedy_or_sample(
        stepper, max_new_tokens, True, settings.temperature, settings.top_k, settings.top_p, settings.generator,
        settings.no_repeat_ngram_size,
    )  # fmt: skip


def _decode_beam(model, src, prompt, max_new_tokens: int, settings: DecodeSettings) -> Tensor:
    batch = src.size(0) if src is not None else (prompt.size(0) if prompt is not None else 1)
    stepper = _stepper(model, src, prompt, repeats=settings.beam_size)
    return _beam_search(stepper, batch, settings.beam_size, max_new_tokens, settings.length_penalty)


@dataclass(frozen=True)
class Strategy:
    """One `decode.strategy`: how it decodes, and which settings are its own."""

    decode: Callable[..., Tensor]  # (model, src, prompt, max_new_tokens, DecodeSettings) -> tokens (B, L)
    # The decode.* settings only this strategy reads (src.cli warns of one given beside another strategy)
    settings: tuple[str, ...]
    # Whether it can ban repeated n-grams (no_repeat_ngram_size): beam search ranks whole hypotheses and does not
    bans_ngrams: bool


# `decode.strategy`: name -> the strategy.
STRATEGIES: dict[str, Strategy] = {
    "greedy": Strategy(_decode_greedy, (), bans_ngrams=True),
    "beam": Strategy(_decode_beam, ("beam_size", "length_penalty"), bans_ngrams=False),
    "sample": Strategy(_decode_sample, ("temperature", "top_k", "top_p"), bans_ngrams=True),
}


def ngram_banning_strategies() -> list[str]:
    """The strategies that take no_repeat_ngram_size."""
    return [name for name, strategy in STRATEGIES.items() if strategy.bans_ngrams]


@torch.no_grad()
def generate(
    model,
    src: Tensor | None = None,
    prompt: Tensor | None = None,
    max_new_tokens: int = 50,
    strategy: str = "greedy",
    beam_size: int = 4,
    length_penalty: float = 0.6,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    no_repeat_ngram_size: int = 0,
) -> Tensor:
    """Generate tokens (B, L), without BOS, ending at EOS (kept) and PAD after it.

    Encoder-decoder models decode from `src` (B, S); decoder-only models continue `prompt` (B, P)
    (default: a single BOS). Each refuses the other's argument (ValueError). strategy: a key of STRATEGIES, "greedy",
    "beam" (beam_size, length_penalty alpha) or "sample" (temperature, top_k, top_p). no_repeat_ngram_size n > 0:
    greedy and sampling never repeat an n-gram of the prompt and output (ban_repeated_ngrams).
    """
    if max_new_tokens < 1 or beam_size < 1 or top_k < 0 or not 0.0 < top_p <= 1.0:
        raise ConfigError(
            f"decode settings out of range (max_new_tokens={max_new_tokens}, beam_size={beam_size}, "
            f"top_k={top_k}, top_p={top_p}): need max_new_tokens >= 1, beam_size >= 1, top_k >= 0, 0 < top_p <= 1"
        )
    was_training = model.training
    model.eval()
    try:
        prompt_len = prompt.size(1) if prompt is not None else 1
        # the last generated token is never fed back, so the sequence may reach max_len + 1 tokens
        max_new_tokens = max(1, min(max_new_tokens, model.cfg.max_len - prompt_len + 1))
        chosen = STRATEGIES.get(strategy)
        if no_repeat_ngram_size < 0 or (no_repeat_ngram_size > 0 and chosen is not None and not chosen.bans_ngrams):
            raise ConfigError(
                f"decode.no_repeat_ngram_size={no_repeat_ngram_size}: a size >= 0 (0 = off), with "
                f"{' or '.join(ngram_banning_strategies())}"
            )
        if chosen is None:
            *names, last = STRATEGIES
            raise ConfigError(f"decode.strategy={strategy!r} is not known: choose {', '.join(names)} or {last}")
        settings = DecodeSettings(beam_size, length_penalty, temperature, top_k, top_p, generator, no_repeat_ngram_size)
        return chosen.decode(model, src, prompt, max_new_tokens, settings)
    finally:
        model.train(was_training)
