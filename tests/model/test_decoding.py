import dataclasses
import itertools
import types

import pytest
import torch

from src.model import BOS_ID, EOS_ID, PAD_ID, TransformerConfig, build_model, generate
from src.model.decoding import STRATEGIES, filter_logits
from src.model.masks import MASK_SCHEMES


def model_for(arch="encoder_decoder", mask_type="standard", window=2, prefix_len=3, **overrides):
    torch.manual_seed(0)
    settings = {"window": window, "prefix_len": prefix_len}  # each scheme takes those it has
    mask = {
        "type": mask_type,
        **{f.name: settings.get(f.name, f.default) for f in dataclasses.fields(MASK_SCHEMES[mask_type])},
    }
    values = dict(
        arch=arch,
        src_vocab_size=13,
        tgt_vocab_size=11,
        d_model=16,
        heads=4,
        enc_layers=2,
        dec_layers=2,
        d_ff=32,
        dropout=0.0,
        max_len=40,
        mask=mask,
    )
    values.update(overrides)
    model = build_model(TransformerConfig(**values)).double()
    if arch != "encoder_only":  # a classifier has no output vocabulary
        with torch.no_grad():  # make EOS unlikely so sequences run long enough to exercise the cache
            model.out_proj.weight[EOS_ID] *= 0.0
    return model.eval()


def source():
    src = torch.randint(4, 13, (3, 6), generator=torch.Generator().manual_seed(1))
    src[1, 4:] = PAD_ID
    return src


def greedy_by_full_recomputation(model, src=None, prompt=None, steps=10):
    """Reference: re-run the whole prefix every step, no cache."""
    tokens = prompt if prompt is not None else torch.full((src.size(0), 1), BOS_ID)
    for _ in range(steps):
        logits = model(src, tokens).logits if src is not None else model(tokens).logits
        next_logits = logits[:, -1].clone()
        next_logits[:, [PAD_ID, BOS_ID]] = float("-inf")  # never outputs
        tokens = torch.cat([tokens, next_logits.argmax(-1, keepdim=True)], dim=1)
    return tokens[:, -steps:]


@pytest.mark.parametrize(
    "pos,mask_type", list(itertools.product(["sinusoidal", "learned", "rope", "alibi", "none"], ["standard", "window"]))
)
def test_cached_greedy_equals_full_recomputation(pos, mask_type):
    model = model_for(pos_encoding=pos, mask_type=mask_type, window=3)
    src = source()
    cached = generate(model, src=src, max_new_tokens=10, strategy="greedy")
    reference = greedy_by_full_recomputation(model, src=src, steps=10)
    assert cached.shape == (3, 10)
    assert torch.equal(cached, reference)


@pytest.mark.parametrize("pos,mask_type", [("rope", "standard"), ("alibi", "prefix"), ("learned", "window")])
def test_cached_decoder_only_equals_full_recomputation(pos, mask_type):
    model = model_for("decoder_only", pos_encoding=pos, mask_type=mask_type, window=3, prefix_len=3)
    prompt = torch.randint(4, 11, (2, 4), generator=torch.Generator().manual_seed(2))
    cached = generate(model, prompt=prompt, max_new_tokens=8)
    assert torch.equal(cached, greedy_by_full_recomputation(model, prompt=prompt, steps=8))


def test_beam_of_size_one_equals_greedy():
    model = model_for()
    src = source()
    greedy = generate(model, src=src, max_new_tokens=12, strategy="greedy")
    assert torch.equal(generate(model, src=src, max_new_tokens=12, strategy="beam", beam_size=1), greedy)


def sequence_log_prob(model, src, tokens):
    """Sum of log-probabilities of tokens (up to and including EOS) under the model, over the tokens
    decoding may output (PAD and BOS excluded, as decoding does)."""
    tgt_in = torch.cat([torch.full((tokens.size(0), 1), BOS_ID), tokens[:, :-1]], dim=1)
    logits = model(src, tgt_in).logits
    logits[..., [PAD_ID, BOS_ID]] = float("-inf")
    log_probs = logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    return (log_probs * (tokens != PAD_ID)).sum(-1)


def test_beam_search_finds_sequences_at_least_as_likely_as_greedy():
    model = model_for()
    with torch.no_grad():
        model.out_proj.weight[EOS_ID] = model.out_proj.weight[5] * 1.1  # EOS now competes: beams end
    src = source()
    greedy = generate(model, src=src, max_new_tokens=6, strategy="greedy")
    beam = generate(model, src=src, max_new_tokens=6, strategy="beam", beam_size=5, length_penalty=0.0)
    assert torch.all(sequence_log_prob(model, src, beam) >= sequence_log_prob(model, src, greedy) - 1e-9)
    assert torch.all(beam[:, 0] != PAD_ID)


def _model_with_eos_bias(eos_bias: float):
    model = model_for(tie_embeddings=False)
    torch.manual_seed(5)
    with torch.no_grad():  # an output bias that makes EOS more or less likely
        model.out_proj = torch.nn.Linear(16, 11, bias=True).double()
        model.out_proj.bias.zero_()
        model.out_proj.bias[EOS_ID] = eos_bias
    return model


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_decoding_pads_after_eos_and_stops_when_all_ended(strategy):
    src = torch.randint(4, 13, (8, 6), generator=torch.Generator().manual_seed(4))
    out = generate(
        _model_with_eos_bias(-0.5),
        src=src,
        max_new_tokens=30,
        strategy=strategy,
        generator=torch.Generator().manual_seed(0),
    )
    ended = [row for row in out.tolist() if EOS_ID in row]
    assert any(row.index(EOS_ID) > 0 for row in ended)
    for row in ended:
        assert all(t == PAD_ID for t in row[row.index(EOS_ID) + 1 :])
        assert PAD_ID not in row[: row.index(EOS_ID)]
    forced = generate(_model_with_eos_bias(100.0), src=src, max_new_tokens=30, strategy=strategy)
    assert forced.tolist() == [[EOS_ID]] * 8  # every row ended at once, so decoding stopped


def test_sampling_is_seeded_and_top_k_one_is_greedy():
    model = model_for()
    src = source()
    a = generate(model, src=src, strategy="sample", generator=torch.Generator().manual_seed(3), max_new_tokens=8)
    b = generate(model, src=src, strategy="sample", generator=torch.Generator().manual_seed(3), max_new_tokens=8)
    assert torch.equal(a, b)
    top1 = generate(model, src=src, strategy="sample", top_k=1, max_new_tokens=8)
    assert torch.equal(top1, generate(model, src=src, max_new_tokens=8))


def test_filter_logits_top_k_and_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.6)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert not torch.isinf(filter_logits(logits, top_p=1.0)).any()


def test_generation_restores_training_mode_and_rejects_bad_settings():
    model = model_for().train()
    generate(model, src=source(), max_new_tokens=2)
    assert model.training
    with pytest.raises(ValueError, match="temperature"):
        generate(model, src=source(), strategy="sample", temperature=0.0)
    with pytest.raises(ValueError, match="strategy"):
        generate(model, src=source(), strategy="nucleus")
    with pytest.raises(ValueError, match="classifier"):
        generate(build_model(TransformerConfig(arch="encoder_only", src_vocab_size=9, num_classes=2)), src=source())


def test_an_argument_the_architecture_does_not_read_is_refused_not_ignored():
    """An encoder-decoder decodes from src alone (its decoder starts from BOS); a decoder-only model continues a
    prompt. The other's argument is one line naming it, not silently dropped."""
    prompt = torch.tensor([[BOS_ID, 5, 6]])
    with pytest.raises(ValueError, match=r"^generate\(prompt=\.\.\.\) is for decoder-only models: .*drop prompt$"):
        generate(model_for(), src=source(), prompt=prompt, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"^generate\(src=\.\.\.\) is for encoder-decoder models: .*instead of src$"):
        generate(model_for("decoder_only"), src=source(), prompt=prompt, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"^generate\(src=\.\.\.\)"):
        generate(model_for("decoder_only"), src=source(), max_new_tokens=2, strategy="beam")


# --- beam search against exhaustive search, and its stopping rule ------------------------------------


def test_wide_beam_equals_exhaustive_search_with_and_without_length_penalty():
    """With a beam as wide as the search space, beam search must return the best sequence by
    length-normalised log-probability computed without any cache: wrong cache reordering, scores
    or lengths all show up here."""
    model = model_for(tgt_vocab_size=7)  # outputs: EOS and the 3 content tokens 4, 5, 6
    with torch.no_grad():
        model.out_proj.weight[EOS_ID] = model.out_proj.weight[4] * 0.9  # EOS competes
    src = source()[:2]
    steps, choices = 3, [EOS_ID, 4, 5, 6]
    from src.model.decoding import length_penalty_factor

    for alpha in (0.0, 0.6, 1.0):
        beam = generate(model, src=src, max_new_tokens=steps, strategy="beam", beam_size=16, length_penalty=alpha)
        for item in range(2):
            best, best_score = None, float("-inf")
            for seq in itertools.product(choices, repeat=steps):
                seq = list(seq)
                if EOS_ID in seq and any(t != EOS_ID for t in seq[seq.index(EOS_ID) + 1 :]):
                    continue  # only one continuation after EOS (padding) counts
                seq = seq[: seq.index(EOS_ID) + 1] if EOS_ID in seq else seq
                tokens = torch.tensor([seq + [PAD_ID] * (steps - len(seq))])
                score = sequence_log_prob(model, src[item : item + 1], tokens).item()
                score /= length_penalty_factor(torch.tensor(len(seq)), alpha).item()
                if score > best_score:
                    best, best_score = seq, score
            got = [t for t in beam[item].tolist() if t != PAD_ID]
            assert got == best, f"alpha={alpha}, item {item}"


class _ScriptedStepper:
    """A fake model: next-token probabilities depend on the history only, as scripted below."""

    A, B = 4, 5
    model = types.SimpleNamespace(cfg=TransformerConfig())  # the special ids the decoding reads: our vocabularies' own

    def __init__(self, beams: int):
        self.prompt = torch.full((beams, 1), BOS_ID)
        self.history = torch.empty(beams, 0, dtype=torch.long)

    def step(self, tokens):
        self.history = torch.cat([self.history, tokens], dim=1)
        probs = torch.full((self.history.size(0), 6), 1e-6)
        for row, hist in enumerate(self.history.tolist()):
            if hist == [BOS_ID]:
                probs[row, EOS_ID], probs[row, self.A] = 0.5, 0.5
            elif hist == [BOS_ID, self.A]:
                probs[row, self.B] = 0.99
            elif hist == [BOS_ID, self.A, self.B]:
                probs[row, EOS_ID] = 0.99
            else:
                probs[row, [EOS_ID, self.A, self.B]] = 1 / 3
        return probs.log()

    def reorder(self, index):
        self.history = self.history[index]


@pytest.mark.parametrize("alpha,expected", [(0.0, [EOS_ID]), (0.6, [4, 5, EOS_ID])])
def test_beam_search_does_not_stop_while_a_live_beam_can_still_win(alpha, expected):
    # [EOS] scores log 0.5; [A, B, EOS] scores about log 0.5 + 2 log 0.99, better after length
    # normalisation with alpha 0.6, so the search must continue after [EOS] has ended.
    from src.model.decoding import _beam_search

    out = _beam_search(_ScriptedStepper(beams=2), batch=1, beam_size=2, max_new_tokens=5, alpha=alpha)
    assert [t for t in out[0].tolist() if t != PAD_ID] == expected


# --- the cache, position by position ------------------------------------------------------------------

CAUSAL_MASKS = [name for name, scheme in MASK_SCHEMES.items() if not scheme.sees_future]  # every registered one


@pytest.mark.parametrize(
    "arch,pos,mask_type",
    [
        *[("encoder_decoder", p, m) for p in ("sinusoidal", "learned", "rope", "alibi", "none") for m in CAUSAL_MASKS],
        *[("decoder_only", p, m) for p in ("sinusoidal", "rope", "alibi") for m in CAUSAL_MASKS],
    ],
)
def test_cached_logits_equal_full_recomputation_at_every_step(arch, pos, mask_type):
    from src.model.decoding import _stepper

    model = model_for(arch, pos_encoding=pos, mask_type=mask_type, window=2, prefix_len=3)
    src = source()
    tokens = torch.randint(4, 11, (3, 9), generator=torch.Generator().manual_seed(7))
    tokens[:, 0] = BOS_ID
    prompt_len = 3 if arch == "decoder_only" else 1
    stepper = _stepper(
        model,
        src if arch == "encoder_decoder" else None,
        tokens[:, :prompt_len] if arch == "decoder_only" else None,
        repeats=1,
    )
    full = model(src, tokens).logits if arch == "encoder_decoder" else model(tokens).logits  # (B, T, V)
    cached = [stepper.step(stepper.prompt)]
    for t in range(prompt_len, tokens.size(1)):
        cached.append(stepper.step(tokens[:, t : t + 1]))
    torch.testing.assert_close(torch.stack(cached, 1), full[:, prompt_len - 1 :], atol=1e-10, rtol=0)


def test_prefix_lm_refuses_prompts_shorter_than_the_prefix_and_padded_prompts():
    model = model_for("decoder_only", mask_type="prefix", prefix_len=4)
    with pytest.raises(ValueError, match="shorter than the 4 tokens mask=prefix needs"):
        generate(model, prompt=torch.tensor([[BOS_ID, 5]]))
    with pytest.raises(ValueError, match="PAD"):
        generate(model_for("decoder_only"), prompt=torch.tensor([[BOS_ID, 5, PAD_ID]]))


def test_temperature_shapes_the_samples():
    model = model_for()
    src = source()
    greedy = generate(model, src=src, max_new_tokens=8)
    cold = generate(
        model,
        src=src,
        strategy="sample",
        temperature=1e-4,
        max_new_tokens=8,
        generator=torch.Generator().manual_seed(0),
    )
    hot = generate(
        model,
        src=src,
        strategy="sample",
        temperature=50.0,
        max_new_tokens=8,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(cold, greedy)
    assert not torch.equal(hot, greedy)


def test_decode_settings_out_of_range_are_rejected():
    model = model_for()
    for bad in (dict(max_new_tokens=0), dict(strategy="beam", beam_size=0), dict(strategy="sample", top_p=0.0)):
        with pytest.raises(ValueError, match="out of range"):
            generate(model, src=source(), **bad)


def test_length_cap_uses_the_whole_positional_table():
    model = model_for("decoder_only", max_len=8)
    prompt = torch.randint(4, 11, (1, 4))
    assert generate(model, prompt=prompt, max_new_tokens=100).size(1) == 5  # positions 4..7 fed, 5th never fed


def test_greedy_rows_that_end_early_leave_the_batch_and_each_row_decodes_as_if_alone():
    """Greedy decoding drops rows once they end (with their caches and per-row head gates): every row's output is
    still that of decoding it alone, and the model's gates are put back afterwards."""
    from src.model.head_mask import attention_sites

    torch.manual_seed(3)
    model = (
        build_model(
            TransformerConfig(
                arch="encoder_decoder",
                src_vocab_size=13,
                tgt_vocab_size=11,
                d_model=16,
                heads=4,
                enc_layers=2,
                dec_layers=2,
                d_ff=32,
                dropout=0.0,
                max_len=40,
            )
        )
        .double()
        .eval()
    )
    with torch.no_grad():  # EOS wins where token 8 would: neither at once nor never, rows end at different steps
        model.out_proj.weight[EOS_ID] = 1.1 * model.out_proj.weight[8]
    src = torch.randint(4, 13, (12, 6), generator=torch.Generator().manual_seed(5))
    src[3, 2:] = PAD_ID
    gates = torch.ones(12, 4, dtype=torch.float64)  # a mask per row: head i % 4 off in two rows of three
    for i in range(12):
        gates[i, i % 4] = 0.0 if i % 3 else 1.0
    cross = attention_sites(model)["cross"][0]
    cross.head_gate = gates
    together = generate(model, src=src, max_new_tokens=20)
    assert cross.head_gate is gates, "the per-row gates were not put back"
    ends = [(row == EOS_ID).nonzero()[0, 0].item() if (row == EOS_ID).any() else None for row in together]
    assert len(set(ends)) > 2, f"the rows should end at different steps: {ends}"
    for i in range(12):
        cross.head_gate = gates[i]
        alone = generate(model, src=src[i : i + 1], max_new_tokens=20)[0]
        assert torch.equal(together[i, : alone.size(0)], alone), i
        assert (together[i, alone.size(0) :] == PAD_ID).all()
    cross.head_gate = None


def test_ban_repeated_ngrams_forbids_exactly_the_tokens_that_would_repeat_an_ngram():
    from src.model.decoding import ban_repeated_ngrams

    history = torch.tensor([[4, 5, 6, 4, 5], [7, 8, 9, 10, 11]])
    banned = ban_repeated_ngrams(torch.zeros(2, 12), history, 3)
    assert torch.isinf(banned[0]).nonzero().flatten().tolist() == [6]  # (4, 5) was followed by 6
    assert not torch.isinf(banned[1]).any()
    assert torch.isinf(ban_repeated_ngrams(torch.zeros(2, 12), history, 1)[0]).nonzero().flatten().tolist() == [4, 5, 6]
    assert torch.equal(ban_repeated_ngrams(torch.zeros(2, 12), history, 0), torch.zeros(2, 12))
