"""The whole model: equal to torch.nn.Transformer, paths agree, masks do what they claim, it learns."""

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.model import PAD_ID, ConfigError, TransformerConfig, build_model, generate
from src.model.fused import FusedLinear
from src.model.masks import MASK_SCHEMES
from src.model.norms import LayerNorm, RMSNorm
from src.model.positional import POSITIONAL_SCHEMES

D, H, FF = 16, 4, 32


def small_config(**overrides) -> TransformerConfig:
    values = dict(
        src_vocab_size=23,
        tgt_vocab_size=19,
        num_classes=3,
        d_model=D,
        heads=H,
        enc_layers=2,
        dec_layers=2,
        d_ff=FF,
        dropout=0.0,
        max_len=64,
    )
    values.update(overrides)
    return TransformerConfig(**values)


MASK_NAMES = list(MASK_SCHEMES)  # every registered scheme: a new one is tested without edits here
POSITION_NAMES = list(POSITIONAL_SCHEMES)


def small_mask(name: str) -> dict:
    """mask=<name> with every integer setting 2 (window, prefix_len, ...): the structure then matters inside
    the short sequences below."""
    return {"type": name, **{f.name: 2 for f in dataclasses.fields(MASK_SCHEMES[name]) if f.type in ("int", int)}}


def batch(seed=0, b=3, s=7, t=6):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 23, (b, s), generator=g)
    tgt = torch.randint(4, 19, (b, t), generator=g)
    src[1, 5:] = PAD_ID  # right padding, different lengths per example
    src[2, 3:] = PAD_ID
    tgt[2, 4:] = PAD_ID
    return src, tgt


# --- equivalence with torch.nn.Transformer ---------------------------------------------------------


def _copy_attention(ours, ref: nn.MultiheadAttention):
    d = ref.embed_dim
    if ours.is_self_attention:
        ours.qkv_proj.weight.copy_(ref.in_proj_weight), ours.qkv_proj.bias.copy_(ref.in_proj_bias)
    else:
        ours.q_proj.weight.copy_(ref.in_proj_weight[:d]), ours.q_proj.bias.copy_(ref.in_proj_bias[:d])
        ours.kv_proj.weight.copy_(ref.in_proj_weight[d:]), ours.kv_proj.bias.copy_(ref.in_proj_bias[d:])
    ours.out_proj.load_state_dict(ref.out_proj.state_dict())


def _copy_norm(ours, ref: nn.LayerNorm):
    ours.weight.copy_(ref.weight), ours.bias.copy_(ref.bias)


def _copy_ffn(ours, ref_layer):
    ours.linear1.load_state_dict(ref_layer.linear1.state_dict())
    ours.linear2.load_state_dict(ref_layer.linear2.state_dict())


@torch.no_grad()
def copy_torch_transformer_into(model, ref: nn.Transformer) -> None:
    for ours, theirs in zip(model.encoder.layers, ref.encoder.layers):
        _copy_attention(ours.self_attn, theirs.self_attn)
        _copy_ffn(ours.ffn, theirs)
        _copy_norm(ours.attn_block.norm, theirs.norm1), _copy_norm(ours.ffn_block.norm, theirs.norm2)
    for ours, theirs in zip(model.decoder.layers, ref.decoder.layers):
        _copy_attention(ours.self_attn, theirs.self_attn)
        _copy_attention(ours.cross_attn, theirs.multihead_attn)
        _copy_ffn(ours.ffn, theirs)
        _copy_norm(ours.self_block.norm, theirs.norm1)
        _copy_norm(ours.cross_block.norm, theirs.norm2)
        _copy_norm(ours.ffn_block.norm, theirs.norm3)
    if model.encoder.final_norm is not None:
        _copy_norm(model.encoder.final_norm, ref.encoder.norm)
        _copy_norm(model.decoder.final_norm, ref.decoder.norm)


@pytest.mark.parametrize("norm_first,activation", list(itertools.product([False, True], ["relu", "gelu"])))
def test_equals_torch_nn_transformer(norm_first, activation):
    torch.manual_seed(0)
    cfg = small_config(norm_position="pre" if norm_first else "post", activation=activation)
    model = build_model(cfg).double()
    ref = nn.Transformer(
        D, H, 2, 2, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).double()
    with torch.no_grad():  # random norm parameters, so a mix-up of norms cannot pass by luck
        for p in ref.parameters():
            if p.dim() == 1:
                p.uniform_(-0.5, 1.5)
    if not norm_first:
        # nn.Transformer always ends its stacks with a LayerNorm; the paper's post-LN model has none.
        ref.encoder.norm, ref.decoder.norm = None, None
    copy_torch_transformer_into(model, ref)
    model.train(), ref.train()  # train mode with dropout 0 avoids torch's nested-tensor fast path

    src, tgt = batch()
    ours = model(src, tgt).logits  # (B, T, V)
    src_x = model.src_embed(src, model.positional)
    tgt_x = model.tgt_embed(tgt, model.positional)
    theirs = model.out_proj(
        ref(
            src_x,
            tgt_x,
            tgt_mask=torch.ones(tgt.size(1), tgt.size(1), dtype=torch.bool).triu(1),  # True = blocked
            src_key_padding_mask=src == PAD_ID,
            tgt_key_padding_mask=tgt == PAD_ID,
            memory_key_padding_mask=src == PAD_ID,
        )
    )
    keep = tgt != PAD_ID
    torch.testing.assert_close(ours[keep], theirs[keep], atol=1e-6, rtol=0)


# --- both attention paths, every mask type and positional scheme ----------------------------------


@pytest.mark.filterwarnings("ignore:mask=none")
@pytest.mark.parametrize("mask_type,pos", list(itertools.product(MASK_NAMES, POSITION_NAMES)))
def test_explicit_and_fused_paths_agree(mask_type, pos):
    torch.manual_seed(0)
    model = build_model(small_config(mask=small_mask(mask_type), pos_encoding=pos)).double()
    src, tgt = batch()
    fused = model(src, tgt)
    explicit = model(src, tgt, need_weights=True)
    assert fused.attentions is None
    torch.testing.assert_close(explicit.logits, fused.logits, atol=1e-10, rtol=0)
    assert set(explicit.attentions) == {"encoder_self", "decoder_self", "cross"}
    for site, expected in {"encoder_self": (3, H, 7, 7), "decoder_self": (3, H, 6, 6), "cross": (3, H, 6, 7)}.items():
        assert [w.shape for w in explicit.attentions[site]] == [expected, expected]
        # weights respect the mask in force
        allowed = model.attention_masks(src, tgt)[site]
        for w in explicit.attentions[site]:
            assert torch.all(w.masked_select(~allowed.expand_as(w)) == 0)


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_paths_agree_for_other_architectures(arch):
    torch.manual_seed(0)
    model = build_model(small_config(arch=arch, pos_encoding="rope")).double()
    src, tgt = batch()
    x = tgt if arch == "decoder_only" else src
    torch.testing.assert_close(model(x, need_weights=True).logits, model(x).logits, atol=1e-10, rtol=0)


# --- masks do what they claim --------------------------------------------------------------------


@pytest.mark.parametrize("pos", POSITION_NAMES)
def test_causal_decoder_outputs_do_not_see_future_tokens(pos):
    torch.manual_seed(0)
    model = build_model(small_config(pos_encoding=pos)).double()
    src, tgt = batch()
    changed = tgt.clone()
    changed[:, 3:] = torch.randint(4, 19, changed[:, 3:].shape)
    torch.testing.assert_close(model(src, tgt).logits[:, :3], model(src, changed).logits[:, :3], atol=1e-10, rtol=0)
    lm = build_model(small_config(arch="decoder_only", pos_encoding=pos)).double()
    torch.testing.assert_close(lm(tgt).logits[:, :3], lm(changed).logits[:, :3], atol=1e-10, rtol=0)


def test_causal_mask_type_makes_the_encoder_causal_too():
    torch.manual_seed(0)
    src, tgt = batch()
    changed = src.clone()
    changed[0, 4:] = torch.randint(4, 23, (3,))
    causal = build_model(small_config(mask={"type": "causal"})).double()
    memory_a, _ = causal.encode(src)
    memory_b, _ = causal.encode(changed)
    torch.testing.assert_close(memory_a[0, :4], memory_b[0, :4], atol=1e-10, rtol=0)
    standard = build_model(small_config(mask={"type": "standard"})).double()
    assert not torch.allclose(standard.encode(src)[0][0, :4], standard.encode(changed)[0][0, :4])


def test_leak_ablation_runs_warns_once_and_does_see_the_future():
    from src.model import masks

    masks._warned.clear()
    with pytest.warns(UserWarning, match="mask=none"):
        model = build_model(small_config(mask={"type": "none"})).double()
    src, tgt = batch()
    changed = tgt.clone()
    changed[:, 3:] = torch.randint(4, 19, changed[:, 3:].shape)
    assert not torch.allclose(model(src, tgt).logits[:, :3], model(src, changed).logits[:, :3])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_model(small_config(mask={"type": "none"}))  # a second model: no second warning


@pytest.mark.filterwarnings("ignore:mask=none")
@pytest.mark.parametrize(
    "mask_type,pos", list(itertools.product(MASK_NAMES, ["sinusoidal", "learned", "rope", "alibi"]))
)
def test_padding_does_not_change_outputs_at_real_positions(mask_type, pos):
    torch.manual_seed(0)
    model = build_model(small_config(mask=small_mask(mask_type), pos_encoding=pos)).double()
    src, tgt = batch()
    padded_src = F.pad(src, (0, 4), value=PAD_ID)  # more padding after every sequence
    padded_tgt = F.pad(tgt, (0, 3), value=PAD_ID)
    keep = tgt != PAD_ID
    a = model(src, tgt).logits[keep]
    b = model(padded_src, padded_tgt).logits[:, : tgt.size(1)][keep]
    torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    # and one example alone gives what it gives inside the padded batch
    alone = model(src[2:3, :3], tgt[2:3, :4]).logits
    torch.testing.assert_close(alone[0], a[-4:], atol=1e-10, rtol=0)


# A GPT-2-shaped vocabulary: no pad token, <|endoftext|> is bos, eos and pad at once (as gpt2.py and llama.py build it).
SHARED_EOS = 2


@pytest.mark.parametrize("mask_type", ["standard", "window", "prefix"])
def test_a_row_that_ends_in_a_real_eos_shared_with_pad_reads_as_in_cached_decoding(mask_type):
    """Where the pad id is also eos, a text that ends in eos has that token read as real: the full pass equals
    decoding the same tokens through the cache (which sees no padding), at every position: the prefix a
    prefix-LM must be given whole, then one token at a time."""
    torch.manual_seed(0)
    specials = dict(pad_id=SHARED_EOS, bos_id=SHARED_EOS, eos_id=SHARED_EOS)
    cfg = small_config(arch="decoder_only", mask=small_mask(mask_type), pos_encoding="learned", **specials)
    model = build_model(cfg).double().eval()
    tokens = torch.tensor([[5, 7, 9, 11, 13, SHARED_EOS]])
    with torch.no_grad():
        full = model(tokens).logits  # (1, T, V)
        cache = model.decoder.new_cache()
        first = max(1, model.mask_scheme.min_prompt_len)
        steps = [(0, first)] + [(t, t + 1) for t in range(first, tokens.size(1))]
        cached = torch.cat([model.decode(tokens[:, a:b], cache, start=a)[0] for a, b in steps], dim=1)
    torch.testing.assert_close(full, cached, atol=1e-10, rtol=0)


@pytest.mark.parametrize("mask_type", ["standard", "window", "prefix"])
def test_padding_with_a_pad_id_shared_with_eos_does_not_change_outputs_at_real_positions(mask_type):
    """The first pad of a row now counts as real (it may be a text's end): a causal mask keeps every real query from
    it, so each row's real logits in a padded batch are the row's alone. (mask=none and a prefix that reaches into
    the padding would let real queries see it: masks.decoder_key_padding_mask.)"""
    torch.manual_seed(0)
    specials = dict(pad_id=SHARED_EOS, bos_id=SHARED_EOS, eos_id=SHARED_EOS)
    cfg = small_config(arch="decoder_only", mask=small_mask(mask_type), pos_encoding="rope", **specials)
    model = build_model(cfg).double().eval()
    rows = [[5, 7, 9, 11, 13, 6], [5, 8, SHARED_EOS, 4], [9, 10, 11, SHARED_EOS]]  # eos inside a text, at its end
    width = max(len(row) for row in rows) + 2
    padded = torch.tensor([row + [SHARED_EOS] * (width - len(row)) for row in rows])
    with torch.no_grad():
        logits = model(padded).logits
        for i, row in enumerate(rows):
            alone = model(torch.tensor([row])).logits[0]
            torch.testing.assert_close(logits[i, : len(row)], alone, atol=1e-10, rtol=0)


# --- configuration and sizes ---------------------------------------------------------------------


def test_bad_configurations_are_rejected_with_one_line():
    with pytest.raises(ConfigError, match=r"model.heads=3 does not divide model.d_model=16") as err:
        build_model(small_config(heads=3))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="mask.window=0 must be at least 1"):
        build_model(small_config(mask={"type": "window", "window": 0}))
    with pytest.raises(ConfigError, match="model.pos_encoding='fourier' is not known"):
        build_model(small_config(pos_encoding="fourier"))
    with pytest.raises(ConfigError, match="classification task"):
        build_model(small_config(arch="encoder_only", num_classes=0))


def test_weight_tying_and_embedding_scale():
    model = build_model(small_config(tie_embeddings=True))
    assert model.out_proj.weight is model.tgt_embed.token.weight
    untied = build_model(small_config(tie_embeddings=False))
    assert untied.out_proj.weight is not untied.tgt_embed.token.weight
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters()) == 19 * D
    assert model.tgt_embed.scale == pytest.approx(D**0.5)


@pytest.mark.parametrize("tied", [False, True])
def test_a_dedicated_pad_row_starts_at_zero_and_stays_so_only_when_the_output_is_untied(tied):
    """padding_idx keeps the lookup's gradient off the pad's row; a tied output projection is the same matrix, and
    its gradient (the pad's logit pushed down) trains the row (Embeddings)."""
    torch.manual_seed(0)
    model = build_model(small_config(arch="decoder_only", tie_embeddings=tied))
    pad_row = model.tgt_embed.token.weight[PAD_ID]
    assert pad_row.abs().max().item() == 0.0
    x = torch.randint(4, 19, (4, 8))
    loss = F.cross_entropy(model(x[:, :-1]).logits.flatten(0, 1), x[:, 1:].flatten())
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert (pad_row.abs().max().item() > 0.0) == tied


# --- initialisation: by what each module is ------------------------------------------------------------------------


def test_the_fused_projections_know_the_matrices_they_hold():
    """Q | K | V (H Dh, KVH Dh, KVH Dh rows), the memory's K | V, and the gated FFN's gate | value: each a FusedLinear
    whose parts are the rows of the matrices it stands for, as its output is split."""
    model = build_model(small_config(heads=4, head_dim=8, kv_heads=2, activation="swiglu"))
    layer = model.decoder.layers[0]
    assert isinstance(layer.self_attn.qkv_proj, FusedLinear) and layer.self_attn.qkv_proj.parts == (32, 16, 16)
    assert layer.cross_attn.kv_proj.parts == (16, 16) and not isinstance(layer.cross_attn.q_proj, FusedLinear)
    assert layer.ffn.gate_value.parts == (FF, FF)
    assert [m.shape for m in layer.ffn.gate_value.matrices()] == [(FF, D), (FF, D)]


def test_a_fused_layers_outputs_are_its_parts_maps_and_the_forward_passes_split_it_so(monkeypatch):
    """split_outputs: each part's output is its own matrix (and bias) applied to the input; the attention's Q, K, V
    and the gated FFN's gate and value are read that way, so a layer's parts alone say where its output splits."""
    torch.manual_seed(0)
    fused, x = FusedLinear(6, (4, 2, 2)), torch.randn(3, 5, 6)
    biases = fused.bias.detach().split(fused.parts)
    for output, matrix, bias in zip(fused.split_outputs(x), fused.matrices(), biases, strict=True):
        torch.testing.assert_close(output, F.linear(x, matrix, bias))
    model = build_model(small_config(heads=4, head_dim=8, kv_heads=2, activation="swiglu")).eval()
    split, layer = [], model.decoder.layers[0]
    original = FusedLinear.split_outputs
    monkeypatch.setattr(FusedLinear, "split_outputs", lambda self, x: split.append(self) or original(self, x))
    model(*batch()[:2])
    assert {id(layer.self_attn.qkv_proj), id(layer.cross_attn.kv_proj), id(layer.ffn.gate_value)} <= set(map(id, split))


def test_the_initialisation_reads_what_each_module_is_not_what_it_is_called():
    """A fused linear layer is initialised matrix by matrix, and an embedding table from N(0, d_model^-0.5), under
    any attribute name: the initialisation asks the modules (fused.FusedLinear, nn.Embedding), not their names."""
    torch.manual_seed(0)
    model = build_model(small_config(arch="decoder_only"))
    model.any_name = FusedLinear(64, (64, 8))  # Xavier bounds sqrt(6 / (64 + 64)) and sqrt(6 / (64 + 8))
    model.another_name = nn.Embedding(40, D)
    model._init_weights()
    for matrix in model.any_name.matrices():
        bound = (6 / (64 + matrix.size(0))) ** 0.5
        assert 0.95 * bound < matrix.abs().max() <= bound
    table = model.another_name.weight
    assert table.std().item() == pytest.approx(D**-0.5, rel=0.1)
    assert table.abs().max() > (6 / (40 + D)) ** 0.5  # beyond any Xavier draw of a (40, D) matrix


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only"])
def test_a_tied_embedding_keeps_its_normal_draw_when_the_initialisation_runs_again(arch):
    """The tied output projection is an nn.Linear whose weight is the token embedding's: the initialisation draws
    that parameter once, as the embedding (N(0, d_model^-0.5)), however often it runs, and never as a Xavier matrix
    (whose entries lie within sqrt(6 / (V + D)))."""
    model = build_model(small_config(arch=arch, tie_embeddings=True))
    torch.manual_seed(1)
    model._init_weights()
    table = model.tgt_embed.token.weight
    assert model.out_proj.weight is table
    assert table.std().item() == pytest.approx(D**-0.5, rel=0.15)
    assert table.abs().max() > (6 / (19 + D)) ** 0.5  # beyond any Xavier draw of the (19, D) projection
    assert table[PAD_ID].abs().max() == 0.0  # the dedicated pad's row, zeroed with the embedding's draw


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "encoder_only"])
@pytest.mark.parametrize(
    "options",
    [
        dict(qk_norm=True, activation="swiglu", pos_encoding="t5_relative", norm_type="rmsnorm", tie_embeddings=False),
        dict(pos_encoding="learned", token_types=2, embedding_norm=True, pooling="first_token", output_bias=True),
    ],
)
def test_every_parameter_is_held_by_a_module_the_initialisation_knows(arch, options):
    """Linear layers and embedding tables are drawn by _init_weights; the norms start as their constructors make
    them (gains 1, shifts 0). A module of another kind with parameters would keep PyTorch's default draw unseen."""
    model = build_model(small_config(arch=arch, **options))
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            assert isinstance(module, (nn.Linear, nn.Embedding, LayerNorm, RMSNorm)), (name, type(module))


def test_pre_ln_has_final_norms_and_post_ln_has_none():
    assert build_model(small_config(norm_position="pre")).encoder.final_norm is not None
    assert build_model(small_config(norm_position="post")).decoder.final_norm is None


def test_parameter_count_and_flops_match_hand_counts():
    from src.model import count_parameters, flops_per_token

    cfg = small_config(arch="decoder_only", dec_layers=1, tie_embeddings=True, norm_position="post")
    model = build_model(cfg)
    per_layer = (3 * D * D + 3 * D) + (D * D + D) + (D * FF + FF) + (FF * D + D) + 2 * (2 * D)  # attn, ffn, 2 norms
    assert count_parameters(model) == 19 * D + per_layer
    t = 10
    expected = (2 * t * 4 * D * D + 4 * t * t * D + 2 * t * 2 * D * FF + 2 * t * D * 19) / t
    assert flops_per_token(cfg, src_len=0, tgt_len=t) == pytest.approx(expected)


def test_the_ffn_is_counted_on_the_meta_device_without_memory(monkeypatch):
    """summary.ffn_weight_entries builds an FFN only for its shapes: on the meta device, so a large d_ff costs no
    memory and no initialisation."""
    from src.model import summary

    built = []

    def build_and_keep(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    original = summary.build_feedforward
    monkeypatch.setattr(summary, "build_feedforward", build_and_keep)
    assert summary.ffn_weight_entries(small_config(activation="swiglu")) == 3 * D * FF
    assert all(p.is_meta for p in built[0].parameters())


# --- every architecture learns a tiny batch --------------------------------------------------------


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "encoder_only"])
@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_every_architecture_overfits_a_tiny_batch(arch, norm_position):
    torch.manual_seed(0)
    model = build_model(small_config(arch=arch, norm_position=norm_position, d_model=32, d_ff=64))
    src, tgt = batch(b=4)
    src[src == PAD_ID] = 5
    tgt[tgt == PAD_ID] = 5
    labels = torch.tensor([0, 1, 2, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        if arch == "encoder_decoder":
            logits, target = model(src, tgt[:, :-1]).logits, tgt[:, 1:]
        elif arch == "decoder_only":
            logits, target = model(tgt[:, :-1]).logits, tgt[:, 1:]
        else:
            logits, target = model(src).logits, labels
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    assert torch.equal(logits.argmax(-1), target)


# --- more of the claims, for every architecture ---------------------------------------------------


@pytest.mark.filterwarnings("ignore:mask=none")
@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
@pytest.mark.parametrize("mask_type,pos", list(itertools.product(MASK_NAMES, POSITION_NAMES)))
def test_paths_agree_for_every_architecture_mask_and_position(arch, mask_type, pos):
    torch.manual_seed(0)
    model = build_model(small_config(arch=arch, mask=small_mask(mask_type), pos_encoding=pos)).double()
    src, tgt = batch()
    x = tgt if arch == "decoder_only" else src
    explicit = model(x, need_weights=True)
    torch.testing.assert_close(explicit.logits, model(x).logits, atol=1e-10, rtol=0)
    site = "decoder_self" if arch == "decoder_only" else "encoder_self"
    allowed = model.attention_masks(src=src, tgt=tgt)[site]
    for w in explicit.attentions[site]:
        assert torch.all(w.masked_select(~allowed.expand_as(w)) == 0)


@pytest.mark.parametrize(
    "mask,visible_until", [({"type": "window", "window": 2}, 3), ({"type": "prefix", "prefix_len": 3}, 3)]
)
def test_decoder_only_window_and_prefix_do_not_see_the_future(mask, visible_until):
    torch.manual_seed(0)
    lm = build_model(small_config(arch="decoder_only", mask=mask)).double()
    _, tgt = batch()
    changed = tgt.clone()
    changed[:, visible_until:] = torch.randint(4, 19, changed[:, visible_until:].shape)
    torch.testing.assert_close(
        lm(tgt).logits[:, :visible_until], lm(changed).logits[:, :visible_until], atol=1e-10, rtol=0
    )
    if mask["type"] == "prefix":  # inside the prefix, position 0 does see position 2
        changed_inside = tgt.clone()
        changed_inside[:, 2] = (tgt[:, 2] - 4 + 1) % 15 + 4
        assert not torch.allclose(lm(tgt).logits[:, 0], lm(changed_inside).logits[:, 0])
        keep = lm.trainable_positions(tgt)
        assert keep[0].tolist() == [False, False, True, True, True, True]


def test_prefix_mask_in_an_encoder_decoder_is_a_prefix_lm_encoder():
    torch.manual_seed(0)
    model = build_model(small_config(mask={"type": "prefix", "prefix_len": 2})).double()
    src, _ = batch()
    changed = src.clone()
    changed[0, 3:5] = torch.tensor([7, 8])
    before, after = model.encode(src)[0][0], model.encode(changed)[0][0]
    torch.testing.assert_close(before[:3], after[:3], atol=1e-10, rtol=0)  # prefix + position 2: causal past only
    masks_ = model.attention_masks(src, torch.randint(4, 19, (3, 5)))
    assert masks_["decoder_self"][0, 0].int().tolist() == torch.ones(5, 5).tril().int().tolist()


def test_embeddings_are_scaled_by_sqrt_d_model_and_add_positions():
    model = build_model(small_config()).double()
    tokens = torch.tensor([[5, 6, 7]])
    expected = model.src_embed.token(tokens) * D**0.5 + model.positional.table[:3].double()
    torch.testing.assert_close(model.src_embed(tokens, model.positional), expected)


@pytest.mark.parametrize(
    "arch,activation", [("encoder_decoder", "relu"), ("decoder_only", "swiglu"), ("encoder_only", "gelu")]
)
def test_flops_estimate_matches_torch_flop_counter(arch, activation):
    from torch.utils.flop_counter import FlopCounterMode

    from src.model import flops_per_token

    cfg = small_config(arch=arch, activation=activation)
    model = build_model(cfg)
    src = torch.randint(4, 19, (1, 7))
    tgt = torch.randint(4, 19, (1, 5))
    # need_weights: the explicit path is plain matmuls, which the counter sees (it skips CPU SDPA)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        if arch == "encoder_decoder":
            model(src, tgt, need_weights=True)
        else:
            model(tgt if arch == "decoder_only" else src, need_weights=True)
    measured = counter.get_total_flops()
    tokens = 7 if arch == "encoder_only" else 5
    head = 2 * D * cfg.num_classes if arch == "encoder_only" else 0  # the classifier head, not in the estimate
    assert flops_per_token(cfg, src_len=7, tgt_len=5) * tokens == pytest.approx(measured - head, rel=1e-9)


# --- the axes the pretrained families need (BERT, GPT-2, Marian) ------------------------------------------------


def test_embedding_norm_and_token_types_follow_bert():
    cfg = small_config(arch="encoder_only", embedding_norm=True, token_types=2, pos_encoding="learned")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    embed = model.src_embed
    tokens = torch.tensor([[5, 6, 7], [8, 9, 0]])
    types = torch.tensor([[0, 0, 1], [0, 1, 1]])
    summed = embed.token(tokens) * D**0.5 + embed.token_type(types) + model.positional.embedding.weight[:3]
    expected = F.layer_norm(summed, (D,), embed.norm.weight, embed.norm.bias, cfg.norm_eps)
    torch.testing.assert_close(embed(tokens, model.positional, token_types=types), expected)
    # without types every token is of type 0
    zero = embed(tokens, model.positional, token_types=torch.zeros_like(tokens))
    torch.testing.assert_close(embed(tokens, model.positional), zero)
    assert model(tokens, token_types=types).logits.shape == (2, 3)


@pytest.mark.parametrize("norm_position", ["post", "pre"])
@pytest.mark.parametrize("final_norm", [None, True, False])
def test_final_norm_defaults_to_the_placement_and_can_be_set_either_way(norm_position, final_norm):
    model = build_model(small_config(norm_position=norm_position, final_norm=final_norm))
    expected = (norm_position == "pre") if final_norm is None else final_norm
    assert (model.encoder.final_norm is not None) == expected
    assert (model.decoder.final_norm is not None) == expected
    src, tgt = torch.randint(4, 23, (2, 5)), torch.randint(4, 19, (2, 4))
    if expected:  # the decoder's output is normalised: zero mean per position before the output projection
        hidden = {}
        model.decoder.final_norm.register_forward_hook(lambda m, i, o: hidden.update(x=o))
        model(src, tgt)
        torch.testing.assert_close(hidden["x"].mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    model(src, tgt).logits.sum().backward()


def test_output_bias_is_added_to_every_logit_and_survives_tied_embeddings():
    torch.manual_seed(0)
    model = build_model(small_config(arch="decoder_only", output_bias=True)).eval()
    assert model.out_proj.weight is model.tgt_embed.token.weight
    tokens = torch.randint(4, 19, (2, 5))
    before = model(tokens).logits
    with torch.no_grad():
        model.out_proj.bias.copy_(torch.arange(19.0))
    torch.testing.assert_close(model(tokens).logits, before + torch.arange(19.0))
    assert "out_proj.bias" in model.state_dict()
    assert "out_proj.bias" not in build_model(small_config(arch="decoder_only")).state_dict()


def test_first_token_pooling_reads_the_first_position_of_the_encoder():
    torch.manual_seed(0)
    model = build_model(small_config(arch="encoder_only", pooling="first_token")).eval()
    src = torch.randint(4, 23, (3, 6))
    hidden = {}
    model.encoder.register_forward_hook(lambda m, i, o: hidden.update(x=o[0]))
    logits = model(src).logits
    pooled = torch.tanh(model.pooling.dense(hidden["x"][:, 0]))
    torch.testing.assert_close(logits, model.head(pooled))


def test_the_special_ids_come_from_the_config_and_a_shared_pad_is_a_real_token():
    """GPT-2 pads with <|endoftext|> (its bos and eos too): that embedding trains, greedy may end on it, and a
    prompt may contain it. A dedicated pad (ours, BERT's, ...) keeps a frozen zero row."""
    gpt2_like = small_config(arch="decoder_only", pad_id=18, bos_id=18, eos_id=18, pos_encoding="learned")
    model = build_model(gpt2_like).eval()
    assert model.tgt_embed.token.padding_idx is None
    prompt = torch.tensor([[5, 18, 6]])  # <|endoftext|> between two texts
    out = generate(model, prompt=prompt, max_new_tokens=30)
    assert out.shape[1] <= 30 and out.min() >= 0
    assert build_model(small_config(pad_id=3, bos_id=1, eos_id=2)).src_embed.token.padding_idx == 3
    with pytest.raises(ConfigError, match="pad_id=40 is not a token"):
        build_model(small_config(pad_id=40))


def test_every_new_axis_is_a_registered_choice_with_a_one_line_error():
    with pytest.raises(ConfigError, match="model.pooling='cls' is not known: choose one of mean, first_token"):
        build_model(small_config(arch="encoder_only", pooling="cls"))
    with pytest.raises(ConfigError, match="model.token_types=-1"):
        build_model(small_config(token_types=-1))
    with pytest.raises(ConfigError, match="sinusoidal_halves"):
        build_model(small_config(pos_encoding="sinus"))


def test_attention_and_ffn_dropout_default_to_model_dropout_and_can_be_set_apart():
    model = build_model(small_config(dropout=0.3))
    layer = model.encoder.layers[0]
    assert (layer.self_attn.dropout, layer.ffn.dropout.p, layer.attn_block.dropout.p) == (0.3, 0.3, 0.3)
    model = build_model(small_config(dropout=0.3, attention_dropout=0.0, ffn_dropout=0.1))
    layer = model.decoder.layers[0]
    assert (layer.self_attn.dropout, layer.cross_attn.dropout, layer.ffn.dropout.p) == (0.0, 0.0, 0.1)
    assert layer.ffn_block.dropout.p == model.tgt_embed.dropout.p == 0.3
    with pytest.raises(ConfigError, match=r"model.ffn_dropout=1.0 must be in \[0, 1\) \(or null"):
        build_model(small_config(ffn_dropout=1.0))
