"""`ablate.*` applied to a trained model: the ablation it was trained with, then the one asked for now.

The model package knows what an ablation is (src/model/ablation.py); this module adds what needs data: the fill of
mean ablation, each ablated head's mean output over reference examples of the training split (its output before
W^O, averaged over every real query position, padding left out).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from src.model.ablation import ABLATION_METHODS, Ablation, apply_ablation, layout_of, parse_ablation
from src.model.head_mask import attention_sites
from src.model.masks import real_positions
from src.training.inference import eval_mode, forward_batch, site_inputs


def query_positions(model: nn.Module, batch: dict[str, Tensor], site: str) -> Tensor:
    """(B, Tq) bool: the real (not padding) queries of `site` in this batch: a decoder's from the examples' lengths
    where the batch has them (batch["tgt_real"], exact where a real token shares the pad id, as GPT-2's
    <|endoftext|> does), else by the model's own special ids."""
    key, _ = site_inputs(site)
    if key == "tgt_in" and "tgt_real" in batch:
        return batch["tgt_real"]
    return real_positions(batch[key], model.cfg.pad_id, model.cfg.eos_id, decoder_side=key == "tgt_in")


def mean_head_outputs(model: nn.Module, kind: str, batches) -> dict[str, Tensor]:
    """Per site, (L, H, Dh): every head's mean output (before W^O) over the real query positions of `batches`
    (task-kind batches, see src/training/module.py), with the model as it is (its current ablation included)."""
    sites = attention_sites(model)
    sums = {site: [None] * len(modules) for site, modules in sites.items()}
    counts = dict.fromkeys(sites, 0)
    current: dict[str, Tensor] = {}  # site -> (B, T) bool of the real queries in the batch being run
    hooks = []

    def hook_for(site: str, layer: int, heads: int):
        def hook(_module, inputs):
            merged = inputs[0]  # (B, T, H*Dh): the heads' outputs, concatenated, before W^O
            b, t, d = merged.shape
            keep = current[site][:, :t].unsqueeze(-1).to(merged.dtype)  # (B, T, 1); cached steps: t = 1
            total = (merged * keep).sum(dim=(0, 1)).view(heads, d // heads).double()  # (H, Dh)
            sums[site][layer] = total if sums[site][layer] is None else sums[site][layer] + total

        return hook

    for site, modules in sites.items():
        for layer, module in enumerate(modules):
            hooks.append(module.out_proj.register_forward_pre_hook(hook_for(site, layer, module.heads)))
    try:
        with eval_mode(model):
            device = next(model.parameters()).device
            for batch in batches:
                batch = {key: value.to(device) for key, value in batch.items()}
                for site in sites:
                    current[site] = query_positions(model, batch, site)
                    counts[site] += int(current[site].sum())
                forward_batch(model, kind, batch)
    finally:
        for handle in hooks:
            handle.remove()
    dtype = next(model.parameters()).dtype
    return {site: (torch.stack(sums[site]) / max(counts[site], 1)).to(dtype) for site in sites}  # (L, H, Dh)


def reference_batches(datamodule, examples: int):
    """The first `examples` training examples (validation ones for a task without a training split), batched."""
    split = datamodule.task.train or datamodule.task.val
    chosen = [split[i] for i in range(min(examples, len(split)))]
    size = datamodule.batch_size
    return [datamodule.collate(chosen[start : start + size]) for start in range(0, len(chosen), size)]


def trained_ablation(module) -> Ablation:
    """What the checkpoint's run trained without (its `ablate`; nothing for runs from before ablations)."""
    return parse_ablation(module.config.get("ablate"), module.model_cfg, key="the checkpoint's ablate")


def ablate_trained_model(module, datamodule, ablate: Mapping | None) -> Ablation:
    """Apply `ablate` ({heads, sublayers, method, reference_examples}) to a loaded checkpoint's model on top of the
    ablation it was trained with (which TransformerLitModule already applied), and return the whole ablation now
    in force. Raises ConfigError (one line) for a bad spec, before any work."""
    trained = trained_ablation(module)
    asked = parse_ablation(ablate, module.model_cfg)
    if asked.empty:
        return trained
    both = trained.union(asked)
    fill = None
    if ABLATION_METHODS[asked.method].needs_reference:
        examples = int((ablate or {}).get("reference_examples", 256))
        means = mean_head_outputs(module.model, datamodule.kind, reference_batches(datamodule, examples))
        # Only the heads asked for get their mean: heads trained without stay zero (no mean of theirs exists), and
        # heads an analysis switches off later are zero-ablated, as Michel et al. do.
        fill = {site: torch.zeros_like(values) for site, values in means.items()}
        for site, pairs in asked.heads.items():
            for layer, head in pairs:
                fill[site][layer, head] = means[site][layer, head]
    apply_ablation(module.model, both, fill)
    return both


def ablated_line(module, ablation: Ablation) -> str:
    """`ablated: ...`, the line src.eval and src.predict print when anything is off: the whole ablation in force
    (`ablation`, from ablate_trained_model), and which part of it the checkpoint was trained without (always zero
    ablation, whatever the method asked for now)."""
    layout = layout_of(module.model_cfg)
    trained = trained_ablation(module)
    line = f"ablated: {ablation.describe(layout)}"
    if trained.empty:
        return line
    if trained == ablation:
        return f"{line} (as the checkpoint was trained)"
    return f"{line} (trained without: {trained.describe(layout)})"
