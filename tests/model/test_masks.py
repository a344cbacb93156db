import pytest
import torch

from src.model import ConfigError, masks


def test_key_padding_blocks_pad_keys_only():
    tokens = torch.tensor([[5, 6, 0], [7, 0, 0]])
    mask = masks.key_padding_mask(tokens, pad_id=0)
    assert mask.shape == (2, 1, 1, 3)
    assert mask[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]


def test_causal_mask_and_offset():
    assert masks.causal_mask(3, 3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # the newest query (position 2) of a cached sequence sees all three keys
    assert masks.causal_mask(1, 3, q_offset=2).tolist() == [[True, True, True]]


def test_window_masks():
    bidirectional = masks.window_mask(4, 4, width=2, causal=False).int().tolist()
    assert bidirectional == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]
    causal = masks.window_mask(4, 4, width=2, causal=True).int().tolist()
    assert causal == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    assert masks.window_mask(3, 3, width=1, causal=False).int().tolist() == torch.eye(3).int().tolist()


def test_prefix_lm_mask_is_bidirectional_inside_the_prefix():
    mask = masks.prefix_lm_mask(4, 4, prefix_len=2).int().tolist()
    assert mask == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    per_example = masks.prefix_lm_mask(3, 3, prefix_len=torch.tensor([0, 3]))
    assert per_example.shape == (2, 1, 3, 3)
    assert per_example[0, 0].tolist() == masks.causal_mask(3, 3).tolist()
    assert per_example[1, 0].all()


def test_site_masks_per_scheme():
    tgt_keys = torch.tensor([[4, 5, 6, 0]]) != 0  # the real keys
    leak = masks.NoMask().decoder_self(4, 4, real_keys=tgt_keys)
    assert leak[0, 0, 0].tolist() == [True, True, True, False]  # sees the future, never padding
    standard = masks.MaskScheme().decoder_self(4, 4, real_keys=tgt_keys)
    assert standard[0, 0, 3].tolist() == [True, True, True, False]
    assert standard[0, 0, 0].tolist() == [True, False, False, False]
    src = torch.tensor([[4, 5, 0]])
    assert masks.CausalMask().encoder_self(src, pad_id=0)[0, 0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert masks.MaskScheme().encoder_self(src, pad_id=0)[0, 0].int().tolist() == [[1, 1, 0]]  # broadcast over queries
    assert masks.MaskScheme().cross(src, pad_id=0).shape == (1, 1, 1, 3)


def test_prefix_scheme_in_a_decoder_only_model_and_in_an_encoder_decoder():
    prefix = masks.PrefixMask(prefix_len=2)
    lm = prefix.decoder_self(4, 4, decoder_only=True)[0, 0].int().tolist()
    assert lm == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    assert prefix.decoder_self(4, 4)[0, 0].tolist() == masks.causal_mask(4, 4).tolist()  # the target stays causal
    assert prefix.trainable_positions(torch.ones(1, 4)).tolist() == [[False, True, True, True]]
    assert prefix.min_prompt_len == 2 and masks.MaskScheme().min_prompt_len == 0


def test_schemes_are_built_from_settings_with_one_line_errors():
    assert masks.build_mask_scheme({"type": "window", "window": 3}, max_len=8) == masks.WindowMask(window=3)
    with pytest.raises(ConfigError, match="mask='dilated' is not known"):
        masks.build_mask_scheme({"type": "dilated"}, max_len=8)
    with pytest.raises(ConfigError, match="mask.window is not a setting of mask=standard"):
        masks.build_mask_scheme({"type": "standard", "window": 3}, max_len=8)
    with pytest.raises(ConfigError, match=r"mask.prefix_len=9 must be in \[0, model.max_len=8\]"):
        masks.build_mask_scheme({"type": "prefix", "prefix_len": 9}, max_len=8)


def test_decoder_padding_is_the_trailing_run_of_pad_ids_after_the_first_token():
    # Marian's decoder starts from its pad token; GPT-2 pads with <|endoftext|>, which may also occur in a text.
    pad = 7
    tokens = torch.tensor([[pad, 4, 5, pad, pad], [4, pad, 5, 6, pad], [pad, pad, pad, pad, pad], [4, 5, 6, 8, 9]])
    keep = masks.decoder_key_padding_mask(tokens, pad, eos_id=2)[:, 0, 0]  # (B, T)
    assert keep.tolist() == [
        [True, True, True, False, False],
        [True, True, True, True, False],
        [True, False, False, False, False],
        [True] * 5,
    ]
    # Where pad only ever pads (our own vocabularies), it is the plain key padding mask.
    ours = torch.tensor([[1, 4, 5, 0, 0], [1, 6, 0, 0, 0]])
    assert torch.equal(masks.decoder_key_padding_mask(ours, 0, eos_id=2), masks.key_padding_mask(ours, 0))


def test_where_the_pad_id_is_also_eos_the_first_token_of_the_trailing_run_is_real():
    """GPT-2's <|endoftext|>, and the eos Llama, Qwen2 and Mistral pad with: a text may really end with it. Taking
    the run's first token as real is right where it ends a text, and changes nothing real where it is padding
    (causal masks: every real query comes before it)."""
    eos = 7
    tokens = torch.tensor([[4, 5, 6, eos], [4, 5, eos, eos], [4, eos, 5, 6], [eos, eos, eos, eos]])
    keep = masks.decoder_key_padding_mask(tokens, eos, eos_id=eos)[:, 0, 0]
    assert keep.tolist() == [
        [True, True, True, True],  # a text that ends in eos: nothing is padding
        [True, True, True, False],  # a text of two tokens then eos, or of three and padding: one eos kept
        [True] * 4,  # eos inside a text
        [True, True, False, False],  # the first token, and the run after it starts with a real eos
    ]
    # pad == bos only (Marian's decoder start): the trailing run is all padding, as before
    assert masks.decoder_key_padding_mask(tokens, eos, eos_id=3)[:, 0, 0].tolist()[:2] == [
        [True, True, True, False],
        [True, True, False, False],
    ]


def test_every_mask_takes_the_models_pad_id_never_a_default():
    """The model reads its own special ids (TransformerConfig); a default of our vocabularies' PAD_ID would give a
    pretrained model's masks the wrong padding without a word."""
    import inspect

    takers = [masks.key_padding_mask, masks.decoder_key_padding_mask, masks.real_positions, masks.has_padding]
    takers += [masks.MaskScheme.encoder_self, masks.MaskScheme.cross]
    takers += [masks.MaskScheme.encoder_self_mask, masks.MaskScheme.cross_mask]
    for function in takers:
        assert inspect.signature(function).parameters["pad_id"].default is inspect.Parameter.empty, function.__name__
