"""T5's relative position buckets as a positional scheme (`model.pos_encoding=t5_relative`, src/model/positional.py):
the buckets and the bias are transformers' own (T5Attention), the encoder's table tells earlier keys from later
ones and a decoder's sees only earlier ones, each stack has its own table, and cross-attention gets none. (The
registry-wide tests of tests/model/test_transformer.py cover it too: the two attention paths agree, cached decoding
equals full recomputation.)"""

from __future__ import annotations

import pytest
import torch

from src.model import ConfigError, TransformerConfig, build_model
from src.model.positional import RelativePositionBias, relative_position_bucket

transformers = pytest.importorskip("transformers")
from transformers.models.t5.modeling_t5 import T5Attention  # noqa: E402


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("buckets, max_distance", [(32, 128), (8, 20), (10, 20), (9, 30)])
def test_the_buckets_are_t5s(bidirectional, buckets, max_distance):
    relative = torch.arange(-300, 301)
    expected = T5Attention._relative_position_bucket(relative, bidirectional, buckets, max_distance)
    assert torch.equal(relative_position_bucket(relative, bidirectional, buckets, max_distance), expected)
    # every bucket is reached, but for a later key at distance 0 (none is), when bidirectional, and an odd count's
    # last, which T5's halving leaves out
    assert expected.unique().numel() == (buckets // 2 * 2 - 1 if bidirectional else buckets)


@pytest.mark.parametrize("is_decoder", [False, True])
def test_the_bias_is_t5s_compute_bias_with_the_same_table(is_decoder):
    config = transformers.T5Config(d_model=16, d_kv=4, num_heads=4, relative_attention_num_buckets=8,
                                   relative_attention_max_distance=20, is_decoder=is_decoder)  # fmt: skip
    theirs = T5Attention(config, has_relative_attention_bias=True)
    ours = RelativePositionBias(4, 8, 20, bidirectional=not is_decoder)
    ours.embedding.weight.data.copy_(theirs.relative_attention_bias.weight.data)
    torch.testing.assert_close(ours.attention_bias(7, 9), theirs.compute_bias(7, 9)[0], rtol=0, atol=0)
    # cached decoding: one query at position 8 of 9 keys
    torch.testing.assert_close(
        ours.attention_bias(1, 9, q_start=8), theirs.compute_bias(1, 9, past_seen_tokens=8)[0], rtol=0, atol=0
    )


def test_each_stack_has_its_own_table_and_cross_attention_gets_no_bias():
    cfg = TransformerConfig(arch="encoder_decoder", d_model=16, heads=4, enc_layers=2, dec_layers=2, d_ff=32,
                            src_vocab_size=13, tgt_vocab_size=13, pos_encoding="t5_relative")  # fmt: skip
    model = build_model(cfg)
    encoder, decoder = model.positional.for_stack("encoder"), model.positional.for_stack("decoder")
    assert encoder.bidirectional and not decoder.bidirectional and encoder.embedding is not decoder.embedding
    cross = model.decoder.layers[0].cross_attn
    assert cross.bias(decoder, 3, 5) is None  # the attention asks for a bias only in self-attention
    assert model.decoder.layers[0].self_attn.bias(decoder, 3, 3).shape == (4, 3, 3)
    only = build_model(TransformerConfig(arch="decoder_only", d_model=16, heads=4, dec_layers=1, d_ff=32,
                                         tgt_vocab_size=13, pos_encoding="t5_relative"))  # fmt: skip
    assert [name for name, _ in only.named_parameters() if "positional" in name] == [
        "positional.stacks.decoder.embedding.weight"  # no table for a stack the model has not
    ]


@pytest.mark.parametrize(
    "settings, message",
    [({"relative_buckets": 1}, "model.relative_buckets=1 leaves the decoder no exact distance: give "
                               "model.relative_buckets=2 or more"),
     ({"relative_max_distance": 8}, "model.relative_max_distance=8 must exceed"),
     # a decoder's buckets are one-way: 16 exact distances of 32 buckets, not the encoder's 8
     ({"relative_max_distance": 12}, "model.relative_max_distance=12 must exceed the exact distances of a decoder's "
                                     "one-way buckets, relative_buckets//2 = 16: set model.relative_max_distance=17"),
     ({"relative_buckets": 8, "relative_max_distance": 3}, "model.relative_max_distance=3 must exceed")],
)  # fmt: skip
def test_buckets_that_cannot_work_are_one_line(settings, message):
    cfg = TransformerConfig(arch="decoder_only", d_model=16, heads=4, dec_layers=1, tgt_vocab_size=13,
                            pos_encoding="t5_relative", **settings)  # fmt: skip
    with pytest.raises(ConfigError, match=message) as refused:
        cfg.validate()
    assert "\n" not in str(refused.value)


# Each architecture's stacks, and whether their buckets tell earlier keys from later ones (the encoder's)
STACKS = {"encoder_only": {"encoder": True}, "decoder_only": {"decoder": False},
          "encoder_decoder": {"encoder": True, "decoder": False}}  # fmt: skip


@pytest.mark.parametrize("arch", list(STACKS))
@pytest.mark.parametrize("buckets", [2, 3, 4, 5, 6, 7, 8, 10, 13, 32])
def test_every_max_distance_check_accepts_gives_buckets_in_range_and_every_one_it_refuses_breaks_t5s(arch, buckets):
    """The check's bound is the architecture's: at or below a stack's exact distances the log-spaced buckets come out
    negative or undefined, in transformers' T5Attention too (so there is no T5 behaviour to match, only a value to
    refuse), and the decoder's one-way buckets have twice the encoder's exact distances."""
    relative = torch.arange(-1000, 1001)  # key - query: far before, far after, and everything between
    fewest = 4 if "encoder" in STACKS[arch] else 2  # one exact distance per stack: an encoder's buckets halve twice
    if buckets < fewest:
        cfg = TransformerConfig(arch=arch, d_model=16, heads=4, src_vocab_size=13, tgt_vocab_size=13, num_classes=2,
                                pos_encoding="t5_relative", relative_buckets=buckets)  # fmt: skip
        with pytest.raises(ConfigError, match=f"give model.relative_buckets={fewest} or more"):
            cfg.validate()
        with pytest.raises(ZeroDivisionError):  # T5's own buckets have nothing to measure the far ones from
            T5Attention._relative_position_bucket(relative, True, buckets, 20)
        return
    accepted = []
    for max_distance in range(1, 2 * buckets):
        cfg = TransformerConfig(arch=arch, d_model=16, heads=4, src_vocab_size=13, tgt_vocab_size=13, num_classes=2,
                                pos_encoding="t5_relative", relative_buckets=buckets,
                                relative_max_distance=max_distance)  # fmt: skip
        try:
            cfg.validate()
        except ConfigError:  # some stack of the architecture would index outside the table, in T5 too
            assert any(
                out_of_range(
                    T5Attention._relative_position_bucket(relative, bidirectional, buckets, max_distance), buckets
                )
                for bidirectional in STACKS[arch].values()
            ), max_distance
            continue
        accepted.append(max_distance)
        for bidirectional in STACKS[arch].values():
            ours = relative_position_bucket(relative, bidirectional, buckets, max_distance)
            assert not out_of_range(ours, buckets), (max_distance, bidirectional)
            theirs = T5Attention._relative_position_bucket(relative, bidirectional, buckets, max_distance)
            assert torch.equal(ours, theirs)
        positional = build_model(cfg).positional
        for stack in STACKS[arch]:  # and each stack's table reads them
            assert positional.for_stack(stack).attention_bias(7, 9).shape == (4, 7, 9)
    exact = buckets // 2 if "decoder" in STACKS[arch] else buckets // 2 // 2
    assert accepted == list(range(exact + 1, 2 * buckets))


def out_of_range(bucket: torch.Tensor, buckets: int) -> bool:
    """Whether any bucket falls outside [0, buckets): a row the table's embedding does not have."""
    return bool(((bucket < 0) | (bucket >= buckets)).any())
