"""Scaled dot-product attention and multi-head attention.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + bias, masked) V          (Vaswani et al. 2017, eq. 1)

Two paths compute the same thing:
- `explicit_attention` writes every step out and can return the attention weights (for the maps);
- `fused_attention` calls `torch.nn.functional.scaled_dot_product_attention`, which is faster and
  lighter on memory but does not expose the weights.
`attend` picks the fused path whenever the weights are not requested.

The fused path passes no mask tensor where none is needed (every key visible, or exactly the look-ahead mask:
`is_causal=True`): on a CUDA GPU only such calls may run the flash-attention kernel (`sdpa_kernel_for` says which
kernel a call runs; masks.py says when a mask needs no tensor).

Grouped-query attention (Ainslie et al. 2023, "GQA"; `model.kv_heads`): the H query heads share KVH <= H key/value
heads, one per KV group of H/KVH consecutive query heads (query head h reads KV head h // (H/KVH), the contiguous
grouping of Llama's repeat_kv); KVH = 1 is multi-query attention (Shazeer 2019), KVH = H multi-head attention. Both
attention functions take k and v with their KVH heads and give each query head its group's keys and values.

Three more choices of today's models, each an ablation axis (docs/model.md):
- the head size Dh (`model.head_dim`): d_model / H in the paper, set apart from d_model in Gemma, Qwen3 and T5,
  so the H heads side by side are H * Dh wide and W^O maps that width back to d_model;
- which projections add a bias (`model.attention_bias`, ATTENTION_BIASES): all four in the paper, Q, K and V only
  in Qwen2, none in Llama;
- QK-norm (`model.qk_norm`): each head's query and key normalised before the scores (Qwen3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dropout import cpu_dropout_keep_mask
from .fused import FusedLinear
from .masks import MaskForm, SiteMask
from .points import ActivationPoint
from .positional import PositionalScheme

# A mask as the attention functions take it: a SiteMask (tensor and form), a boolean tensor, or None (every key).
Mask = SiteMask | Tensor | None


def mask_tensor(mask: Mask) -> Tensor | None:
    """The boolean tensor of a mask, True = may attend (None: every key)."""
    return mask.tensor if isinstance(mask, SiteMask) else mask


def mask_form(mask: Mask) -> MaskForm:
    """What the fused kernel may be told of a mask: a bare tensor is only known as a tensor."""
    if mask is None:
        return MaskForm.EVERY_KEY
    return mask.form if isinstance(mask, SiteMask) else MaskForm.TENSOR


def repeat_kv(x: Tensor, heads: int) -> Tensor:
    """(B, KVH, T, Dh) -> (B, H, T, Dh): each KV head repeated for the H/KVH query heads of its group, in order
    (KV head 0 serves query heads 0 .. H/KVH - 1, and so on). A copy; with KVH = H, x itself."""
    groups = heads // x.size(1)
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def explicit_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    pattern: ActivationPoint | None = None,
) -> tuple[Tensor, Tensor]:
    """q (B, H, Tq, Dh), k and v (B, KVH, Tk, Dh) with KVH dividing H; mask True = may attend, broadcast to
    (B, H, Tq, Tk).

    Returns the output (B, H, Tq, Dh) and the attention weights (B, H, Tq, Tk) before dropout, as the `pattern`
    point's edits leave them (read or replaced: points.py): one map per query head, also when heads share keys.
    A query whose keys are all masked gets zero weights and a zero output (not NaN).
    """
    scale = q.size(-1) ** -0.5 if scale is None else scale
    k, v = repeat_kv(k, q.size(1)), repeat_kv(v, q.size(1))  # (B, H, Tk, Dh): each query head its group's
    # q scaled before the product, not the scores after it: in fp16 q . k can pass the largest finite value
    # (65504) where q . k / sqrt(Dh) does not. (PyTorch's unfused SDPA kernel scales before the product too.)
    scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (B, H, Tq, Tk)
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    if mask is not None:
        # The dtype's most negative finite value, not -inf: a fully masked row then softmaxes to a
        # harmless uniform row (zeroed just below) instead of NaN, in the forward and backward pass.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    if pattern is not None:
        weights = pattern(weights)
    dropped = dropout_weights(weights, dropout_p) if dropout_p > 0.0 else weights
    return torch.matmul(dropped, v), weights  # (B, H, Tq, Dh), (B, H, Tq, Tk)


def dropout_weights(weights: Tensor, p: float) -> Tensor:
    """Dropout on the attention weights of the explicit path: on the CPU the cheap mask of dropout.py, drawn like
    the weights (under vmap, seeds trained together, one mask per member); elsewhere PyTorch's kernel."""
    if weights.device.type != "cpu":
        return F.dropout(weights, p=p)
    keep, scale = cpu_dropout_keep_mask(weights.shape, p, like=weights)
    return weights * (keep.to(weights.dtype) * scale)


def sdpa_arguments(mask: Mask, bias: Tensor | None, dtype: torch.dtype) -> tuple[Tensor | None, bool]:
    """How `F.scaled_dot_product_attention` is called for this mask and bias: (attn_mask, is_causal).

    No tensor where the mask needs none: every key visible -> (None, False); the look-ahead mask alone ->
    (None, True). Otherwise the boolean mask; with a bias (ALiBi: (H, Tq, Tk)) a float mask, the bias with -inf
    where the mask forbids (a bias is a tensor, so such a call always takes one)."""
    form = mask_form(mask)
    if bias is None:
        if form is MaskForm.TENSOR:
            return mask_tensor(mask), False
        return None, form is MaskForm.CAUSAL
    bias = bias.to(dtype)
    if form is MaskForm.EVERY_KEY:
        return bias, False
    allowed = mask_tensor(mask)
    assert allowed is not None  # a mask that hides a key has a tensor
    return bias.masked_fill(~allowed, float("-inf")), False


def fused_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask = None,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """The same computation through PyTorch's fused kernel (fully masked rows also give zeros).

    Grouped k and v (KVH < H heads) go to the kernel as they are (`enable_gqa`) where it takes them
    (`takes_grouped_kv`), else repeated to H heads first: the same numbers either way."""
    attn_mask, is_causal = sdpa_arguments(mask, bias, q.dtype)
    grouped: dict[str, bool] = {}  # multi-head attention: the call exactly as without grouping
    if k.size(1) != q.size(1):
        if takes_grouped_kv(attn_mask, q):
            grouped = {"enable_gqa": True}  # k, v (B, KVH, Tk, Dh) as they are
        else:
            k, v = repeat_kv(k, q.size(1)), repeat_kv(v, q.size(1))  # (B, H, Tk, Dh)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **grouped
    )


def takes_grouped_kv(attn_mask: Tensor | None, q: Tensor) -> bool:
    """Whether `F.scaled_dot_product_attention` is given grouped k and v as they are (`enable_gqa=True`) rather than
    repeated to every query head. PyTorch's grouped-query support is its flash kernels' (and the unfused math one's,
    which would gain nothing): those run only without a mask tensor, and on a CUDA GPU only in fp16 or bf16
    (cuda_kernel). Where the memory-efficient kernel runs instead (a mask tensor, float32), `enable_gqa` would send
    the call to the math kernel, so k and v are repeated and the kernel stays the one cuda_kernel names. On the CPU
    the results are the same either way; with a mask tensor repeating is as fast or faster."""
    if attn_mask is not None:
        return False
    if q.device.type == "cuda":
        return cuda_kernel(None, q.dtype, q.size(-1)) == "flash"
    return q.device.type == "cpu"


def attend(q, k, v, mask: Mask = None, bias=None, dropout_p=0.0, need_weights=False, scale=None, pattern=None):
    """Use the fused kernel unless the caller wants to see the weights (or edit them: `pattern`)."""
    if need_weights or pattern is not None:
        return explicit_attention(q, k, v, mask_tensor(mask), bias, dropout_p, scale, pattern)
    return fused_attention(q, k, v, mask, bias, dropout_p, scale), None


# --- which kernel a fused call runs on a CUDA GPU ------------------------------------------------------------------

HALF_DTYPES = (torch.float16, torch.bfloat16)


def cuda_kernel(attn_mask: Tensor | None, dtype: torch.dtype, head_dim: int) -> str:
    """The kernel PyTorch's dispatcher picks for an `F.scaled_dot_product_attention` call on a CUDA GPU of Ampere
    or newer, in its default order (PyTorch's sdp_utils.cpp):
        flash             no mask tensor (none, or is_causal with Tq = Tk), fp16 or bf16, head size <= 256;
        memory-efficient  a mask tensor, or float32; head size a multiple of 8 (fp16, bf16) or 4 (float32);
        math              anything else (float64, say): the unfused computation.
    (Where PyTorch puts cuDNN attention first, on an H100 or H200 with a recent cuDNN, cuDNN takes the fp16 and
    bf16 calls it supports before either: docs/model.md.)"""
    if attn_mask is None and dtype in HALF_DTYPES and head_dim <= 256:
        return "flash"
    if dtype in (*HALF_DTYPES, torch.float32) and head_dim % (8 if dtype in HALF_DTYPES else 4) == 0:
        return "memory-efficient"
    return "math"


def sdpa_kernel_for(mask: Mask, bias: Tensor | None, dtype: torch.dtype, head_dim: int) -> str:
    """The kernel `fused_attention(q, k, v, mask, bias)` runs on a CUDA GPU for q, k, v of `dtype` (under
    bf16-mixed autocast, bf16) and head size `head_dim`: flash, memory-efficient or math (cuda_kernel). Grouped k
    and v do not change it: they are repeated to every query head wherever flash does not run (takes_grouped_kv)."""
    attn_mask, _ = sdpa_arguments(mask, bias, dtype)
    return cuda_kernel(attn_mask, dtype, head_dim)


@dataclass(frozen=True)
class AttentionBiases:
    """Which of an attention layer's projections add a learned bias to their output. Only W^O's bias is added
    straight to the residual stream; the others shift the queries, keys and values. A bias b_K on K adds q . b_K to
    every score of a query alike, which softmax ignores (no effect, no gradient), but only while the keys reach the
    scores as projected: absolute positions, ALiBi, T5's relative bias or none. Rotary positions turn b_K by each
    key's own position (Qwen2), and QK-norm normalises k + b_K as a whole: there it changes the attention."""

    qkv: bool  # W^Q, W^K and W^V
    out: bool  # W^O


# `model.attention_bias`: name -> which projections have a bias.
ATTENTION_BIASES: dict[str, AttentionBiases] = {
    "all": AttentionBiases(qkv=True, out=True),  # the paper (torch.nn.Transformer), GPT-2, BERT, Marian
    "qkv": AttentionBiases(qkv=True, out=False),  # Qwen2
    "none": AttentionBiases(qkv=False, out=False),  # Llama, Mistral, T5
}
EVERY_BIAS = ATTENTION_BIASES["all"]

# A norm's constructor, called with the number of features it normalises (QK-norm: Dh).
NormFactory = Callable[[int], nn.Module]


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, H*Dh) -> (B, H, T, Dh): each head works in its own Dh-dimensional subspace (H query heads, or the KVH
    key/value heads of grouped-query attention)."""
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, Dh) -> (B, T, H*Dh): concatenate the heads again."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W^O,  head_h = Attention(Q W^Q_h, K W^K_h, V W^V_h).

    Self-attention projects Q, K and V with one fused (D -> H·Dh + 2·KVH·Dh) matrix; cross-attention projects the
    decoder queries with W^Q (D -> H·Dh) and the encoder memory with one fused (D -> 2·KVH·Dh) matrix for K and V.
    (In the paper's multi-head attention, H·Dh = KVH·Dh = D: D -> 3D and D -> 2D.)
    Rotary and ALiBi positions act in self-attention only.

    Head size (`head_dim`, model.head_dim): each head works in Dh dimensions, D/H unless set. With Dh set apart from
    D/H (T5: D 512, H 6, Dh 64) the heads side by side are H Dh wide: W^Q maps D -> H Dh, W^O maps H Dh -> D back
    to the residual stream, and the scores are scaled by 1/sqrt(Dh), the head's own size.

    Biases (`biases`, model.attention_bias): W^Q, W^K, W^V (one switch: the fused matrices hold them side by side)
    and W^O each add a bias or not (ATTENTION_BIASES).

    QK-norm (`qk_norm`, model.qk_norm; Henry et al. 2020, Dehghani et al. 2023; Qwen3's q_norm and k_norm): each
    head's query and key pass a norm over their Dh features right after the projection, before rotary positions, so
    no score can grow with the size of q and k (what makes large models' attention logits diverge). One norm for the
    queries and one for the keys, each with one gain of Dh entries shared by every head (OLMo 2 instead normalises
    the whole H Dh projection: not built). Self- and cross-attention alike; the cache holds the normalised keys.

    Grouped-query attention (Ainslie et al. 2023; `kv_heads`, model.kv_heads): H query heads but only KVH key/value
    heads, KVH dividing H. The query heads form KVH KV groups of H/KVH consecutive heads, and every head of a group
    attends with the group's one key and value: head h reads KV head h // (H/KVH). K and V then take KVH * Dh
    columns each instead of D, so the fused matrices are D -> D + 2 KVH Dh (self) and D -> 2 KVH Dh (cross), and
    the KV cache holds KVH heads: KVH/H of multi-head attention's memory, the point of the design (decoding reads
    the whole cache at every step). KVH = 1 is multi-query attention (Shazeer 2019); KVH = H (kv_heads None, the
    default) is multi-head attention, every shape exactly as without the option.

    Per QUERY head (H of them): q, z, pattern, the returned weights, the head gates below, and so every head
    analysis (ablate.heads, importance, pruning, the attention maps). Per KV GROUP (KVH of them): k and v, at their
    points and in the cache; a change to one key or value head reaches every query head of its group.

    Head gates (Michel et al. 2019, "Are Sixteen Heads Really Better than One?", eq. 2): with `head_gate` set to a
    (H,) tensor g, head h's output is scaled by g_h before W^O (1 = kept, 0 = ablated), and with `head_fill` set
    to (H, Dh) an ablated head outputs that instead (mean ablation: its mean output over reference data):
        head_h' = g_h head_h + (1 - g_h) fill_h
    A float gate that requires grad makes d loss / d g_h the head's importance. A (B, H) gate and a (B, H, Dh)
    fill give every batch row its own mask: several ablations scored in one batch (src/analysis). Neither is a
    parameter or in the state dict; unset (None, the default), the forward pass is unchanged. See head_mask.py.

    The heads' outputs pass through the activation point z, and the attention weights through pattern (points.py);
    the gates are the first edit on z while they are set. An edit on pattern makes the attention take the explicit
    path (the fused kernel never forms the weights).
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        dropout: float,
        is_self_attention: bool,
        kv_heads: int | None = None,
        head_dim: int | None = None,
        biases: AttentionBiases = EVERY_BIAS,
        qk_norm: NormFactory | None = None,
    ):
        super().__init__()
        if head_dim is None and d_model % heads != 0:
            raise ValueError(f"heads={heads} must divide d_model={d_model} (or give head_dim)")
        kv_heads = heads if kv_heads is None else kv_heads
        if kv_heads < 1 or heads % kv_heads != 0:
            raise ValueError(f"kv_heads={kv_heads} must divide heads={heads}")
        self.heads = heads
        self.kv_heads = kv_heads  # KVH: the KV groups, each serving heads // kv_heads query heads
        self.head_dim = d_model // heads if head_dim is None else head_dim  # Dh, the same for query and KV heads
        self.q_dim = heads * self.head_dim  # the columns Q takes, and W^O's input: D unless head_dim says otherwise
        self.kv_dim = kv_heads * self.head_dim  # the columns K takes (and V): q_dim in multi-head attention
        self.dropout = dropout
        self.is_self_attention = is_self_attention
        if is_self_attention:  # Q | K | V, 3D in multi-head attention
            self.qkv_proj = FusedLinear(d_model, (self.q_dim, self.kv_dim, self.kv_dim), bias=biases.qkv)
        else:
            self.q_proj = nn.Linear(d_model, self.q_dim, bias=biases.qkv)
            self.kv_proj = FusedLinear(d_model, (self.kv_dim, self.kv_dim), bias=biases.qkv)  # K | V of the memory
        # QK-norm: one norm over each query head's Dh features, one over each key head's (None: no QK-norm)
        self.q_norm = qk_norm(self.head_dim) if qk_norm is not None else None
        self.k_norm = qk_norm(self.head_dim) if qk_norm is not None else None
        self.out_proj = nn.Linear(self.q_dim, d_model, bias=biases.out)
        self.z_point = ActivationPoint()  # each query head's output, (B, H, Tq, Dh); named by the layer (points.py)
        self.q_point = ActivationPoint()  # the query heads' queries, (B, H, T, Dh), after rotary positions
        self.k_point = ActivationPoint()  # the KV groups' keys and values, (B, KVH, T, Dh), keys after rotary
        self.v_point = ActivationPoint()
        self.pattern_point = ActivationPoint()  # each query head's attention weights, (B, H, Tq, Tk)
        self._head_gate: Tensor | None = None
        self.head_fill: Tensor | None = None  # (H, Dh) or (B, H, Dh): what an ablated head outputs; None = zeros
        # Set by StackedModel (seeds trained together): under vmap PyTorch's fused kernel cannot draw a dropout
        # mask for each member, so with attention dropout the explicit path (which can) is used instead.
        self.per_member = False

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Mask = None,
        positional: PositionalScheme | None = None,
        cache: dict | None = None,
        start: int = 0,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, Tq, D) queries; memory (B, Tk, D) for cross-attention; mask: a SiteMask, a boolean tensor
        (B|1, 1, Tq|1, Tk) with True = may attend, or None (every key).

        cache: a dict kept by the caller across decoding steps. Self-attention appends this step's
        keys/values to it; cross-attention projects the memory once and reuses it. Either way it holds the
        KV groups' keys and values, cache["k"] and cache["v"] (B, KVH, T, Dh) each.
        start: absolute position of x's first token (for rotary/ALiBi and cached decoding).
        Returns the output (B, Tq, D) and, if need_weights, the weights (B, H, Tq, Tk), one map per query head.
        """
        if self.is_self_attention:
            q, k, v = self.qkv_proj.split_outputs(x)  # (B, T, H*Dh), (B, T, KVH*Dh), (B, T, KVH*Dh)
            q, k, v = split_heads(q, self.heads), split_heads(k, self.kv_heads), split_heads(v, self.kv_heads)
            # q (B, H, T, Dh); k, v (B, KVH, T, Dh)
            q, k = self.normalise_query(q), self.normalise_key(k)  # QK-norm, if any: before the rotation
            if positional is not None:
                q, k = positional.rotate(q, k, start)  # by position only: any number of heads
            q, k, v = self.q_point(q), self.k_point(k), self.v_point(v)  # this step's, before any cache
            if cache is not None:
                if "k" in cache:
                    k = torch.cat([cache["k"], k], dim=2)  # (B, KVH, start + T, Dh)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        else:
            q = self.q_point(self.normalise_query(split_heads(self.q_proj(x), self.heads)))  # (B, H, Tq, Dh)
            if cache is not None and "k" in cache:
                k, v = cache["k"], cache["v"]
            else:
                assert memory is not None  # a cross-attention's keys and values are the encoder's output's
                k, v = self.kv_proj.split_outputs(memory)  # 2 x (B, Tk, KVH*Dh)
                k, v = split_heads(k, self.kv_heads), split_heads(v, self.kv_heads)  # 2 x (B, KVH, Tk, Dh)
                k, v = self.k_point(self.normalise_key(k)), self.v_point(v)
                if cache is not None:
                    cache["k"], cache["v"] = k, v

        bias = self.bias(positional, q.size(2), k.size(2), start)  # (H, Tq, Tk) or None
        dropout_p = self.dropout if self.training else 0.0
        pattern = self.pattern_point if self.pattern_point.edits else None  # read or written: the explicit path
        explicit = need_weights or pattern is not None or (self.per_member and dropout_p > 0)
        # each query head attends with its KV group's keys and values (repeat_kv, or the kernel's own grouping)
        out, weights = attend(q, k, v, mask, bias, dropout_p, explicit, pattern=pattern)  # (B, H, Tq, Dh)
        weights = weights if need_weights else None
        out = self.z_point(out)  # the head gates, if set, and any other edit
        return self.out_proj(merge_heads(out)), weights  # (B, Tq, H*Dh) -> (B, Tq, D)

    def normalise_query(self, q: Tensor) -> Tensor:
        """QK-norm of the queries: q (B, H, T, Dh), each head's vector normalised over its Dh features with the one
        gain all heads share; q as it is without QK-norm."""
        return q if self.q_norm is None else self.q_norm(q)

    def normalise_key(self, k: Tensor) -> Tensor:
        """QK-norm of the keys: k (B, KVH, T, Dh), as normalise_query with the keys' own norm."""
        return k if self.k_norm is None else self.k_norm(k)

    @property
    def head_gate(self) -> Tensor | None:
        """(H,) or (B, H): per-head scale before W^O; None = every head as it is (the class's docstring)."""
        return self._head_gate

    @head_gate.setter
    def head_gate(self, gate: Tensor | None) -> None:
        # The gates act as the first edit of the z point while they are set (one mechanism: points.py).
        self._head_gate = gate
        edits = self.z_point.edits
        if gate is None and self.gate_heads in edits:
            edits.remove(self.gate_heads)
        elif gate is not None and self.gate_heads not in edits:
            edits.insert(0, self.gate_heads)

    def bias(self, positional: PositionalScheme | None, tq: int, tk: int, start: int = 0) -> Tensor | None:
        """The positional bias added to the scores (ALiBi), (H, Tq, Tk); self-attention only."""
        if self.is_self_attention and positional is not None:
            return positional.attention_bias(tq, tk, start)
        return None

    def cuda_kernel(self, mask: Mask, positional: PositionalScheme | None, tq: int, tk: int, dtype) -> str:
        """The kernel a forward pass with this mask runs on a CUDA GPU (sdpa_kernel_for), with no weights asked
        for; "explicit" where the attention computes them anyway (an edited pattern, or a stacked model's
        dropout: `per_member`)."""
        if self.pattern_point.edits or (self.per_member and self.training and self.dropout > 0):
            return "explicit"
        return sdpa_kernel_for(mask, self.bias(positional, tq, tk), dtype, self.head_dim)

    def kv_group(self, head: int) -> int:
        """The KV group (key/value head) query head `head` reads: head // (H/KVH), Llama's contiguous grouping."""
        return head // (self.heads // self.kv_heads)

    def gate_heads(self, out: Tensor) -> Tensor:
        """out (B, H, Tq, Dh) -> each head scaled by its gate, the rest filled from `head_fill` (see the class)."""
        assert self.head_gate is not None
        rows = self.head_gate.size(0) if self.head_gate.dim() == 2 else 1  # one mask per batch row, or one for all
        # .to(out): the gates follow the model's device and dtype (they are not buffers, so .to() never moved them)
        gate = self.head_gate.to(out).view(rows, self.heads, 1, 1)  # (1|B, H, 1, 1)
        if self.head_fill is None:
            return out * gate
        fill_rows = self.head_fill.size(0) if self.head_fill.dim() == 3 else 1  # one fill for all rows, or one each
        fill = self.head_fill.to(out).view(fill_rows, self.heads, 1, -1)  # (1|B, H, 1, Dh)
        return out * gate + (1 - gate) * fill
