"""Seeds trained together: M models of one architecture held as one stacked model.

An ablation study is many small models (every configuration times several seeds), and one small model leaves most
of a machine idle. Models that differ only in their seed have the same parameter shapes, so their parameters can
be stacked along a new leading *member* dimension and the M forward passes run as one batched computation:

    members' parameters  W_m (out, in), m = 0..M-1   ->   one tensor W (M, out, in)
    output_m = f(W_m; batch_m)                       ->   vmap(f)(W, batch)        batch leaves (M, B, T)

`torch.func.vmap` runs the model's own code (src/model, unchanged) with every tensor carrying the member
dimension, and `torch.func.functional_call` swaps the stacked parameters into a template copy of the model for that
call. Nothing in the model knows it is stacked, so there is one way to read it.

Why the members stay independent: no operation of the model mixes examples across the batch, so under vmap none
mixes members either; the loss summed over members has, for each member's parameters, exactly that member's
gradient; Adam and AdamW update every element on its own. What is per member and must be done per member here:
gradient clipping by norm (`clip_grad_norm_per_member`) and anything that stops a member (divergence, early
stopping: `freeze`).

Attention: PyTorch's fused attention (`F.scaled_dot_product_attention`) has no rule for vmap on every device (on
the CPU vmap would run it member by member), yet M members' attention is plainly one call with M*B sequences. So
while `call` runs, that function is swapped for `member_attention`, an operator of its own whose vmap rule folds the
member dimension into the batch: (M, B, H, T, Dh) -> (M*B, H, T, Dh), one fused call, the kernel a solo run gets
(with attention dropout, the model's explicit path instead: under vmap the fused kernel cannot draw each member's
masks).
Autograd records that call as it records a solo run's. The batch is marked as padded when any member's is (the
masks would otherwise look at the tokens to find out, which vmap cannot do).

Dropout: under vmap each member draws its own masks (`randomness="different"`), from the one generator of the
process. The masks are therefore independent across members and have the configured rate, but they are not the
masks the same seed draws when trained alone: a solo run draws them from its own generator, for its own batch
shapes, while a stacked member's batch is padded to the group's longest sequence and the draws of all members come
from one stream. With dropout 0 a member equals its solo run (tests/model/test_stacked.py).

Imported only when seeds are stacked (hydra/launcher=stacked).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.overrides import TorchFunctionMode


class _Apply(nn.Module):
    """`fn(model, *args)` as a module's forward, so that functional_call can run any function of the model (the
    training step's forward and loss, greedy decoding) with the stacked parameters swapped in."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.model, *args)


class StackedModel(nn.Module):
    """M models of one architecture (the members), their parameters stacked: every parameter and buffer of a
    member, shape S, is one (M, *S) tensor here. `members`: the models as each seed built them (their
    initialisations are kept; the models themselves are not kept)."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 1:
            raise ValueError("a stacked model needs at least one member")
        self.size = len(members)
        params, buffers = stack_module_state(list(members))  # name -> (M, *shape)
        # nn.ParameterDict keys may not contain dots: the member's names are kept in a list beside them
        self.param_names = list(params)
        self.stacked_params = nn.ParameterList(nn.Parameter(p) for p in params.values())
        self.buffer_names = list(buffers)
        for index, value in enumerate(buffers.values()):
            self.register_buffer(f"stacked_buffer_{index}", value)
        # A member's state_dict keys, each with the stacked tensor it reads: tied weights (an output projection
        # that is the embedding) are one stacked tensor under two keys, as in the member itself.
        first = members[0]
        owner = {id(t): name for name, t in [*first.named_parameters(), *first.named_buffers()]}
        self.state_keys = {key: owner[id(t)] for key, t in first.state_dict(keep_vars=True).items()}
        # Every name the template's forward reads, tied aliases included, with the stacked tensor behind it: all
        # are swapped in explicitly (moving the template to the meta device unties its tied weights).
        every = [*first.named_parameters(remove_duplicate=False), *first.named_buffers(remove_duplicate=False)]
        self.call_names = {name: owner[id(t)] for name, t in every}
        # The template: one member's module tree without storage (meta tensors), called with the stacked
        # parameters swapped in. Kept out of the module tree so that .to(device) and state_dict() skip it.
        template = copy.deepcopy(members[0]).to("meta")
        for module in template.modules():
            # Modules that take a faster path unfit for vmap (an in-place random draw in Dropout, a data-dependent
            # shape in the feed-forward networks) declare `per_member`, and take their plain path when it is set.
            if hasattr(module, "per_member"):
                module.per_member = True  # type: ignore[assignment]  # Dropout, feed-forward, attention dropout
        self._apply_template = [_Apply(template)]

    @property
    def template(self) -> nn.Module:
        """The members' shared module tree (its config, its methods); its own tensors are meta tensors."""
        return self._apply_template[0].model

    def stacked_buffers(self) -> list[Tensor]:
        return [getattr(self, f"stacked_buffer_{index}") for index in range(len(self.buffer_names))]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """vmap over the members of `fn(model, *args)`: `args` are pytrees (dicts of tensors) whose tensors have the
        member dimension first, (M, ...); so does every tensor of the result. A forward pass in `fn` must say
        whether its tokens hold padding (forward_batch's batch["padded"]): under vmap a mask cannot look."""
        names = [*self.param_names, *self.buffer_names]
        apply = self._apply_template[0]

        def one_member(tensors: list[Tensor], *member_args: Any) -> Any:
            own = dict(zip(names, tensors))  # this member's slice of every stacked tensor
            swapped = {f"model.{name}": own[stacked] for name, stacked in self.call_names.items()}
            return functional_call(apply, swapped, (fn, *member_args), tie_weights=False, strict=True)

        tensors = [*self.stacked_params, *self.stacked_buffers()]
        with AttentionOfAllMembersAtOnce():
            return vmap(one_member, randomness="different")(tensors, *args)

    # --- one member at a time ---------------------------------------------------------------------------------

    def _stacked(self) -> dict[str, Tensor]:
        """name -> stacked tensor, parameters and buffers."""
        return dict(zip((*self.param_names, *self.buffer_names), (*self.stacked_params, *self.stacked_buffers())))

    def member_state_dict(self, member: int) -> dict[str, Tensor]:
        """Member `member`'s state_dict, as its own model would give it (the same keys, copies of its tensors)."""
        stacked = self._stacked()
        return {key: stacked[name].detach()[member].clone() for key, name in self.state_keys.items()}

    def load_member(self, member: int, model: nn.Module) -> nn.Module:
        """Copy member `member`'s current weights into `model` (a model of the same architecture); returns it."""
        model.load_state_dict(self.member_state_dict(member))
        return model

    @torch.no_grad()
    def set_member(self, member: int, state: Mapping[str, Tensor]) -> None:
        """Write a member's weights (a state_dict of one model, as member_state_dict gives) into the stack."""
        stacked = self._stacked()
        for key, name in self.state_keys.items():
            stacked[name][member].copy_(state[key])


# --- attention: the members' calls as one fused call ----------------------------------------------------------


@torch.library.custom_op("transformer_ablations::member_attention", mutates_args=())
def member_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None,
    dropout_p: float,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
) -> Tensor:
    """F.scaled_dot_product_attention, as an operator of its own so that vmap can be told how to batch it
    (`fold_members_into_batch`). Called only under vmap, by AttentionOfAllMembersAtOnce."""
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa
    )


@member_attention.register_fake
def _(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa):
    return q.new_empty((*q.shape[:-1], v.shape[-1]))  # (B, H, Tq, Dv)


def fold_members_into_batch(info, in_dims, q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa):
    """member_attention's vmap rule: each member's q, k, v are (B, H, T, Dh) and its mask broadcasts to
    (B, H, Tq, Tk); with the members first, M such calls are one call on M*B sequences. Autograd, which sits below
    vmap here, records that one call and its fused backward."""
    members = info.batch_size
    q_dim, k_dim, v_dim, mask_dim = in_dims[:4]
    batch = q.movedim(q_dim, 0).size(1) if q_dim is not None else q.size(0)  # B: q's first dimension but the members'

    def folded(t: Tensor, dim: int | None) -> Tensor:  # (M, B, ...) -> (M*B, ...)
        t = t.expand(members, *t.shape) if dim is None else t.movedim(dim, 0)  # members first
        t = t.reshape(members, *([1] * (5 - t.dim())), *t.shape[1:])  # a member's mask: 4 dimensions
        return t.expand(members, batch, *t.shape[2:]).flatten(0, 1)  # a mask shared by the batch: B copies

    # A mask of each member's own, or one of B rows shared by all, is folded as q is: (M*B, 1|H, Tq|1, Tk). One
    # with no batch dimension (the look-ahead mask alone, (1, 1, Tq, Tk)) broadcasts over M*B sequences as over B.
    if attn_mask is not None and (mask_dim is not None or (attn_mask.dim() == 4 and attn_mask.size(0) != 1)):
        attn_mask = folded(attn_mask, mask_dim)
    out = F.scaled_dot_product_attention(
        folded(q, q_dim),
        folded(k, k_dim),
        folded(v, v_dim),
        attn_mask=attn_mask,
        dropout_p=dropout_p,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
    )  # (M*B, H, Tq, Dv)
    return out.unflatten(0, (members, batch)), 0


member_attention.register_vmap(fold_members_into_batch)

SDPA_ARGUMENTS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
SDPA_DEFAULTS = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}


class AttentionOfAllMembersAtOnce(TorchFunctionMode):
    """While active, every F.scaled_dot_product_attention call goes to member_attention (the same computation,
    batched over the members by fold_members_into_batch). The model's code is unchanged: it calls PyTorch's
    function as a solo run does."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        given = {**SDPA_DEFAULTS, **dict(zip(SDPA_ARGUMENTS, args)), **kwargs}
        return member_attention(
            given["query"],
            given["key"],
            given["value"],
            given["attn_mask"],
            float(given["dropout_p"]),
            bool(given["is_causal"]),
            given["scale"],
            bool(given["enable_gqa"]),
        )


@torch.no_grad()
def clip_grad_norm_per_member(params: Sequence[Tensor], max_norm: float, eps: float = 1e-6) -> Tensor:
    """torch.nn.utils.clip_grad_norm_ for each member on its own: member m's gradients are scaled by
    min(1, max_norm / (||g_m|| + eps)), where ||g_m|| is the 2-norm over all of member m's gradients (not the whole
    stack's, which would let one member's large gradient shrink the others'). Returns the (M,) norms before
    clipping. `params`: stacked parameters, member dimension first."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    squares = torch.stack([g.flatten(1).pow(2).sum(dim=1) for g in grads])  # (P, M)
    norms = squares.sum(dim=0).sqrt()  # (M,)
    scale = (max_norm / (norms + eps)).clamp(max=1.0)  # (M,)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return norms
