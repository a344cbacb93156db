"""The logit lens and direct logit attribution: a model's residual stream read as predictions.

Logit lens (nostalgebraist 2020). The residual stream of the stack the output reads (a sequence model's decoder, a
classifier's encoder): what it receives (the embeddings) and its stream after each layer (the point resid_post of
the layer's last sublayer, src/model/points.py), each read through the stack's final norm (if it has one) and the
unembedding, or a classifier's pooling and head, as if the layers above it were skipped. Per row: the loss against
the targets, and how often its top-1 token (class) is the model's own top-1. At the last layer it is the model's
own output.

Direct logit attribution (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"). In a pre-LN stack
the residual stream the final norm reads is a sum: the embeddings plus every sublayer's output. With the final
norm's scale frozen at the value the whole stream gives it, the norm is linear, and so each component's direct
contribution to a token's logit is its share of that sum read through the norm and the unembedding:

    logit(token) = sum over components c of  W_U[token] . Norm_frozen(c)  +  W_U[token] . beta + b_U[token]

A classifier whose pooling is linear (the mean) reads the pooled sum the same way through its head's row of the
label. The components are the embeddings, each head (its z through its own columns of W^O), each attention site's
output bias, and each FFN's output; their contributions sum exactly to the logit (tests). Refused where the logit is
no such sum: in a post-LN stack every sublayer's output is normalised again by the sublayers after it, and BERT's
pooler applies tanh.

Both read the model through its activation points, in eval mode, under no_grad.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.model.config import ARCHITECTURES
from src.model.names import head_name, layer_name
from src.model.points import recorded
from src.training.inference import IGNORE_INDEX, eval_mode, forward_batch, scored_target


@dataclass
class LensLayer:
    layer: int | None  # the layer of the output stack whose output is read (counted from 0); None: the embeddings
    loss: float  # mean cross-entropy against the targets, scored positions only
    top1_agreement: float  # share of scored positions whose top-1 token (or class) is the model's own

    @property
    def label(self) -> str:
        """The row's name in every table, file and figure: `embed` or the layer's number."""
        return "embed" if self.layer is None else str(self.layer)


def stack_name(model: nn.Module) -> str:
    """The stack whose last residual stream the model's output reads: the last of its architecture's stacks, which
    the data flow through last (the decoder of a sequence model, the encoder of a classifier)."""
    return ARCHITECTURES[model.cfg.arch].stacks[-1]


def output_stack(model: nn.Module) -> nn.Module:
    """That stack's module: the model's attribute of its name."""
    return getattr(model, stack_name(model))


def classifies(model: nn.Module) -> bool:
    """The model's output is a classifier's (its pooling and head, logits (B, C)), not the unembedding W_U's."""
    return ARCHITECTURES[model.cfg.arch].classifies


def layer_outputs(model: nn.Module) -> list[str]:
    """The points holding the output stack's residual stream: what it receives (the embeddings), then its stream
    after each layer (resid_post of the layer's last sublayer, src/model/points.py)."""
    layers = output_stack(model).layers
    outputs = [f"resid_post@{layer.sublayers()[-1][0]}:{index}" for index, layer in enumerate(layers)]
    return [f"embed@{stack_name(model)}", *outputs]


def read_out(model: nn.Module, batch: dict[str, Tensor], stream: Tensor) -> Tensor:
    """A residual stream (B, T, D) of the output stack read as the model reads its last one: the stack's final norm,
    then the unembedding W_U (B, T, V); a classifier's pooling and head instead (B, C)."""
    final_norm = output_stack(model).final_norm
    normed = final_norm(stream) if final_norm is not None else stream
    if classifies(model):
        return model.head(model.pooling(normed, batch["src"] != model.cfg.pad_id))  # (B, C)
    return model.out_proj(normed)  # (B, T, V)


def _scored(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(N, V) logits and (N,) targets of any output: (B, T, V) with (B, T), or a classifier's (B, C) with (B,)."""
    return logits.reshape(-1, logits.size(-1)), target.reshape(-1)


@torch.no_grad()
def logit_lens(model: nn.Module, kind: str, batch: dict[str, Tensor]) -> list[LensLayer]:
    """The embeddings and each layer's residual stream read as the output (the module's docstring)."""
    names = layer_outputs(model)
    with eval_mode(model):  # the readout too: a classifier's head has a dropout
        with recorded(model, names) as seen:
            final = forward_batch(model, kind, batch).logits  # (B, T, V) or (B, C)
        final, target = _scored(final, scored_target(model, kind, batch))
        scored = target != IGNORE_INDEX
        own = final.argmax(-1)[scored]
        layers = []
        for index, name in enumerate(names):
            logits, _ = _scored(read_out(model, batch, seen[name]), target)
            loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
            agreement = (logits.argmax(-1)[scored] == own).float().mean()
            layers.append(LensLayer(index - 1 if index else None, float(loss), float(agreement)))
    return layers


def attribution_refused(model: nn.Module) -> str | None:
    """Why the target's logit is no sum of the components' direct contributions in this model, None when it is."""
    if not model.cfg.pre_norm:
        return (
            "direct logit attribution needs a pre-LN model (one trained with model.norm_position=pre): in a post-LN "
            "stack each "
            "sublayer's output is normalised again by the sublayers after it, so the logit is no sum of them"
        )
    if classifies(model) and not getattr(model.pooling, "linear", False):
        return (
            "direct logit attribution needs a linear pooling (model.pooling=mean): this classifier's pooler is not "
            "linear (BERT's applies tanh), so its logits are no sum of the components' contributions"
        )
    return None


@torch.no_grad()
def direct_logit_attribution(model: nn.Module, kind: str, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each component's direct contribution to the logit of the target (token or class), by name: the head
    `decoder_self:1:2`, the FFN `decoder_ffn:1`, `<site>:<layer> bias` (W^O's bias), `embed`, and the constants of
    the final norm's shift and the output's bias as `norm and output bias`; (B, T) each for a sequence model (0 where
    the target is not scored), (B,) for a classifier. They sum to the target's logit."""
    refused = attribution_refused(model)
    if refused:
        raise ValueError(refused)
    stack = output_stack(model)
    final_norm = stack.final_norm
    every = [(site, index, block, attention) for index, layer in enumerate(stack.layers)
             for site, block, attention in layer.sublayers()]  # fmt: skip
    blocks = [(site, index, attention) for site, index, block, attention in every if not block.removed]
    embed, last = layer_outputs(model)[0], layer_outputs(model)[-1]
    names = [embed, last]
    names += [f"{'z' if attention is not None else 'out'}@{site}:{index}" for site, index, attention in blocks]
    with eval_mode(model), recorded(model, names) as seen:
        logits = forward_batch(model, kind, batch).logits  # (B, T, V) or (B, C)
    target = scored_target(model, kind, batch)  # (B, T) or (B,)
    token = target.clamp(min=0)  # unscored positions read token 0, then zeroed below
    stream = seen[last]  # (B, T, D): what the final norm reads
    if classifies(model):
        w_u, b_u = model.head[-1].weight[token], model.head[-1].bias  # (B, D): each example's class row
        real = batch["src"] != model.cfg.pad_id

        def read(part: Tensor) -> Tensor:  # the pooling is linear (attribution_refused): (B, S, D) -> (B, D)
            return model.pooling(part, real)
    else:
        w_u, b_u = model.out_proj.weight[token], model.out_proj.bias  # (B, T, D): each position's target row of W_U

        def read(part: Tensor) -> Tensor:  # (B, T, D) as the output reads it, before W_U
            return part

    def direct(part: Tensor) -> Tensor:  # (B, T, D) -> (B, T) or (B,): through the frozen norm, pooling, W_U[target]
        normed = final_norm.as_linear(stream, part) if final_norm is not None else part
        return (read(normed) * w_u).sum(-1)

    found: dict[str, Tensor] = {"embed": direct(seen[embed])}
    for site, index, attention in blocks:
        if attention is None:
            found[layer_name(site, index)] = direct(seen[f"out@{site}:{index}"])
            continue
        z = seen[f"z@{site}:{index}"]  # (B, H, T, Dh)
        heads, dh = z.size(1), z.size(3)
        w_o = attention.out_proj.weight.view(-1, heads, dh)  # (D, H, Dh): head h's columns of W^O
        for head in range(heads):
            found[head_name(site, index, head)] = direct(z[:, head] @ w_o[:, head].T)  # (B, T, D) -> (B, T)
        if attention.out_proj.bias is not None:
            found[f"{layer_name(site, index)} bias"] = direct(attention.out_proj.bias.expand_as(stream))
    for site, index, block, attention in every:  # an ablated sublayer adds nothing to the stream: listed as 0
        if not block.removed:
            continue
        names = (
            [layer_name(site, index)]
            if attention is None
            else [head_name(site, index, h) for h in range(attention.heads)]
        )
        found |= {name: torch.zeros_like(found["embed"]) for name in names}
    constant = torch.zeros_like(target, dtype=logits.dtype)
    if final_norm is not None and getattr(final_norm, "bias", None) is not None:
        constant = constant + (read(final_norm.bias.expand_as(stream)) * w_u).sum(-1)
    if b_u is not None:
        constant = constant + b_u[token]
    found["norm and output bias"] = constant
    scored = (target != IGNORE_INDEX).to(logits.dtype)
    return {name: value * scored for name, value in found.items()}


@dataclass
class LensAnalysis:
    """The logit lens and direct logit attribution over a split's examples (analysis=lens of src.analyze)."""

    split: str
    stack: str  # the stack read: the decoder, or a classifier's encoder
    examples: int
    positions: int  # scored targets (positions, or a classifier's examples) the means are over
    layers: list[LensLayer]  # the embeddings, then each layer: loss and top-1 agreement, means over the scored targets
    loss: float  # the model's own loss over the same positions
    target_logit: float  # the mean logit of the target (token or class): what the attributions below sum to
    attribution: dict[str, float]  # component -> its mean direct contribution to the target's logit
    attribution_undefined: str | None = None  # why there is none (attribution_refused)


def analyze_lens(model: nn.Module, kind: str, batches, split: str) -> LensAnalysis:
    """logit_lens and direct_logit_attribution over `batches`, weighted by each batch's scored positions."""
    examples = positions = 0
    rows: list[int | None] = [None, *range(len(output_stack(model).layers))]  # the embeddings, then each layer
    sums = torch.zeros(len(rows), 2, dtype=torch.float64)  # loss, agreement, per row
    loss_sum = logit_sum = 0.0
    attribution: dict[str, float] = {}
    undefined = attribution_refused(model)
    for batch in batches:
        target = scored_target(model, kind, batch)
        count = int((target != IGNORE_INDEX).sum())
        if count == 0:
            continue
        examples += target.size(0)
        positions += count
        for row, layer in enumerate(logit_lens(model, kind, batch)):
            sums[row, 0] += layer.loss * count
            sums[row, 1] += layer.top1_agreement * count
        with torch.no_grad(), eval_mode(model):
            logits = forward_batch(model, kind, batch).logits  # (B, T, V) or (B, C)
        flat, flat_target = _scored(logits, target)
        scored = flat_target != IGNORE_INDEX
        loss_sum += float(F.cross_entropy(flat, flat_target, ignore_index=IGNORE_INDEX)) * count
        logit_sum += float(flat.gather(-1, flat_target.clamp(min=0).unsqueeze(-1)).squeeze(-1)[scored].sum())
        if undefined is None:
            for name, value in direct_logit_attribution(model, kind, batch).items():
                attribution[name] = attribution.get(name, 0.0) + float(value.sum())
    if positions == 0:
        raise ValueError(f"the {split} split has no scored positions to read")
    means = (sums / positions).tolist()
    layers = [LensLayer(row, loss, agreement) for row, (loss, agreement) in zip(rows, means, strict=True)]
    return LensAnalysis(
        split=split,
        stack=stack_name(model),
        examples=examples,
        positions=positions,
        layers=layers,
        loss=loss_sum / positions,
        target_logit=logit_sum / positions,
        attribution={} if undefined else {name: value / positions for name, value in attribution.items()},
        attribution_undefined=undefined,
    )
