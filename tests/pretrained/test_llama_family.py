"""Llama, Qwen2 and Mistral in our DecoderOnly equal transformers' own models (random weights of tiny models that
use each family's features: grouped-query attention, the llama3 RoPE scaling, Qwen2's biases, Mistral's sliding
window): logits in float64 with and without padding, attention weights per layer and head, greedy generation token
for token, and cached decoding with grouped KV heads equal to full recomputation."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from src.model import ConfigError, generate
from src.pretrained import load_pretrained, pretrained_config
from src.pretrained.llama import rope_settings
from tests.conftest import ROOT

from .conftest import PAD, VOCAB, save, tiny_decoder, transformers

TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}


def inputs(length: int = 12):
    """Right-padded rows (the pad is the eos token, as these families have no pad token of their own)."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(2, VOCAB - 1, (3, length), generator=g)
    lengths = [length, 9, 5]
    attention_mask = torch.zeros_like(tokens)
    for row, real in enumerate(lengths):
        attention_mask[row, :real] = 1
        tokens[row, real:] = PAD
    return tokens, attention_mask, lengths


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logits_and_attention_equal_huggingface_with_and_without_padding(decoder_family, dtype):
    """Ours on right-padded rows against transformers on each row alone, unpadded (its eager sliding-window path
    gives NaN on padded rows: the row alone is the reference that holds for every family)."""
    family, directory = decoder_family
    hf = tiny_decoder(family).to(dtype)
    ours = load_pretrained(str(directory), dtype=dtype).model
    tokens, _, lengths = inputs()
    with torch.no_grad():
        mine = ours(tokens, need_weights=True)
        for row, length in enumerate(lengths):  # padded positions are never read
            theirs = hf(tokens[row : row + 1, :length], output_attentions=True)
            diff = (mine.logits[row, :length] - theirs.logits[0]).abs().max().item()
            assert diff <= TOLERANCE[dtype], (family, row, diff)
            for layer, weights in enumerate(mine.attentions["decoder_self"]):  # (B, H, T, T): per query head
                real = weights[row, :, :length, :length]
                torch.testing.assert_close(real, theirs.attentions[layer][0], atol=1e-6, rtol=0)


# Weights ten times transformers' initial spread (initializer_range 0.02): with the default, tiny_decoder's greedy
# continuations repeat one token (Llama's 90 twenty times, Qwen2's 33 then 32), which a wrong model could also give
VARIED = dict(initializer_range=0.2)


def test_greedy_generation_is_huggingfaces_token_for_token(decoder_family, tmp_path):
    """20 greedy tokens from two prompts are generate()'s, token for token; each continuation holds at least 5
    distinct tokens, so that the comparison reads the model at every step rather than one token it settled on."""
    family, _ = decoder_family
    hf = tiny_decoder(family, **VARIED).double()
    ours = load_pretrained(str(save(hf, tmp_path)), dtype=torch.float64).model
    prompt = torch.tensor([[5, 17, 42, 8, 61, 23, 70, 12], [60, 3, 3, 91, 44, 29, 88, 2]])
    settings = dict(max_new_tokens=20, do_sample=False, pad_token_id=PAD, attention_mask=torch.ones_like(prompt))
    expected = hf.generate(prompt, **settings)[:, prompt.size(1) :]
    mine = generate(ours, prompt=prompt, max_new_tokens=20, strategy="greedy")
    for row in range(2):  # a row that reaches the eos token stops there and is padded with it
        assert mine[row].tolist() == expected[row, : mine.size(1)].tolist(), family
        continuation = mine[row].tolist()
        continuation = continuation[: continuation.index(PAD) + 1] if PAD in continuation else continuation
        # Mistral's first row reaches the eos at its 18th token; every row has 7 distinct tokens or more
        assert len(continuation) >= 15 and len(set(continuation)) >= 5, (family, row, continuation)


@pytest.mark.parametrize("pad", [None, 9], ids=["no-pad", "pad-is-a-stop-id"])
def test_generation_stops_at_any_of_the_eos_ids_a_config_lists_as_generate_does(tmp_path, pad):
    """Llama 3.1's instruct models list several eos ids (<|end_of_text|>, <|eom_id|>, <|eot_id|>): generate() stops
    at whichever comes first, and so does ours (TransformerConfig.stop_ids), where a model with one eos goes on. A
    pad token that is one of them is an output (it ends a text), not a token decoding must never pick."""
    stops = [PAD, 7, 9]
    hf = tiny_decoder("llama", eos_token_id=stops, pad_token_id=pad).double()
    with torch.no_grad():  # 9 where this random model would repeat 90: greedy decoding comes to it
        hf.lm_head.weight[9] = 2 * hf.lm_head.weight[90]
    ours = load_pretrained(str(save(hf, tmp_path)), dtype=torch.float64).model
    assert ours.cfg.eos_id == PAD and ours.cfg.stop_ids == [7, 9]
    prompt = torch.tensor([[5, 17, 42, 8]])
    expected = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=PAD)[0, prompt.size(1) :].tolist()
    assert 9 in expected and len(expected) < 20  # generate() stopped at 9
    for strategy in ("greedy", "beam"):
        mine = generate(ours, prompt=prompt, max_new_tokens=20, strategy=strategy, beam_size=1)[0].tolist()
        end = mine.index(9) + 1
        assert mine[:end] == expected[: expected.index(9) + 1] and set(mine[end:]) <= {PAD}, strategy


def test_generation_also_stops_at_the_eos_ids_only_generation_config_lists(tmp_path):
    """Qwen2.5-Instruct names <|endoftext|> in config.json and <|im_end|> too in generation_config.json, where
    transformers' generate() reads its stops: ours read both files."""
    hf = tiny_decoder("qwen2", eos_token_id=PAD).double()
    hf.generation_config.eos_token_id = [9, PAD]  # save_pretrained writes it to generation_config.json
    with torch.no_grad():  # 9 where this random model would repeat 90: greedy decoding comes to it
        hf.lm_head.weight[9] = 2 * hf.lm_head.weight[90]
    directory = save(hf, tmp_path)
    ours = load_pretrained(str(directory), dtype=torch.float64).model
    assert ours.cfg.eos_id == PAD and ours.cfg.stop_ids == [9]
    prompt = torch.tensor([[5, 17, 42, 8]])
    expected = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=PAD)[0, prompt.size(1) :].tolist()
    assert 9 in expected and len(expected) < 20
    mine = generate(ours, prompt=prompt, max_new_tokens=20, strategy="greedy")[0].tolist()
    assert mine[: mine.index(9) + 1] == expected[: expected.index(9) + 1] and set(mine[mine.index(9) + 1 :]) <= {PAD}
    (directory / "generation_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="generation_config.json is not a valid generation config"):
        load_pretrained(str(directory))


def test_cached_decoding_with_grouped_kv_heads_equals_full_recomputation(decoder_family):
    family, directory = decoder_family
    ours = load_pretrained(str(directory), dtype=torch.float64).model
    assert ours.cfg.kv_head_count == 2 and ours.cfg.heads == 4
    prompt = torch.tensor([[5, 17, 42, 8]])
    tokens = generate(ours, prompt=prompt, max_new_tokens=20, strategy="greedy")
    sequence = torch.cat([prompt, tokens], dim=1)
    with torch.no_grad():
        full = ours(sequence[:, :-1]).logits  # every position recomputed from scratch, past Mistral's window
    assert full[0, prompt.size(1) - 1 :].argmax(-1).tolist() == tokens[0].tolist()


def test_the_config_says_what_each_family_is(decoder_family):
    family, directory = decoder_family
    cfg = load_pretrained(str(directory)).config
    assert (cfg.arch, cfg.norm_type, cfg.activation, cfg.pos_encoding, cfg.kv_heads) == (
        "decoder_only", "rmsnorm", "swiglu", "rope", 2,
    )  # fmt: skip
    expected = {
        "llama": (
            500000.0,
            {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_len": 16},
            "none",
            {"type": "standard"},
            False,
        ),  # fmt: skip
        "qwen2": (1000000.0, {}, "qkv", {"type": "standard"}, True),
        "mistral": (10000.0, {}, "none", {"type": "window", "window": 5}, False),
    }[family]
    assert (cfg.rope_theta, cfg.rope_scaling, cfg.attention_bias, cfg.mask, cfg.tie_embeddings) == expected
    assert not cfg.ffn_bias and cfg.pad_id == cfg.eos_id == PAD


@pytest.mark.parametrize(
    "family, overrides, message",
    [
        ("llama", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}},
         "Llama with RoPE scaling 'yarn' is not supported"),
        ("llama", {"hidden_act": "gelu"}, "Llama with hidden_act='gelu' is not supported"),
        # transformers' own model fails on its first forward: its scaled frequencies are half a head's
        ("llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0,
                                       "partial_rotary_factor": 0.5}},
         "Llama with partial_rotary_factor=0.5 and RoPE scaling 'linear' is not supported: transformers' own Llama "
         "cannot run it"),
        ("qwen2", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 1e4, "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                   "partial_rotary_factor": 0.5},
         "Qwen2 with partial_rotary_factor=0.5 and RoPE scaling 'llama3' is not supported"),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 4}, "Qwen2 with use_sliding_window=true"),
    ],
)  # fmt: skip
def test_unsupported_variants_are_refused_by_name(family, overrides, message, tmp_path):
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[family]
    settings = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                    vocab_size=VOCAB, max_position_embeddings=64)  # fmt: skip
    config_class(**settings, **overrides).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=message):
        pretrained_config(str(tmp_path))


def test_a_refused_config_is_one_line_without_transformers_advice_before_it(tmp_path):
    """An older file's YaRN scaling whose factor disagrees with its context lengths: transformers logs its advice
    while reading the file; the command's one line is all that is said (a process of its own: transformers' log
    handler keeps the stream it found first)."""
    transformers.LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                             vocab_size=VOCAB, max_position_embeddings=64).save_pretrained(tmp_path)  # fmt: skip
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("rope_parameters", None)
    scaling = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 16}  # 64 / 16 is 4
    (tmp_path / "config.json").write_text(json.dumps({**config, "rope_theta": 5e5, "rope_scaling": scaling}))
    result = subprocess.run(
        [sys.executable, "-m", "src.predict", f"ckpt=hf:{tmp_path}", "text=hi"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: Llama with RoPE scaling 'yarn' is not supported: supported are "
                                          "default, linear, llama3"]  # fmt: skip


def test_a_config_our_model_cannot_be_built_from_is_refused_in_its_own_names(tmp_path):
    """validate()'s problem said with config.json's field names (model.kv_heads cannot be set for a pretrained
    model), and without its fix, which would set one: 3 key/value heads for 4 query heads."""
    transformers.LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                             vocab_size=VOCAB).save_pretrained(tmp_path)  # fmt: skip
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 3}))
    with pytest.raises(ConfigError) as refused:
        pretrained_config(str(tmp_path))
    assert str(refused.value) == (
        f"{tmp_path} cannot be loaded: its config.json gives a model this framework does not build "
        "(num_key_value_heads=3 does not divide num_attention_heads=4)"
    )


def test_a_head_size_apart_from_d_model_over_heads_and_every_bias_are_loaded(tmp_path):
    """Llama 3 and Gemma set head_dim apart from hidden_size / heads: 4 heads of 12 in a model of 32; a Llama variant
    may put biases on every attention projection and the MLP (attention_bias, mlp_bias)."""
    hf = tiny_decoder("llama", head_dim=12, attention_bias=True, mlp_bias=True)
    save(hf, tmp_path)
    ours = load_pretrained(str(tmp_path), dtype=torch.float64).model
    tokens = inputs()[0][:1, :9]
    with torch.no_grad():
        diff = (ours(tokens).logits - hf.double()(tokens).logits).abs().max().item()
    assert ours.cfg.head_size == 12 and ours.cfg.attention_bias == "all" and ours.cfg.ffn_bias and diff <= 1e-6


def test_fine_tuning_mistral_keeps_its_sliding_window(decoder_family, compose):
    """model.pretrained takes the family's mask (Mistral's window) unless the command line gives a mask of its own."""
    from src.cli.schema import model_config_for

    family, directory = decoder_family
    model_cfg = model_config_for(compose(f"model.pretrained={directory}"), tgt_vocab_size=VOCAB)
    assert model_cfg.mask == ({"type": "window", "window": 5} if family == "mistral" else {"type": "standard"})


def test_a_partial_rotary_factor_without_scaling_is_read_as_transformers_reads_it(tmp_path):
    """transformers' Llama ignores partial_rotary_factor unless a scaling reads it (and then cannot run: refused
    above): the whole head turns, in its model and in ours."""
    rope = {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}
    hf = tiny_decoder("llama", rope_parameters=rope)
    save(hf, tmp_path)
    ours = load_pretrained(str(tmp_path), dtype=torch.float64).model
    tokens = inputs()[0][:1, :9]
    with torch.no_grad():
        diff = (ours(tokens).logits - hf.double()(tokens).logits).abs().max().item()
    assert ours.cfg.rope_fraction == 1.0 and diff <= 1e-6


def test_a_text_that_ends_in_the_eos_they_pad_with_equals_huggingface_padded_or_not(decoder_family):
    """Without a pad token these families pad with their eos, which also ends a text: a row whose last real token
    is the eos, alone or followed by padding, gives transformers' logits for the row alone at every real position,
    the eos included."""
    family, directory = decoder_family
    hf = tiny_decoder(family).double()
    ours = load_pretrained(str(directory), dtype=torch.float64).model
    assert ours.cfg.pad_id == ours.cfg.eos_id == PAD
    tokens = torch.tensor([[5, 17, 42, 8, 61, PAD], [5, 17, 42, PAD, PAD, PAD]])
    lengths = [6, 4]
    with torch.no_grad():
        mine = ours(tokens).logits
        for row, length in enumerate(lengths):
            theirs = hf(tokens[row : row + 1, :length]).logits[0]
            diff = (mine[row, :length] - theirs).abs().max().item()
            assert diff <= TOLERANCE[torch.float64], (family, row, diff)


LLAMA31_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192}  # fmt: skip


@pytest.mark.parametrize(
    "fields, expected",
    [
        (dict(rope_theta=5e5, rope_scaling=LLAMA31_SCALING),
         (5e5, {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_len": 8192})),
        (dict(rope_theta=1e4, rope_scaling={"type": "linear", "factor": 2.0}),
         (1e4, {"type": "linear", "factor": 2.0})),
        (dict(rope_theta=1e6, rope_scaling=None), (1e6, {})),
        (dict(rope_theta=1e6), (1e6, {})),
        (dict(), (1e4, {})),  # a config with neither: RoPE's own base
    ],
    ids=["llama3.1", "linear-older-key", "unscaled", "no-rope_scaling", "neither"],
)  # fmt: skip
def test_rope_settings_of_a_transformers_4_config_are_its_rope_theta_and_rope_scaling(fields, expected):
    """transformers 4 configs (pyproject allows >= 4.45) carry rope_theta and rope_scaling and no rope_parameters:
    a Llama 3.1 config keeps its llama3 scaling, as under transformers 5."""
    assert rope_settings(SimpleNamespace(**fields), "Llama") == expected
    if fields.get("rope_scaling"):  # the same settings as transformers 5 gives them: one dict
        parameters = {"rope_theta": fields["rope_theta"], **fields["rope_scaling"]}
        assert rope_settings(SimpleNamespace(rope_parameters=parameters), "Llama") == expected


def test_a_transformers_4_yarn_config_is_refused_by_name():
    hf4 = SimpleNamespace(rope_theta=1e6, rope_scaling={"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(ConfigError, match="^Qwen2 with RoPE scaling 'yarn' is not supported"):
        rope_settings(hf4, "Qwen2")
    partial = SimpleNamespace(
        rope_theta=1e4, rope_scaling={"rope_type": "linear", "factor": 2.0}, partial_rotary_factor=0.5
    )
    with pytest.raises(ConfigError, match="^Llama with partial_rotary_factor=0.5 and RoPE scaling 'linear'"):
        rope_settings(partial, "Llama")
