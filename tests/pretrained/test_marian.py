"""Marian MT in our EncoderDecoder equals transformers' MarianMTModel: logits, the attention weights of all three
sites, and greedy translation."""

import pytest
import torch

from src.model import generate
from src.pretrained import load_pretrained

from .conftest import PAD, VOCAB, tiny_marian

TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}


def inputs():
    g = torch.Generator().manual_seed(3)
    src = torch.randint(1, VOCAB - 1, (3, 9), generator=g)
    src_lengths = [9, 6, 2]
    src_mask = torch.zeros_like(src)
    for row, length in enumerate(src_lengths):
        src[row, length - 1] = 0  # </s> ends every source
        src[row, length:] = PAD
        src_mask[row, :length] = 1
    tgt = torch.randint(1, VOCAB - 1, (3, 7), generator=g)
    tgt[:, 0] = PAD  # the decoder starts from the pad token
    tgt_lengths = [7, 4, 1]
    for row, length in enumerate(tgt_lengths):
        tgt[row, length:] = PAD
    return src, src_mask, src_lengths, tgt, tgt_lengths


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logits_and_attention_equal_huggingface_with_and_without_padding(marian_dir, dtype):
    hf = tiny_marian().to(dtype)
    ours = load_pretrained(str(marian_dir), dtype=dtype).model
    src, src_mask, src_lengths, tgt, tgt_lengths = inputs()
    with torch.no_grad():
        theirs = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, output_attentions=True)
        mine = ours(src, tgt, need_weights=True)
        unpadded = hf(input_ids=src[:1], decoder_input_ids=tgt[:1])
    assert (mine.logits[0] - unpadded.logits[0]).abs().max().item() <= TOLERANCE[dtype]
    sites = {"encoder_self": theirs.encoder_attentions, "decoder_self": theirs.decoder_attentions}
    sites["cross"] = theirs.cross_attentions
    for row, (s, t) in enumerate(zip(src_lengths, tgt_lengths)):
        diff = (mine.logits[row, :t] - theirs.logits[row, :t]).abs().max().item()
        assert diff <= TOLERANCE[dtype], (row, diff)
        queries = {"encoder_self": s, "decoder_self": t, "cross": t}
        for site, layers in sites.items():
            for layer, weights in enumerate(mine.attentions[site]):
                q = queries[site]
                expected = layers[layer][row, :, :q]
                torch.testing.assert_close(weights[row, :, :q], expected, atol=1e-6, rtol=0, msg=f"{site} {layer}")


def test_greedy_translation_is_huggingfaces_token_for_token(marian_dir):
    hf = tiny_marian().double()
    ours = load_pretrained(str(marian_dir), dtype=torch.float64).model
    src, src_mask, _, _, _ = inputs()
    # bad_words_ids: what the OPUS-MT models' generation config says (the pad token is never an output)
    expected = hf.generate(
        input_ids=src, attention_mask=src_mask, max_new_tokens=20, num_beams=1, do_sample=False, bad_words_ids=[[PAD]]
    )[:, 1:]  # without the start token
    mine = generate(ours, src=src, max_new_tokens=20, strategy="greedy")
    for row in range(src.size(0)):
        assert mine[row].tolist() == expected[row, : mine.size(1)].tolist()
        assert (expected[row, mine.size(1) :] == PAD).all()


def test_cached_decoding_equals_full_recomputation(marian_dir):
    ours = load_pretrained(str(marian_dir), dtype=torch.float64).model
    src = inputs()[0][:1]
    tokens = generate(ours, src=src, max_new_tokens=20, strategy="greedy")
    decoder_input = torch.cat([torch.tensor([[PAD]]), tokens[:, :-1]], dim=1)
    with torch.no_grad():
        full = ours(src, decoder_input).logits
    full[..., PAD] = float("-inf")  # greedy decoding never picks the pad token
    assert full[0].argmax(-1).tolist() == tokens[0].tolist()


def test_the_config_says_what_marian_is(marian_dir):
    cfg = load_pretrained(str(marian_dir)).config
    assert (cfg.arch, cfg.norm_position, cfg.has_final_norm, cfg.activation) == (
        "encoder_decoder",
        "post",
        False,
        "silu",
    )
    assert (cfg.pos_encoding, cfg.scale_embeddings, cfg.output_bias) == ("sinusoidal_halves", True, True)
    assert (cfg.pad_id, cfg.bos_id, cfg.eos_id, cfg.share_src_tgt_embeddings) == (PAD, PAD, 0, True)
