import torch

from src.model import masks


def test_key_padding_blocks_pad_keys_only():
    tokens = torch.tensor([[5, 6, 0], [7, 0, 0]])
    mask = masks.key_padding_mask(tokens)
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


def test_site_masks_per_type():
    tgt_keys = torch.tensor([[4, 5, 6, 0]])
    leak = masks.decoder_self_mask(4, 4, "none", window=2, prefix_len=0, keys=tgt_keys)
    assert leak[0, 0, 0].tolist() == [True, True, True, False]  # sees the future, never padding
    standard = masks.decoder_self_mask(4, 4, "standard", window=2, prefix_len=0, keys=tgt_keys)
    assert standard[0, 0, 3].tolist() == [True, True, True, False]
    assert standard[0, 0, 0].tolist() == [True, False, False, False]
    src = torch.tensor([[4, 5, 0]])
    assert masks.encoder_self_mask(src, "causal", window=2)[0, 0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert masks.encoder_self_mask(src, "standard", window=2)[0, 0].int().tolist() == [[1, 1, 0]]  # broadcast over queries
    assert masks.cross_mask(src).shape == (1, 1, 1, 3)


def test_combine_ignores_none():
    a = torch.tensor([[True, False]])
    assert masks.combine(None, a, None) is a
    assert masks.combine(None, None) is None
