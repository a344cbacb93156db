"""T5 in our EncoderDecoder equals transformers' T5ForConditionalGeneration, in both of its styles (tiny random
models, conftest.tiny_t5): the original T5 (ReLU, the output tied to the embedding and scaled by d_model^-0.5) and
T5 v1.1 / Flan-T5 (gated GELU, an lm_head of its own, heads that do not tile d_model). Logits with and without
padding, the attention weights of all three sites per layer and head, greedy generation token for token, and
cached decoding equal to full recomputation."""

from __future__ import annotations

import math

import pytest
import torch

from src.model import ConfigError, generate
from src.model.feedforward import build_feedforward
from src.model.summary import count_parameters, ffn_weight_entries
from src.pretrained import load_pretrained, pretrained_config

from .conftest import T5_EOS, T5_PAD, VOCAB, tiny_t5, transformers

# Logits: absolute in float64; in float32 relative to the largest logit, as float32's rounding grows with the size
# of the numbers and these random models (weights twice T5's initial ones) amplify it layer by layer.
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}
ATTENTION_TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}


def inputs():
    """Right-padded sources ending in </s> and decoder inputs starting from the pad token, as T5 reads them."""
    g = torch.Generator().manual_seed(3)
    src = torch.randint(2, VOCAB, (3, 14), generator=g)
    src_lengths = [14, 6, 2]  # 14: distances past the flan model's max distance (12), into its last bucket
    for row, length in enumerate(src_lengths):
        src[row, length - 1] = T5_EOS
        src[row, length:] = T5_PAD
    tgt = torch.randint(2, VOCAB, (3, 9), generator=g)
    tgt[:, 0] = T5_PAD  # the decoder starts from the pad token
    tgt_lengths = [9, 4, 1]
    for row, length in enumerate(tgt_lengths):
        tgt[row, length:] = T5_PAD
    return src, src_lengths, tgt, tgt_lengths


def float64_rms_norm(monkeypatch):
    """transformers computes T5LayerNorm's mean square in float32 whatever the model's dtype (for half precision's
    sake), so its float64 T5 is only float32-accurate there: the float64 reference is its T5 with that one cast
    removed."""
    from transformers.models.t5 import modeling_t5

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    monkeypatch.setattr(modeling_t5.T5LayerNorm, "forward", forward)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logits_and_attention_equal_huggingface_with_and_without_padding(t5_style, dtype, monkeypatch):
    """Ours on the padded batch against transformers on the padded batch (logits and every attention map) and on
    each row alone, unpadded (logits)."""
    style, directory = t5_style
    if dtype == torch.float64:
        float64_rms_norm(monkeypatch)
    hf = tiny_t5(style).to(dtype)
    ours = load_pretrained(str(directory), dtype=dtype).model
    src, src_lengths, tgt, tgt_lengths = inputs()
    with torch.no_grad():
        theirs = hf(input_ids=src, attention_mask=(src != T5_PAD).long(), decoder_input_ids=tgt, output_attentions=True)
        mine = ours(src, tgt, need_weights=True)
    sites = {"encoder_self": theirs.encoder_attentions, "decoder_self": theirs.decoder_attentions}
    sites["cross"] = theirs.cross_attentions
    for row, (s, t) in enumerate(zip(src_lengths, tgt_lengths)):
        with torch.no_grad():
            alone = hf(input_ids=src[row : row + 1, :s], decoder_input_ids=tgt[row : row + 1, :t]).logits[0]
        for reference in (theirs.logits[row, :t], alone):
            diff = (mine.logits[row, :t] - reference).abs().max().item()
            scale = 1.0 if dtype == torch.float64 else reference.abs().max().item()
            assert diff <= TOLERANCE[dtype] * scale, (style, row, diff)
        queries = {"encoder_self": s, "decoder_self": t, "cross": t}
        for site, layers in sites.items():
            assert len(mine.attentions[site]) == len(layers)
            for layer, weights in enumerate(mine.attentions[site]):  # (B, H, Tq, Tk): per head
                q = queries[site]
                expected = layers[layer][row, :, :q]
                atol = ATTENTION_TOLERANCE[dtype]
                torch.testing.assert_close(weights[row, :, :q], expected, atol=atol, rtol=0, msg=f"{site} {layer}")


def test_greedy_generation_is_huggingfaces_token_for_token(t5_style):
    style, directory = t5_style
    hf = tiny_t5(style).double()
    ours = load_pretrained(str(directory), dtype=torch.float64).model
    src = inputs()[0]
    # Ours never outputs the pad token (it is also the decoder's start): tell transformers the same. Without its
    # cache: transformers 5's generate sizes T5's cache by the encoder's depth, short of the flan model's decoder.
    settings = dict(max_new_tokens=20, num_beams=1, do_sample=False, bad_words_ids=[[T5_PAD]], use_cache=style == "t5")
    expected = hf.generate(input_ids=src, attention_mask=(src != T5_PAD).long(), **settings)
    expected = expected[:, 1:]  # without the start token
    mine = generate(ours, src=src, max_new_tokens=20, strategy="greedy")
    for row in range(src.size(0)):
        assert mine[row].tolist() == expected[row, : mine.size(1)].tolist(), (style, row)
        assert (expected[row, mine.size(1) :] == T5_PAD).all()


def test_cached_decoding_equals_full_recomputation(t5_style):
    """Step by step through the key/value cache (the decoder's relative bias read at each new query's position)
    against one forward pass over the whole decoder input: 20 steps, past the far buckets' distances."""
    style, directory = t5_style
    ours = load_pretrained(str(directory), dtype=torch.float64).model
    src = inputs()[0]
    tgt = torch.randint(2, VOCAB, (src.size(0), 20), generator=torch.Generator().manual_seed(5))
    tgt[:, 0] = T5_PAD
    with torch.no_grad():
        full = ours(src, tgt).logits  # (B, T, V)
        memory, _ = ours.encode(src)
        cache = ours.decoder.new_cache()
        for t in range(tgt.size(1)):
            step, _, _ = ours.decode(tgt[:, t : t + 1], memory, src, cache, start=t)
            torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-10, rtol=0, msg=f"{style} step {t}")


def test_the_config_says_what_t5_is(t5_style):
    style, directory = t5_style
    hf = tiny_t5(style)
    pretrained = load_pretrained(str(directory))
    cfg = pretrained.config
    assert (cfg.arch, cfg.norm_position, cfg.norm_type, cfg.has_final_norm, cfg.norm_eps) == (
        "encoder_decoder", "pre", "rmsnorm", True, 1e-6,
    )  # fmt: skip
    assert (cfg.pos_encoding, cfg.attention_bias, cfg.ffn_bias, cfg.scale_embeddings, cfg.output_bias) == (
        "t5_relative", "none", False, False, False,
    )  # fmt: skip
    assert (cfg.pad_id, cfg.bos_id, cfg.eos_id, cfg.share_src_tgt_embeddings) == (T5_PAD, T5_PAD, T5_EOS, True)
    assert (cfg.dropout, cfg.attention_dropout, cfg.ffn_dropout) == (0.1, 0.1, 0.1)
    expected = {
        "t5": ("relu", True, 8, 4, 32, 32, 128, 2),
        "flan": ("geglu_tanh", False, 6, 4, 24, 10, 12, 3),
    }[style]
    assert (
        cfg.activation, cfg.tie_embeddings, cfg.heads, cfg.head_size, cfg.q_dim, cfg.relative_buckets,
        cfg.relative_max_distance, cfg.dec_layers,
    ) == expected  # fmt: skip
    # Every parameter of T5 is one of ours and no more: the original's output is its embedding (tied, the scale in
    # the final norm), Flan-T5's lm_head its own.
    assert count_parameters(pretrained.model) == sum(p.numel() for p in hf.parameters())
    assert ffn_weight_entries(cfg) == (2 if style == "t5" else 3) * cfg.d_model * cfg.d_ff  # the FLOP count's
    model = pretrained.model
    assert (model.out_proj.weight is model.src_embed.token.weight) == (style == "t5")


def test_geglu_tanh_is_the_tanh_gelu_of_the_gate_times_the_value():
    """Our `geglu_tanh` (Shazeer 2020's GeGLU with GPT-2's tanh GELU: T5 v1.1's gated-gelu), written out: the fused
    gate_value holds the gate's rows, then the value's."""
    torch.manual_seed(0)
    ffn = build_feedforward("geglu_tanh", 8, 16, 0.0, bias=False).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64) * 3
    gate_weight, value_weight = ffn.gate_value.weight.chunk(2, dim=0)
    gate, value = x @ gate_weight.T, x @ value_weight.T
    gelu_tanh = 0.5 * gate * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (gate + 0.044715 * gate**3)))
    torch.testing.assert_close(ffn(x), (gelu_tanh * value) @ ffn.linear2.weight.T, atol=1e-12, rtol=0)
    assert sum(p.numel() for p in ffn.parameters()) == 3 * 8 * 16  # SwiGLU's three matrices, no biases


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"feed_forward_proj": "gated-silu"}, "T5 with feed_forward_proj='gated-silu' is not supported"),
        ({"is_encoder_decoder": False}, r"T5 with is_encoder_decoder=false \(T5EncoderModel\) is not supported"),
        ({"architectures": ["T5ForSequenceClassification"]}, "T5 as T5ForSequenceClassification is not supported"),
    ],
)
def test_unsupported_variants_are_refused_by_name(overrides, message, tmp_path):
    settings = dict(d_model=32, d_kv=4, num_heads=8, d_ff=48, num_layers=1, vocab_size=VOCAB)
    transformers.T5Config(**settings, **overrides).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=message):
        pretrained_config(str(tmp_path))


def test_a_scaled_t5_whose_lm_head_is_not_its_embedding_is_refused(tmp_path):
    """The original T5's output matrix is its embedding: a checkpoint that says so but holds another is refused, not
    read with one of the two silently dropped."""
    hf = tiny_t5("t5")
    hf.lm_head.weight = torch.nn.Parameter(hf.shared.weight.detach() + 1.0)
    hf.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="'lm_head.weight' differs from the weight it is tied to"):
        load_pretrained(str(tmp_path))


def test_a_config_without_a_decoder_start_token_starts_from_the_pad_token(tmp_path):
    """transformers 5 keeps decoder_start_token_id only where config.json gives it; T5's is its pad token."""
    transformers.T5Config(d_model=32, d_kv=4, num_heads=8, d_ff=48, num_layers=1, vocab_size=VOCAB).save_pretrained(
        tmp_path
    )
    cfg, _, _ = pretrained_config(str(tmp_path))
    assert (cfg.bos_id, cfg.pad_id, cfg.eos_id) == (T5_PAD, T5_PAD, T5_EOS)
