"""The logit lens and direct logit attribution: a sequence model's residual stream read as predictions.

Logit lens (nostalgebraist 2020). The residual stream after each decoder layer (the point resid_post of the layer's
last sublayer, src/model/points.py), read through the stack's final norm (if it has one) and the unembedding as if
the layers above it were skipped. Per layer: the loss against the targets, and how often its top-1 token is the
model's own top-1. At the last layer it is the model's own output.

Direct logit attribution (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"). In a pre-LN stack
the residual stream the final norm reads is a sum: the embeddings plus every sublayer's output. With the final
norm's scale frozen at the value the whole stream gives it, the norm is linear, and so each component's direct
contribution to a token's logit is its share of that sum read through the norm and the unembedding:

    logit(token) = sum over components c of  W_U[token] . Norm_frozen(c)  +  W_U[token] . beta + b_U[token]

The components are the embeddings, each head (its z through its own columns of W^O), each attention site's output
bias, and each FFN's output; their contributions sum exactly to the logit (tests). In a post-LN stack every
sublayer's output is normalised again by the sublayers after it, so the logit is no such sum: refused.

Both read the model through its activation points, in eval mode, under no_grad.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.model.names import head_name, layer_name
from src.model.points import recorded
from src.training.inference import IGNORE_INDEX, eval_mode, forward_batch, scored_target

SEQUENCE_KINDS = ("seq2seq", "lm")  # the kinds whose output is a token per position (the decoder stack's)


@dataclass
class LensLayer:
    layer: int  # the decoder layer whose output is read (counted from 0)
    loss: float  # mean cross-entropy against the targets, scored positions only
    top1_agreement: float  # share of scored positions whose top-1 token is the model's own


def decoder_layer_outputs(model: nn.Module) -> list[str]:
    """The points holding the residual stream after each decoder layer: resid_post of its last sublayer."""
    return [f"resid_post@{layer.sublayers()[-1][0]}:{index}" for index, layer in enumerate(model.decoder.layers)]


def unembed(model: nn.Module, stream: Tensor) -> Tensor:
    """A decoder residual stream (B, T, D) read as the model reads its last one: final norm, then W_U."""
    final_norm = model.decoder.final_norm
    return model.out_proj(final_norm(stream) if final_norm is not None else stream)  # (B, T, V)


def check_sequence_model(kind: str) -> None:
    if kind not in SEQUENCE_KINDS:
        raise ValueError(f"the logit lens reads a decoder's predictions: a {kind} model has none")


@torch.no_grad()
def logit_lens(model: nn.Module, kind: str, batch: dict[str, Tensor]) -> list[LensLayer]:
    """Each decoder layer's residual stream read through the unembedding (the module's docstring)."""
    check_sequence_model(kind)
    names = decoder_layer_outputs(model)
    with eval_mode(model), recorded(model, names) as seen:
        final = forward_batch(model, kind, batch).logits  # (B, T, V)
    target = scored_target(model, kind, batch)  # (B, T)
    scored = target != IGNORE_INDEX
    own = final.argmax(-1)[scored]
    layers = []
    for index, name in enumerate(names):
        logits = unembed(model, seen[name])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX)
        agreement = (logits.argmax(-1)[scored] == own).float().mean()
        layers.append(LensLayer(index, float(loss), float(agreement)))
    return layers


@torch.no_grad()
def direct_logit_attribution(model: nn.Module, kind: str, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each component's direct contribution to the logit of the target token, (B, T) per component, by name: the
    head `decoder_self:1:2`, the FFN `decoder_ffn:1`, `<site>:<layer> bias` (W^O's bias), `embed`, and the
    constants of the final norm's shift and the unembedding's bias as `norm and output bias`. They sum to the
    target's logit (unscored positions included, 0 where the target is not scored)."""
    check_sequence_model(kind)
    final_norm = model.decoder.final_norm
    if not model.cfg.pre_norm:
        raise ValueError(
            "direct logit attribution needs a pre-LN model (model.norm_position=pre): in a post-LN stack each "
            "sublayer's output is normalised again by the sublayers after it, so the logit is no sum of them"
        )
    blocks = [
        (site, index, attention)
        for index, layer in enumerate(model.decoder.layers)
        for site, block, attention in layer.sublayers()
        if not block.removed  # an ablated sublayer adds nothing to the stream
    ]
    names = ["embed@decoder", decoder_layer_outputs(model)[-1]]
    names += [f"{'z' if attention is not None else 'out'}@{site}:{index}" for site, index, attention in blocks]
    with eval_mode(model), recorded(model, names) as seen:
        logits = forward_batch(model, kind, batch).logits  # (B, T, V)
    target = scored_target(model, kind, batch)
    token = target.clamp(min=0)  # (B, T): unscored positions read token 0, then zeroed below
    w_u = model.out_proj.weight[token]  # (B, T, D): each position's target row of the unembedding
    stream = seen[decoder_layer_outputs(model)[-1]]  # (B, T, D): what the final norm reads

    def direct(part: Tensor) -> Tensor:  # (B, T, D) -> (B, T): through the frozen norm and W_U[target]
        read = final_norm.as_linear(stream, part) if final_norm is not None else part
        return (read * w_u).sum(-1)

    found: dict[str, Tensor] = {"embed": direct(seen["embed@decoder"])}
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
    constant = torch.zeros_like(logits[..., 0])
    if final_norm is not None and getattr(final_norm, "bias", None) is not None:
        constant = constant + (final_norm.bias * w_u).sum(-1)
    if model.out_proj.bias is not None:
        constant = constant + model.out_proj.bias[token]
    found["norm and output bias"] = constant
    scored = (target != IGNORE_INDEX).to(logits.dtype)
    return {name: value * scored for name, value in found.items()}


@dataclass
class LensAnalysis:
    """The logit lens and direct logit attribution over a split's examples (analysis=lens of src.analyze)."""

    split: str
    examples: int
    positions: int  # scored target positions the means are over
    layers: list[LensLayer]  # per decoder layer: loss and top-1 agreement, means over the scored positions
    loss: float  # the model's own loss over the same positions
    target_logit: float  # the mean logit of the target token: what the attributions below sum to
    attribution: dict[str, float]  # component -> its mean direct contribution to the target's logit
    attribution_undefined: str | None = None  # why there is none (a post-LN model)


def analyze_lens(model: nn.Module, kind: str, batches, split: str) -> LensAnalysis:
    """logit_lens and direct_logit_attribution over `batches`, weighted by each batch's scored positions."""
    check_sequence_model(kind)
    examples = positions = 0
    sums = torch.zeros(len(model.decoder.layers), 2, dtype=torch.float64)  # loss, agreement, per layer
    loss_sum = logit_sum = 0.0
    attribution: dict[str, float] = {}
    undefined = None
    for batch in batches:
        target = scored_target(model, kind, batch)
        count = int((target != IGNORE_INDEX).sum())
        if count == 0:
            continue
        examples += target.size(0)
        positions += count
        for layer in logit_lens(model, kind, batch):
            sums[layer.layer, 0] += layer.loss * count
            sums[layer.layer, 1] += layer.top1_agreement * count
        with torch.no_grad(), eval_mode(model):
            logits = forward_batch(model, kind, batch).logits
        scored = target != IGNORE_INDEX
        loss_sum += float(F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX)) * count
        logit_sum += float(logits.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)[scored].sum())
        if undefined is None:
            try:
                found = direct_logit_attribution(model, kind, batch)
            except ValueError as error:
                undefined = str(error)
                continue
            for name, value in found.items():
                attribution[name] = attribution.get(name, 0.0) + float(value.sum())
    if positions == 0:
        raise ValueError(f"the {split} split has no scored positions to read")
    layers = [LensLayer(i, float(sums[i, 0] / positions), float(sums[i, 1] / positions)) for i in range(len(sums))]
    return LensAnalysis(
        split=split,
        examples=examples,
        positions=positions,
        layers=layers,
        loss=loss_sum / positions,
        target_logit=logit_sum / positions,
        attribution={} if undefined else {name: value / positions for name, value in attribution.items()},
        attribution_undefined=undefined,
    )
