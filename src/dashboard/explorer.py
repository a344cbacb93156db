"""Attention on your own sentence: the weights of every site, layer and head for one input, and one
self-contained HTML page that shows them (no network access when it is opened, no server).

    view = attention_on_text(model, datamodule, "ein Hund läuft")   # the tensors (and bertviz's format: as_bertviz)
    write_page(view, Path("attention.html"))                        # src.predict ... attention=attention.html

The page is written to be read without any other document. At its top: the text, what the model made of it (an
encoder-decoder's output, a classifier's label and class probabilities, a language model's next token), the model
and checkpoint, and a legend that says what the colours and the number on each head are. Then three views, after
bertviz's (Vig 2019):
- head view (most of the width): the tokens of both sides of one site, with a line from each query to each key whose
  opacity is the attention weight, one colour per head; choose the layer and the heads, hover a token to see only
  its lines;
- one head's map, beside it, with every query and key token on its axes; click any map to show it there;
- model view: every layer x head of the site as a small map, with the tokens on the shared axes when there is room
  (else on hover).
Heads are named as `ablate.heads` names them (src/model/names.py: `cross:1:2`, layers and heads counted from 0), so
a name on the page can be pasted into a spec. Heads switched off (`ablate=...`) are marked, and each head shows its
importance when the run has an analysis (src.analyze: which measure, on which data, is said on the page; the one
measured with the ablation the page's model has where there is one, analysis_for, else the page says it is not) and
its fraction restored when the run has an activation-patching analysis (src.analyze analysis=patching: read_patching;
a choice on the page says which of the two is the number on the heads, and a head's note gives both). Tokens are
shown as the data layer labels them (`token_strings`: a tokenizer's own marks such as GPT-2's "Ġ" converted).
bertviz's own pages load their JavaScript from a CDN and are blank offline; this one carries its script.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from src.analysis.patching import patch_effect
from src.data.registry import task_kind
from src.model.config import ARCHITECTURES, ModelAxes
from src.model.names import (
    CROSS,
    DECODER_SELF,
    ENCODER_SELF,
    NUMBERING,
    SITE_TITLES,
    STACKS,
    head_name,
    layer_name,
    parse_name,
    site_named,
)
from src.model.positional import POSITIONAL_SCHEMES
from src.provenance import hydra_value, module_command


def site_sides(site: str) -> tuple[str, str]:
    """The sides whose tokens are an attention site's queries and its keys (names.SITES, and each stack's side in
    names.STACKS): its own stack's ask, those of the stack its keys come from answer (cross-attention: the output's
    tokens ask, the input's answer)."""
    found = site_named(site)
    if found.key_stack is None:
        raise ValueError(f"{site} is a feed-forward site: it has no attention to show")
    return STACKS[found.stack].side, STACKS[found.key_stack].side


@dataclass
class AttentionOnText:
    """One input's attention. tokens: side ("src", "tgt") -> its token strings; attentions: site -> per layer a
    (H, Tq, Tk) tensor of weights (rows sum to 1 over the keys a query may see); importance: site -> (L, H) head
    importance from the run's analysis (None where a head was not measured), or None; ablated: site -> (L, H) True
    where a head is switched off; patching: the run's activation patching (read_patching), or None.

    What the page says around the weights: `sides` names each side's tokens, `prediction` is what the model made of
    the text ({"what": "predicted label", "text": "pos", "choices": [["pos", 0.97], ["neg", 0.03]]}), `about` the
    model and checkpoint in one line, `importance_about` what the importance numbers are (or why there are none), and
    `head_notes` site -> (L, H) one line per head (its analysis figures) shown when a head is pointed at."""

    tokens: dict[str, list[str]]
    attentions: dict[str, list[Tensor]]
    importance: dict[str, list[list[float | None]]] | None = None
    ablated: dict[str, list[list[bool]]] = field(default_factory=dict)
    title: str = ""
    start_site: str | None = None  # the site the page opens on (None: the first)
    sides: dict[str, str] = field(default_factory=dict)
    prediction: dict | None = None
    about: str = ""
    importance_about: str = ""
    head_notes: dict[str, list[list[str]]] = field(default_factory=dict)
    patching: HeadPatching | None = None
    # grouped-query attention: site -> each query head's key/value head (MultiHeadAttention.kv_group); a site whose
    # heads each have their own is left out
    kv_groups: dict[str, list[int]] = field(default_factory=dict)

    def as_bertviz(self) -> dict:
        """The keyword arguments of bertviz's head_view / model_view: per layer (1, H, Tq, Tk) tensors and the token
        lists (encoder-decoder: encoder_/decoder_/cross_attention with encoder_ and decoder_tokens). CircuitsVis's
        attention views take one layer's (H, T, T) and one token list: view.attentions[site][layer] and tokens."""
        layers = {site: tuple(w.unsqueeze(0) for w in per_layer) for site, per_layer in self.attentions.items()}
        if any(site_named(site).is_cross_attention for site in layers):  # an encoder-decoder's five arguments
            return {
                "encoder_attention": layers[ENCODER_SELF],
                "decoder_attention": layers[DECODER_SELF],
                "cross_attention": layers[CROSS],
                "encoder_tokens": self.tokens["src"],
                "decoder_tokens": self.tokens["tgt"],
            }
        (site, attention), *_ = layers.items()
        return {"attention": attention, "tokens": self.tokens[site_sides(site)[0]]}


def attention_on_text(
    model, datamodule, text: str, target: str | None = None, max_tokens: int = 200, max_new_tokens: int = 100
) -> tuple[AttentionOnText, list[str]]:
    """The attention of `model` on one input, read as src.predict reads it (datamodule.encode_input), what the model
    made of it (view.prediction), and the lines to warn with (a side cut to `max_tokens`). Encoder-decoder: the
    decoder side is `target` if given, else the model's own greedy output; decoder-only: the input (a long one keeps
    its last `max_tokens`, the ones the next token is read from); encoder-only: the input."""
    from src.analysis.heads import heads_in_use
    from src.model import generate
    from src.model.head_mask import attention_sites
    from src.training.inference import eval_mode

    warnings: list[str] = []

    def cut(ids: list[int], side: str, keep_last: bool = False) -> list[int]:
        if len(ids) > max_tokens:
            which = "last" if keep_last else "first"
            warnings.append(f"the {side} has {len(ids)} tokens: the page shows the {which} {max_tokens}")
            return ids[-max_tokens:] if keep_last else ids[:max_tokens]
        return ids

    cfg, device, kind = model.cfg, next(model.parameters()).device, task_kind(datamodule.kind)
    ids, _ = datamodule.encode_input(text)
    with eval_mode(model):  # `sides`: what each side's tokens are (the page's axis titles)
        if kind.translates:
            src = torch.tensor([cut(ids, "input")], device=device)
            if target is not None:
                out = datamodule.encode_tgt(target)
            else:
                generated = generate(model, src=src, max_new_tokens=max_new_tokens)[0].tolist()
                out = generated[: generated.index(cfg.eos_id)] if cfg.eos_id in generated else generated
            if len(out) > cfg.max_len - 1:  # with the start token, at most the model's positions
                warnings.append(f"the output has {len(out)} tokens: the model reads {cfg.max_len - 1} after its start")
                out = out[: cfg.max_len - 1]
            out = cut(out, "output")
            tgt = torch.tensor([[cfg.bos_id, *out]], device=device)
            output = model(src, tgt, need_weights=True)
            tokens = {
                "src": datamodule.src_token_strings(src[0].tolist()),
                "tgt": datamodule.tgt_token_strings(tgt[0].tolist()),
            }
            what = "target (given with target=)" if target is not None else "output (greedy decoding)"
            prediction = {"what": what, "text": datamodule.decode_tgt(out), "choices": None}
            decoder_side = "target tokens (decoder)" if target is not None else "output tokens (decoder)"
            sides = {"src": "input tokens (encoder)", "tgt": decoder_side}
        elif kind.predicts_tokens:  # a decoder-only model
            tgt = torch.tensor([cut(ids, "input", keep_last=True) or [cfg.bos_id]], device=device)
            output = model(tgt, need_weights=True)
            tokens = {"tgt": datamodule.tgt_token_strings(tgt[0].tolist())}
            probabilities = output.logits[0, -1].float().softmax(-1)  # (V,): the token after the last one
            top = probabilities.topk(min(5, probabilities.numel()))
            choices = [
                [datamodule.tgt_token_strings([i])[0], round(p, 4)]
                for i, p in zip(top.indices.tolist(), top.values.tolist())
            ]
            prediction = {"what": "next token (after the text)", "text": choices[0][0], "choices": choices}
            sides = {"tgt": "text tokens"}
        else:  # an encoder-only classifier
            src = torch.tensor([cut(ids, "input")], device=device)
            output = model(src, need_weights=True)
            tokens = {"src": datamodule.src_token_strings(src[0].tolist())}
            probabilities = output.logits[0].float().softmax(-1)  # (C,), as src.predict prints them
            ranked = probabilities.argsort(descending=True, stable=True).tolist()  # ties: the first, as argmax
            names = datamodule.label_names
            choices = [[names[c], round(probabilities[c].item(), 4)] for c in ranked]
            prediction = {"what": "predicted label", "text": names[ranked[0]], "choices": choices}
            sides = {"src": "input tokens"}
    attentions = {site: [w[0].float().cpu() for w in per_layer] for site, per_layer in output.attentions.items()}
    # switched off: a head gated off (ablate.heads) or in a removed attention sublayer (ablate.sublayers), which
    # still computes the attention drawn here but adds nothing to the stream; as the analyses count it
    ablated = {site: (gates == 0).tolist() for site, gates in heads_in_use(model).items()}
    kv_groups = {
        site: [modules[0].kv_group(h) for h in range(modules[0].heads)]
        for site, modules in attention_sites(model).items()
        if modules and modules[0].kv_heads < modules[0].heads
    }
    view = AttentionOnText(
        tokens, attentions, ablated=ablated, title=text, sides=sides, prediction=prediction, kv_groups=kv_groups
    )
    return view, warnings


# The model axes that change how attention reads its input, which the page's top line names when one is not at its
# default (ModelAxes's): the positional scheme first, followed by the settings of its own it reads
# (PositionalScheme.settings: model.rope_theta with rope, model.relative_buckets with t5_relative; another scheme's are
# unread, so not named), then the others in ModelAxes's order. model.kv_heads is said apart, in words beside the head
# count: its default (null) and a count equal to model.heads are the same multi-head attention.
DESCRIBED_AXES = ("pos_encoding", "attention_bias", "qk_norm", "parallel_layers")


def axis_overrides(name: str, value) -> list[str]:
    """`model.<name>=<value>` as the command line takes it: true/false for a switch, and a dict setting (RoPE's
    scaling, {"type": "llama3", "factor": 8.0}) one key at a time, `model.rope_scaling.type=llama3` and
    `model.rope_scaling.factor=8.0`, as Hydra sets one key of the node and the validation messages name them."""
    if isinstance(value, Mapping):  # a plain dict in TransformerConfig; a DictConfig where a config was kept
        return [override for key, item in value.items() for override in axis_overrides(f"{name}.{key}", item)]
    return [f"model.{name}={str(value).lower() if isinstance(value, bool) else hydra_value(value)}"]


def changed_axes(cfg) -> list[str]:
    """The overrides (axis_overrides) of the described axes (DESCRIBED_AXES and the chosen positional scheme's own
    settings) that are not at their default, in the order the top line names them."""
    scheme, *others = DESCRIBED_AXES  # model.pos_encoding, then the settings of its own the chosen scheme reads
    described = [scheme, *POSITIONAL_SCHEMES[cfg.pos_encoding].settings, *others]
    default = ModelAxes()  # every axis at the default it declares (the schema's model.* is its subclass)
    return [
        override
        for name in described
        if getattr(cfg, name) != getattr(default, name)
        for override in axis_overrides(name, getattr(cfg, name))
    ]


def describe_model(model) -> str:
    """'encoder-decoder, 2 + 2 layers, 4 heads a layer': the kind of model and its shape, for the page's top line;
    then what changes how its attention reads, as settings a user can paste back: key/value heads shared by several
    query heads (grouped-query attention: such heads see the same keys), and each axis of DESCRIBED_AXES (the
    positional scheme and its settings, the projections' biases, QK-norm, parallel layers) not at its default."""
    cfg = model.cfg
    arch = ARCHITECTURES[cfg.arch]  # the model's architecture: its title, its stacks, whether it classifies
    layers = " + ".join(str(STACKS[stack].layers(cfg)) for stack in arch.stacks) + " layers"
    name = arch.title + (" classifier" if arch.classifies else "")
    parts = [name, layers, f"{cfg.heads} heads a layer"]
    if cfg.kv_head_count < cfg.heads:
        parts[-1] += f" sharing {cfg.kv_head_count} key/value heads (model.kv_heads={cfg.kv_head_count})"
    return ", ".join(parts + changed_axes(cfg))


@dataclass
class HeadImportance:
    """A run's head analysis as the page shows it: values site -> (L, H) normalised importance (None: not measured),
    notes site -> (L, H) one line of figures per head, and `about`: what the number is and what it was measured on."""

    values: dict[str, list[list[float | None]]]
    notes: dict[str, list[list[str]]]
    about: str
    step: int | None = None  # the checkpoint step the analysis measured
    ablation: str | None = None  # the ablation in force when it measured (summary.json's), None where not recorded


def _number(text: str | None) -> float | None:
    """A csv cell as a number; None for an empty cell or NaN (a head not measured)."""
    try:
        value = float(text) if text not in (None, "") else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_importance(analysis_dir: Path, page_ablation: str | None = None) -> HeadImportance | None:
    """Head importance (normalised per layer) from a run's analysis/heads.csv (src.analyze), with what it is and what
    it was measured on from analysis/summary.json; None without an analysis. `page_ablation`: the ablation in force
    on the page's model (Ablation.describe's line), said beside the numbers, and in each head's note, when the
    analysis measured with another."""
    path = analysis_dir / "heads.csv"
    if not path.is_file():
        return None
    summary = _summary(analysis_dir)  # heads.csv alone: the numbers are still shown, said to be from the analysis
    ablation = _ablation(summary)
    other = _other_ablation(ablation, page_ablation)
    metric = summary.get("metric") or "metric"
    baseline = (summary.get("figures") or {}).get("baseline")
    table: dict[str, dict[tuple[int, int], tuple[float | None, str]]] = {}
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            site, layer, head = row["site"], int(row["layer"]), int(row["head"])
            value = _number(row.get("importance_normalised"))
            without = _number(row.get("metric_without"))
            note = "importance " + ("not measured (switched off when analysed)" if value is None else f"{value:.2f}")
            if without is not None:
                note += f"; {metric} without this head alone: {without:.3f}"
                note += f" (with every head: {baseline:.3f})" if isinstance(baseline, (int, float)) else ""
            note += f" (measured with {ablation}, not the page's ablation)" if other else ""
            table.setdefault(site, {})[(layer, head)] = (value, note)
    values, notes = _grids(table)
    examples, split = summary.get("examples"), summary.get("split")
    measured_on = f" over {examples} {split} examples" if examples and split else ""
    checkpoint = Path(summary["checkpoint"]).name if summary.get("checkpoint") else "the run"
    step = summary.get("step")
    measured = f"Measured by `src.analyze` on {checkpoint}" + (f" (step {step})" if step is not None else "")
    measured += f", with {ablation}" if ablation and ablation != NOTHING_ABLATED else ""
    measured += f", in {analysis_dir.name}/" if analysis_dir.name != "analysis" else ""
    about = (
        f"head importance (Michel et al. 2019): the mean |d loss / d head gate|{measured_on}, a first-order "
        "estimate of what removing the head costs, normalised per layer (larger: removing it costs more). "
        f"{measured}.{other_ablation_words(ablation, page_ablation, module_command('src.analyze'))}"
    )
    return HeadImportance(values, notes, about, step if isinstance(step, int) else None, ablation)


# What Ablation.describe (src/model/ablation.py) says of a model with nothing switched off.
NOTHING_ABLATED = "nothing ablated"


def _summary(folder: Path) -> dict:
    """An analysis's summary.json, or {} where it has none (or one that cannot be read)."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _ablation(summary: dict) -> str | None:
    """The ablation in force when an analysis measured, as its summary.json records it (Ablation.describe's line);
    None where it records none."""
    ablation = summary.get("ablation")
    return ablation if isinstance(ablation, str) and ablation else None


def _other_ablation(ablation: str | None, page_ablation: str | None) -> bool:
    return ablation is not None and page_ablation is not None and ablation != page_ablation


def other_ablation_words(ablation: str | None, page_ablation: str | None, command: str) -> str:
    """The sentence the page adds when an analysis measured with another ablation than the page's model has ("" when
    the same, or when either is not known), naming both and how to measure with the page's: `command`, this
    interpreter's, as every command the page names (it names this machine's checkpoints: module_command)."""
    if not _other_ablation(ablation, page_ablation):
        return ""
    return (
        f" These numbers were measured with another ablation ({ablation}) than the page's model has "
        f"({page_ablation}). `{command}` with the page's `ablate.*` settings and `out=` a new folder "
        "beside this analysis measures them with the page's ablation; a page written after that shows them."
    )


def holds_head_analysis(folder: Path) -> bool:
    """Whether `folder` is a head analysis (src.analyze analysis=heads): a heads.csv with the heads' importance (an
    induction analysis's heads.csv has other columns)."""
    try:
        with (folder / "heads.csv").open(newline="", encoding="utf-8") as file:
            return "importance_normalised" in (next(csv.reader(file), None) or [])
    except OSError:
        return False


def holds_patching(folder: Path) -> bool:
    """Whether `folder` is an activation-patching analysis (src.analyze analysis=patching)."""
    return (folder / "patching.csv").is_file() or "heads_restored" in _summary(folder)


def analysis_for(default: Path, page_ablation: str, page_step: int | None, holds: Callable[[Path], bool]) -> Path:
    """The analysis folder the page shows for a model with `page_ablation` in force (Ablation.describe's line), of
    the kind `holds` recognises (holds_head_analysis, holds_patching): src.analyze's own folder `default` when it
    measured with that ablation; else another analysis beside it (in the same folder: `out=<run>/analysis-2`)
    that did, the one of the page's step first, then by name; else `default` (the page then says that its numbers
    were measured with another ablation: other_ablation_words)."""
    others = []
    try:
        others = sorted(folder for folder in default.parent.iterdir() if folder != default and folder.is_dir())
    except OSError:
        pass
    same = [folder for folder in [default, *others] if holds(folder) and _ablation(_summary(folder)) == page_ablation]
    if not same:
        return default
    return min(same, key=lambda folder: _summary(folder).get("step") != page_step)  # min keeps the first of equals


@dataclass
class HeadPatching:
    """A run's activation patching as the page shows it: values site -> (L, H) the fraction of the clean-minus-
    corrupted difference restored by patching each head's output at every position (None: not patched), notes
    site -> (L, H) one line per head, `about`: what the number is and what it was measured on, or why there is none
    (`undefined`: the analysis's restored_undefined, and then no values)."""

    values: dict[str, list[list[float | None]]]
    notes: dict[str, list[list[str]]]
    about: str
    undefined: str | None = None
    step: int | None = None  # the checkpoint step the analysis measured
    ablation: str | None = None  # the ablation in force when it measured (summary.json's), None where not recorded


def read_patching(
    patching_dir: Path, page_step: int | None = None, page_ablation: str | None = None
) -> HeadPatching | None:
    """The heads' fractions restored from a run's patching analysis (src.analyze analysis=patching writes
    <run>/patching/: summary.json's heads_restored, and patching.csv, whose "head_position" rows give each head's
    best single query position), with what they are and what they were measured on; None without one. `page_step`
    and `page_ablation`: the step of the page's checkpoint and the ablation in force on its model (Ablation.describe's
    line), said beside the numbers when the analysis measured another."""
    summary = _summary(patching_dir)  # patching.csv alone: the numbers are still shown, said to be from the analysis
    direction = summary.get("direction")
    restored: dict[str, float | None] = {}  # head name -> fraction restored (None: undefined)
    # head name -> (fraction, query position) of the position whose patch moves the metric most: by |effect|, since
    # a noising fraction is what is kept (1: no change), so its largest |fraction| is a patch that does nothing
    best: dict[str, tuple[float, int]] = {}
    path = patching_dir / "patching.csv"
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                if row.get("family") not in ("head", "head_position") or not row.get("head"):
                    continue
                try:
                    name = head_name(row["site"], int(row["layer"]), int(row["head"]))
                    position = int(row["position"]) if row["family"] == "head_position" else None
                except (KeyError, TypeError, ValueError):
                    continue  # a row this page cannot place on a head
                value = _number(row.get("restored"))
                if position is None:
                    restored[name] = value
                elif value is not None and (
                    name not in best
                    or abs(patch_effect(value, direction)) > abs(patch_effect(best[name][0], direction))
                ):
                    best[name] = (value, position)
    if isinstance(summary.get("heads_restored"), dict):
        restored = {name: _finite_number(value) for name, value in summary["heads_restored"].items()}
    if not summary and not restored:
        return None
    metric, pairs = summary.get("metric"), summary.get("pairs")
    told = ", ".join(str(part) for part in (direction, metric, f"{pairs} pairs" if pairs else None) if part)
    verb = "kept when" if direction == "noising" else "restored by"  # noising: corrupted into the clean run
    checkpoint = Path(summary["checkpoint"]).name if summary.get("checkpoint") else "the run"
    step = summary.get("step") if isinstance(summary.get("step"), int) else None
    measured = "Measured by `src.analyze analysis=patching` on " + checkpoint
    measured += f" (step {step})" if step is not None else ""
    ablation = _ablation(summary)
    measured += f", with {ablation}" if ablation and ablation != NOTHING_ABLATED else ""
    measured += f", in {patching_dir.name}/" if patching_dir.name != "patching" else ""
    accuracy = summary.get("clean_accuracy")
    if isinstance(accuracy, (int, float)) and math.isfinite(accuracy):
        measured += f"; the model answers {accuracy:.0%} of the clean inputs right"
    measured += "." + (f" The page's checkpoint is at step {page_step}." if _other_step(step, page_step) else "")
    measured += other_ablation_words(ablation, page_ablation, module_command("src.analyze", "analysis=patching"))
    other = _other_ablation(ablation, page_ablation)
    what = f"activation patching ({told})" if told else "activation patching"
    undefined = summary.get("restored_undefined")
    if undefined:
        about = f"No patching number on the heads: {what} restores no defined fraction: {undefined}. {measured}"
        return HeadPatching({}, {}, about, str(undefined), step, ablation)
    if not restored:  # an analysis of other places only (the residual stream, sublayers)
        about = f"No patching number on the heads: {what} patched no head's output. {measured}"
        return HeadPatching({}, {}, about, None, step, ablation)
    clean, corrupted = _finite_number(summary.get("clean")), _finite_number(summary.get("corrupted"))
    scale = ""
    if clean is not None and corrupted is not None:
        scale = f" (1: the clean run's {metric or 'metric'}, {clean:.3f}; 0: the corrupted run's, {corrupted:.3f})"
    into = (
        "from the corrupted run into the clean one"
        if direction == "noising"
        else "from the clean run into the corrupted one"
    )
    about = (
        f"{what}: the fraction of the clean-minus-corrupted difference {verb} patching this head's output at every "
        f"position, {into}{scale}. {measured}"
    )
    table: dict[str, dict[tuple[int, int], tuple[float | None, str]]] = {}
    for name, value in restored.items():
        try:
            site, layer, head = parse_name(name)
        except ValueError:
            continue
        if layer is None or head is None:
            continue
        word = "keeps" if direction == "noising" else "restores"
        note = f"patching {word} " + ("nothing defined" if value is None else f"{value:.3f}")
        if name in best:
            most, position = best[name]
            alone = f"the largest effect at position {position}, {word} {most:.3f}"
            note += f" (its output at one query position alone: {alone})"
        note += f" (measured with {ablation}, not the page's ablation)" if other else ""
        table.setdefault(site, {})[(layer, head)] = (value, note)
    values, notes = _grids(table)
    return HeadPatching(values, notes, about, None, step, ablation)


def _grids(table: dict[str, dict[tuple[int, int], tuple[float | None, str]]]) -> tuple[dict, dict]:
    """site -> {(layer, head): (value, note)} as two grids site -> (L, H): the values and the notes."""
    values, notes = {}, {}
    for site, cells in table.items():
        layers, heads = max(k[0] for k in cells) + 1, max(k[1] for k in cells) + 1
        grid = [[cells.get((layer, head), (None, "")) for head in range(heads)] for layer in range(layers)]
        values[site] = [[value for value, _ in row] for row in grid]
        notes[site] = [[note for _, note in row] for row in grid]
    return values, notes


def _finite_number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _other_step(step: int | None, page_step: int | None) -> bool:
    return step is not None and isinstance(page_step, int) and page_step > 0 and page_step != step


def page_data(view: AttentionOnText) -> dict:
    """What the page's script reads: plain lists, weights rounded to 4 decimals (the page is text), every head and
    layer already named as ablate.heads reads it (the script never spells a name itself)."""
    sites = {}
    for site, per_layer in view.attentions.items():
        query_side, key_side = site_sides(site)
        layers = len(per_layer)
        heads = per_layer[0].size(0) if layers else 0
        importance = (view.importance or {}).get(site)
        patching = view.patching.values.get(site) if view.patching else None
        patching_notes = view.patching.notes.get(site) if view.patching else None
        sites[site] = {
            "title": SITE_TITLES.get(site, site),
            "queries": query_side,
            "keys": key_side,
            # (L, H, Tq, Tk); a weight that is not a number (never expected) would make the page's JSON unreadable
            "weights": [torch.round(torch.nan_to_num(w.double()), decimals=4).tolist() for w in per_layer],
            "importance": [[_finite(v) for v in row] for row in importance] if importance else None,
            "notes": view.head_notes.get(site),
            # the fraction restored by patching each head (None: not patched), and its line for the head's note
            "restored": _fitted(patching, layers, heads, lambda v: _rounded(v, 4)) if patching else None,
            "restored_notes": _fitted(patching_notes, layers, heads, str) if patching else None,
            "ablated": view.ablated.get(site, [[False] * heads for _ in range(layers)]),
            "names": [[head_name(site, layer, head) for head in range(heads)] for layer in range(layers)],
            # a head's key/value group in a grouped-query model (its note), None in a multi-head one
            "kv_groups": kv_group_notes(site, layers, view.kv_groups.get(site)),
            "layer_names": [layer_name(site, layer) for layer in range(layers)],
        }
    switched_off = [
        name
        for site in sites.values()
        for names, marks in zip(site["names"], site["ablated"])
        for name, off in zip(names, marks)
        if off
    ]
    return {
        "title": view.title,
        "tokens": view.tokens,
        "sides": {side: view.sides.get(side, f"{side} tokens") for side in view.tokens},
        "sites": sites,
        "start": view.start_site,
        "prediction": view.prediction,
        "about": view.about,
        "importance_about": view.importance_about,
        "patching_about": view.patching.about if view.patching else "",
        "numbering": NUMBERING,
        "switched_off": switched_off,
    }


def kv_group_notes(site: str, layers: int, groups: list[int] | None) -> list[list[str]] | None:
    """Per layer and query head, the line that says which heads share its keys and values, each head named as
    `ablate.heads` takes it and the key/value head as the points `k@`/`v@` index it ("key/value head 1 of
    k@self:0 and v@self:0, shared by self:0:2, self:0:3"), from each head's group; None where every head has its
    own."""
    if groups is None:
        return None
    sharing = {group: [h for h, g in enumerate(groups) if g == group] for group in groups}

    def line(layer: int, group: int) -> str:
        where = layer_name(site, layer)
        shared = ", ".join(head_name(site, layer, h) for h in sharing[group])
        return f"key/value head {group} of k@{where} and v@{where}, shared by {shared}"

    return [[line(layer, g) for g in groups] for layer in range(layers)]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _rounded(value: float | None, decimals: int) -> float | None:
    value = _finite(value)
    return None if value is None else round(value, decimals) + 0.0  # + 0.0: no "-0.0" on the page


def _fitted(grid, layers: int, heads: int, cell) -> list[list]:
    """A (L, H) grid of an analysis cut or filled (None) to the page's heads: an analysis of another model shape
    never shifts a number onto the wrong head."""
    rows = grid or []

    def at(layer: int, head: int):
        found = rows[layer][head] if layer < len(rows) and head < len(rows[layer]) else None
        return None if found is None else cell(found)

    return [[at(layer, head) for head in range(heads)] for layer in range(layers)]


def render_page(view: AttentionOnText) -> str:
    """The whole page as one string: its data as JSON, its style and its script inline."""
    # Every "<" escaped: inside a <script> block, "</script>" would end it and "<!--" with "<script" would swallow
    # the blocks after it; JSON reads \u003c back as "<". allow_nan=False: NaN is not JSON, the page would be blank.
    data = json.dumps(page_data(view), ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")
    return (
        PAGE.replace("{{TITLE}}", html.escape(view.title or "attention"))
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{DATA}}", data)
    )


def write_page(view: AttentionOnText, path: Path) -> None:
    """Write the page whole or not at all (a partial file beside it, then renamed); never over an existing file
    (the caller checks that first, so that nothing is computed for a page that cannot be written)."""
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(render_page(view), encoding="utf-8")
    partial.replace(path)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>{{STYLE}}</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <p id="about" class="about"></p>
  <p id="prediction" class="prediction"></p>
  <div class="controls">
    <label>site <select id="site"></select></label>
    <label>layer <select id="layer"></select></label>
    <label id="measure-choice" hidden>number on heads <select id="measure"></select></label>
    <button id="all-heads" type="button">show every head</button>
    <button id="theme" type="button">dark / light</button>
  </div>
  <div class="heads-row"><span id="heads-label" class="row-label"></span><div id="heads" class="heads"></div></div>
  <p id="legend" class="legend"></p>
</header>
<main>
  <section id="head-section">
    <h2>head view</h2>
    <p id="head-hint" class="hint"></p>
    <div id="head-box" class="box"><svg id="head-view" role="img"></svg></div>
  </section>
  <section id="focus-section">
    <h2 id="focus-title">one head</h2>
    <p id="focus-hint" class="hint"></p>
    <div id="enlarged" class="box"></div>
  </section>
  <section id="model-section">
    <h2>model view</h2>
    <p id="model-hint" class="hint"></p>
    <div id="model-box" class="box"><div id="model-view" class="grid"></div></div>
  </section>
</main>
<script id="data" type="application/json">{{DATA}}</script>
<script>{{SCRIPT}}</script>
</body>
</html>
"""

STYLE = """
:root { --bg: #ffffff; --fg: #1d1d1f; --muted: #5f5f64; --line: #d2d2d7; --cell: #f5f5f7; --off: #d70015; }
:root.dark { --bg: #161618; --fg: #f5f5f7; --muted: #a1a1a6; --line: #3a3a3c; --cell: #232326; }
@media (prefers-color-scheme: dark) { :root:not(.light) { --bg: #161618; --fg: #f5f5f7; --muted: #a1a1a6;
  --line: #3a3a3c; --cell: #232326; } }
* { box-sizing: border-box; }
html { scrollbar-gutter: stable; }  /* the views are sized to the width: a scrollbar appearing later would not fit */
body { background: var(--bg); color: var(--fg); font: 14px/1.4 system-ui, sans-serif; margin: 0;
  padding: 12px 20px 24px; }
h1 { font-size: 19px; margin: 0; overflow-wrap: anywhere; white-space: pre-wrap; display: -webkit-box;
  -webkit-line-clamp: 3; -webkit-box-orient: vertical; overflow: hidden; }
h2 { font-size: 15px; margin: 12px 0 2px; }
p { margin: 0; }
.about { color: var(--muted); margin: 2px 0 6px; overflow-wrap: anywhere; }
.prediction { margin: 0 0 8px; font-size: 15px; overflow-wrap: anywhere; }
.prediction .answer { font-weight: 600; padding: 0 6px; background: var(--cell); border: 1px solid var(--line);
  border-radius: 4px; white-space: pre-wrap; }
.prediction .choices { color: var(--muted); margin-left: 8px; }
.prediction .choice { margin-right: 8px; white-space: nowrap; }
.prediction .token { color: var(--fg); padding: 0 4px; border: 1px solid var(--line); border-radius: 3px;
  white-space: pre; }
.hint, .legend, .row-label, .note { color: var(--muted); }
.hint { margin: 0 0 6px; }
.legend { margin: 6px 0 0; font-size: 13px; }
.legend code, .note code { font-size: 12px; }
.controls { display: flex; gap: 12px; flex-wrap: wrap; align-items: center; }
select, button { background: var(--cell); color: var(--fg); border: 1px solid var(--line); border-radius: 4px;
  padding: 2px 6px; font: inherit; }
.heads-row { display: flex; gap: 8px; align-items: baseline; margin-top: 8px; }
.row-label { white-space: nowrap; font-size: 13px; }
.heads { display: flex; flex-wrap: wrap; gap: 4px; min-width: 0; }
.head { display: inline-flex; align-items: center; gap: 5px; border: 1px solid var(--line); border-radius: 4px;
  padding: 1px 6px; cursor: pointer; font-size: 13px; }
.head .swatch, .key .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; }
.head .imp { font-variant-numeric: tabular-nums; color: var(--muted); }
.head.off { opacity: 0.35; }
.head.ablated, .cell.ablated { text-decoration: line-through; outline: 2px dashed var(--off); }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 0 28px; align-items: start; }
#model-section { grid-column: 1 / -1; }
@media (max-width: 880px) { main { grid-template-columns: minmax(0, 1fr); } }
.box { width: 100%; overflow-x: auto; }
svg { display: block; }
svg text { fill: var(--fg); font-size: 13px; dominant-baseline: middle; cursor: default; }
svg text.heading { fill: var(--muted); font-size: 12px; }
svg text.active { font-weight: bold; }
svg text.axis { font-size: 11px; }
.grid { display: grid; gap: 6px; align-items: end; width: max-content; }
.cell { background: var(--cell); border: 1px solid var(--line); cursor: pointer; padding: 2px; }
.cell.focus { border-color: var(--fg); }
.cell .label, .colhead, .rowhead { font-size: 10px; color: var(--muted); }
.cell .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.rowhead { display: flex; justify-content: flex-end; gap: 4px; align-self: start; padding-top: 3px; }
.rowhead span { white-space: nowrap; }
canvas { display: block; image-rendering: pixelated; }
.map { position: relative; }
.map canvas { position: absolute; border: 1px solid var(--line); }
.scale { display: flex; align-items: center; gap: 6px; margin-top: 6px; font-size: 12px; color: var(--muted); }
.scale canvas { width: 120px; height: 10px; border: 1px solid var(--line); }
.note { margin-top: 4px; font-size: 13px; }
"""

# Plain JavaScript, no framework: read the data, draw the views, redraw on every choice and on resizing.
SCRIPT = r"""
const data = JSON.parse(document.getElementById("data").textContent);
// Heads and layers are named by the data (src/model/names.py: ablate.heads' spelling), never spelled here.
// 16 colours dark enough to read as a thin line or a faint map cell on a white page.
const palette = ["#0071e3", "#d70015", "#248a3d", "#8944ab", "#c45500", "#00838f", "#8d6e63", "#c2185b",
                 "#3949ab", "#0288d1", "#558b2f", "#b7950b", "#6d4c41", "#616161", "#1d6f42", "#ad1457"];
// measure: the number preferred on the heads, "patching" (fraction restored) when the run has it, else "importance"
const state = { site: data.start || Object.keys(data.sites)[0], layer: 0, heads: null, hover: null, focus: null,
                measure: Object.values(data.sites).some((s) => s.restored) ? "patching" : "importance" };
const room = {};  // id of a view's box -> its width in px, read at the start of each draw()
const $ = (id) => document.getElementById(id);
const svgNS = "http://www.w3.org/2000/svg";
const colour = (h) => palette[h % palette.length];

function site() { return data.sites[state.site]; }
function headCount() { const w = site().weights; return w.length ? w[0].length : 0; }
function shown(value) { const text = value.toFixed(2); return text === "-0.00" ? "0.00" : text; }
function sideName(side) { return data.sides[side] || side + " tokens"; }
function importance(s, l, h) {
  const v = s.importance && s.importance[l] ? s.importance[l][h] : null;
  return v === undefined ? null : v;
}
function restored(s, l, h) {
  const v = s.restored && s.restored[l] ? s.restored[l][h] : null;
  return v === undefined ? null : v;
}
// The measure whose number the heads of site s show: the one chosen when the site has it, else the other, else none.
function measureOf(s) {
  const has = { importance: Boolean(s.importance), patching: Boolean(s.restored) };
  if (has[state.measure]) return state.measure;
  return has.importance ? "importance" : has.patching ? "patching" : null;
}
function number(s, l, h) {
  const measure = measureOf(s);
  return measure === "patching" ? restored(s, l, h) : measure === "importance" ? importance(s, l, h) : null;
}
// A head's note: its figures from each analysis the run has (importance, then patching), and its key/value group.
function note(s, l, h) {
  const line = (notes) => (notes && notes[l] && notes[l][h] ? notes[l][h] : "");
  return [line(s.notes), line(s.restored_notes), line(s.kv_groups)].filter(Boolean).join("; ");
}
function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}
function svgElement(tag, attributes) {
  const e = document.createElementNS(svgNS, tag);
  for (const [name, value] of Object.entries(attributes || {})) e.setAttribute(name, value);
  return e;
}

// Text widths in the page's own font, so that token labels get the room they need and are shortened (with "…" and
// the whole token on hover) only where the room runs out.
const measureContext = document.createElement("canvas").getContext("2d");
const fontFamily = getComputedStyle(document.body).fontFamily, widths = new Map();  // (size, text) -> px
function textWidth(text, size) {
  const key = size + " " + text;
  if (!widths.has(key)) {
    measureContext.font = size + "px " + fontFamily;
    widths.set(key, measureContext.measureText(text).width);
  }
  return widths.get(key);
}
function widest(tokens, size) { return tokens.reduce((w, t) => Math.max(w, textWidth(t, size)), 0); }
function fit(text, size, width) {
  if (textWidth(text, size) <= width) return text;
  let shown = text;
  while (shown.length > 1 && textWidth(shown + "…", size) > width) shown = shown.slice(0, -1);
  return shown + "…";
}
function label(parent, text, size, width, attributes) {
  const shown = fit(text, size, width), node = svgElement("text", attributes);
  node.textContent = shown;
  if (shown !== text) { const title = svgElement("title"); title.textContent = text; node.appendChild(title); }
  parent.appendChild(node);
  return node;
}

function setup() {
  $("title").textContent = data.title || "attention";
  $("title").title = data.title || "";
  $("about").textContent = data.about || "";
  showPrediction();
  for (const [name, s] of Object.entries(data.sites)) $("site").add(new Option(s.title + " (" + name + ")", name));
  $("site").value = state.site;
  $("site").onchange = () => {
    state.site = $("site").value; state.layer = 0; state.heads = null; state.focus = null; draw();
  };
  // Another layer: the map beside the head view shows that layer's most important head (a click on a map below
  // chooses any other).
  $("layer").onchange = () => { state.layer = Number($("layer").value); state.focus = null; draw(); };
  $("measure").add(new Option("fraction restored (patching)", "patching"));
  $("measure").add(new Option("importance", "importance"));
  // Another number: the map beside the head view shows the layer's head with the largest of it.
  $("measure").onchange = () => { state.measure = $("measure").value; state.focus = null; draw(); };
  $("all-heads").onclick = () => { state.heads = null; draw(); };
  // Pointing at a token keeps only its lines; pointing anywhere else brings them all back. The listeners are on the
  // head view's <svg>, which stays while its tokens and lines are drawn again: a listener on a token went with it
  // at the first redraw, and the view stayed filtered.
  const point = (hover) => {
    const same = hover === state.hover ||
      (hover && state.hover && hover.side === state.hover.side && hover.i === state.hover.i);
    if (!same) { state.hover = hover; drawHeadView(); }
  };
  $("head-view").addEventListener("mouseover", (event) => {
    const token = event.target.closest ? event.target.closest("text.query, text.key") : null;
    point(token ? { side: token.dataset.side, i: Number(token.dataset.i) } : null);
  });
  $("head-view").addEventListener("mouseleave", () => point(null));
  $("theme").onclick = () => {
    const root = document.documentElement;
    const dark = root.classList.contains("dark") ||
      (!root.classList.contains("light") && matchMedia("(prefers-color-scheme: dark)").matches);
    root.classList.toggle("dark", !dark); root.classList.toggle("light", dark); draw();
  };
  let pending = null;  // one redraw per frame while the window is resized
  window.addEventListener("resize", () => { cancelAnimationFrame(pending); pending = requestAnimationFrame(draw); });
  draw();
  // When the first draw ended, in ms since the page began loading (the browser tests read it).
  document.documentElement.dataset.firstDraw = performance.now().toFixed(1);
}

function showPrediction() {
  const p = data.prediction, box = $("prediction");
  if (!p) { box.hidden = true; return; }
  box.append(element("strong", "", p.what + ": "), element("span", "answer", p.text === "" ? "(empty)" : p.text));
  if (p.choices && p.choices.length > 1) {
    // Each choice in its own frame: a token such as "." or "," would otherwise read as punctuation of the list.
    const choices = element("span", "choices", "probabilities: ");
    for (const [name, prob] of p.choices.slice(0, 8)) {
      const choice = element("span", "choice");
      choice.append(element("span", "token", name), " " + prob.toFixed(3));
      choices.append(choice);
    }
    if (p.choices.length > 8) choices.append("… (" + p.choices.length + " in all)");
    box.append(choices);
  }
}

function showLegend() {
  const s = site(), legend = $("legend"), measure = measureOf(s);
  const both = Boolean(s.importance) && Boolean(s.restored);
  $("measure-choice").hidden = !both;  // a choice only where there are two numbers to choose from
  $("measure").value = measure || "importance";
  $("heads-label").textContent = { importance: "heads (number: importance)",
                                   patching: "heads (number: fraction restored by patching)" }[measure] || "heads";
  legend.innerHTML = "";
  // A sentence of the legend; text in `backticks` is something to type (a setting, a command), set as code.
  const part = (text) => {
    text.split("`").forEach((piece, i) => legend.append(i % 2 ? element("code", "", piece) : piece));
    legend.append(" ");
  };
  part("Names: site:layer:head, " + data.numbering + ": paste one into `ablate.heads=[...]` to switch that " +
       "head off (`ablate.heads=[" + s.names[state.layer][0] + "]`). Click a head to hide or show its lines. " +
       "Colours: one per head, the same for its lines and its maps.");
  const importanceAbout = data.importance_about || "importance, from the run's analysis.";
  if (measure === "patching") {
    part("Number on a head: " + data.patching_about);
    if (both) part("(Its importance: choose it under \u201cnumber on heads\u201d; pointing at a head gives both.)");
  } else if (measure === "importance") {
    part("Number on a head: its " + importanceAbout);
    if (both) {
      part("The run also has activation patching: choose \u201cfraction restored\u201d under \u201cnumber on " +
           "heads\u201d; pointing at a head gives both.");
    }
  } else {
    part(data.importance_about || "No number on the heads: the run has no head analysis.");
  }
  // Patching that measured nothing defined (or not this site's heads) says so, instead of showing a number.
  if (data.patching_about && !s.restored) part(data.patching_about);
  if (data.switched_off.length) {
    part("Struck through in a dashed red frame: switched off here (" + data.switched_off.join(", ") + ").");
  }
}

function draw() {
  const s = site(), heads = headCount();
  if (state.heads === null) state.heads = new Set([...Array(heads).keys()]);
  if (state.focus === null) state.focus = { layer: state.layer, head: mostImportant(state.layer) };
  state.focus.layer = state.layer;  // the map beside the head view is always of the layer it shows
  // The room each view has, read once before anything is redrawn: reading a width after changing the page makes
  // the browser lay the whole page out again (thousands of lines in the head view) at every read.
  for (const id of ["head-box", "enlarged", "model-box"]) room[id] = $(id).clientWidth;
  const layerSelect = $("layer");
  layerSelect.innerHTML = "";
  s.layer_names.forEach((name, l) => layerSelect.add(new Option(name, l)));
  layerSelect.value = state.layer;
  showLegend(); drawHeadButtons(); drawHeadView(); drawFocus(); drawModelView();
}

function mostImportant(l) {
  // The map shown first: the layer's head with the largest number on it (importance or fraction restored) when
  // the run has an analysis, else its first head.
  const s = site();
  let best = 0;
  for (let h = 1; h < headCount(); h++) {
    if ((number(s, l, h) ?? -Infinity) > (number(s, l, best) ?? -Infinity)) best = h;
  }
  return best;
}

function drawHeadButtons() {
  const box = $("heads"), s = site(), l = state.layer;
  box.innerHTML = "";
  for (let h = 0; h < headCount(); h++) {
    const button = element("span", "head" + (state.heads.has(h) ? "" : " off") + (s.ablated[l][h] ? " ablated" : ""));
    button.dataset.head = h;
    button.title = [s.names[l][h], note(s, l, h), s.ablated[l][h] ? "switched off (ablate)" : ""]
      .filter(Boolean).join("; ");
    const swatch = element("span", "swatch");
    swatch.style.background = colour(h);
    button.append(swatch, element("span", "name", s.names[l][h]));
    const value = number(s, l, h);
    if (measureOf(s)) button.append(element("span", "imp", value === null ? "–" : shown(value)));
    button.onclick = () => { state.heads.has(h) ? state.heads.delete(h) : state.heads.add(h); draw(); };
    box.appendChild(button);
  }
}

function drawHeadView() {
  const s = site(), svg = $("head-view");
  const queries = data.tokens[s.queries], keys = data.tokens[s.keys];
  $("head-hint").textContent = "Left: the queries, " + sideName(s.queries) + "; right: the keys, " +
    sideName(s.keys) + ". A line from a query to a key: the query attends to that key; its opacity is the " +
    "weight (under 0.01: not drawn), its colour the head. Point at a token to see only its lines.";
  const width = Math.max(320, room["head-box"]), size = 13;
  const textW = Math.min(Math.ceil(widest(queries.concat(keys), size)) + 14, Math.floor(width * 0.22));
  const rows = Math.max(queries.length, keys.length, 1);
  const rowH = Math.max(20, Math.min(32, Math.floor(480 / rows))), top = 30;
  const height = top + rowH * rows + 6;
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  svg.innerHTML = "";
  const y = (i) => top + rowH * i + rowH / 2;
  const left = textW, right = width - textW;  // the lines run between the two columns of tokens
  label(svg, "queries: " + sideName(s.queries), 12, width / 2 - 8, { x: 0, y: 10, class: "heading" });
  label(svg, "keys: " + sideName(s.keys), 12, width / 2 - 8,
        { x: width, y: 10, "text-anchor": "end", class: "heading" });
  const weights = s.weights[state.layer];
  for (const h of state.heads) {
    for (let q = 0; q < queries.length; q++) {
      for (let k = 0; k < keys.length; k++) {
        const w = weights[h][q][k];
        if (w < 0.01) continue;
        const hidden = state.hover && ((state.hover.side === "q" && state.hover.i !== q) ||
                                       (state.hover.side === "k" && state.hover.i !== k));
        if (hidden) continue;
        const line = svgElement("line", { x1: left, y1: y(q), x2: right, y2: y(k), stroke: colour(h),
                                          "stroke-width": 2, "stroke-opacity": w });
        line.classList.add("attention"); line.dataset.head = h; line.dataset.query = q; line.dataset.key = k;
        svg.appendChild(line);
      }
    }
  }
  const tokenText = (tokens, side, x, anchor) => tokens.forEach((t, i) => {
    const text = label(svg, t, size, textW - 10, { x, y: y(i), "text-anchor": anchor });
    text.classList.add(side === "q" ? "query" : "key");
    if (state.hover && state.hover.side === side && state.hover.i === i) text.classList.add("active");
    text.dataset.side = side; text.dataset.i = i;  // read by the head view's pointer listeners (setup)
  });
  tokenText(queries, "q", left - 6, "end");
  tokenText(keys, "k", right + 6, "start");
}

function heatMap(canvas, matrix, hex) {
  // One pixel per weight (rows: queries, columns: keys), scaled up by CSS with sharp edges. The most opaque cell is
  // the map's largest weight: each map has its own scale, so a head that spreads its attention thinly still shows
  // its pattern (the map beside the head view says what its darkest cell is).
  const rows = matrix.length, cols = rows ? matrix[0].length : 0;
  const top = Math.max(1e-9, ...matrix.map((row) => Math.max(...row)));
  canvas.width = Math.max(1, cols); canvas.height = Math.max(1, rows);
  if (!rows || !cols) return top;
  const context = canvas.getContext("2d"), image = context.createImageData(cols, rows);
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  for (let q = 0; q < rows; q++) for (let k = 0; k < cols; k++) {
    const at = 4 * (q * cols + k);
    image.data[at] = r; image.data[at + 1] = g; image.data[at + 2] = b;
    image.data[at + 3] = Math.round(255 * Math.min(1, matrix[q][k] / top));
  }
  context.putImageData(image, 0, 0);
  return top;
}

function pointAt(canvas, matrix, queries, keys, prefix) {
  // The cell under the pointer, in the canvas's tooltip: its query and key tokens and its weight.
  canvas.onmousemove = (event) => {
    const box = canvas.getBoundingClientRect();
    const q = Math.floor((event.clientY - box.top) / box.height * queries.length);
    const k = Math.floor((event.clientX - box.left) / box.width * keys.length);
    if (q < 0 || k < 0 || q >= queries.length || k >= keys.length) return;
    canvas.title = prefix + "query " + queries[q] + " → key " + keys[k] + ": " + matrix[q][k].toFixed(3);
  };
}

// Key tokens along a map's top edge, a label every `every` columns: upright when each fits its column, else turned
// to read upwards from the edge. keyAxisHeight: the room they take above the map.
function keyAxis(svg, keys, size, cell, left, height, every) {
  const upright = widest(keys, size) + 4 <= cell * every;
  keys.forEach((t, k) => {
    if (k % every) return;
    const x = left + (k + 0.5) * cell;
    if (upright) {
      label(svg, t, size, cell * every, { x, y: height - size / 2 - 3, "text-anchor": "middle",
                                          class: "axis key-axis" });
    } else {
      label(svg, t, size, height - 6, { x: 0, y: 0, transform: "translate(" + x + " " + (height - 3) + ") rotate(-90)",
                                        class: "axis key-axis" });
    }
  });
}
function keyAxisHeight(keys, size, cell, most) {
  return widest(keys, size) + 4 <= cell ? size + 8 : Math.min(Math.ceil(widest(keys, size)) + 10, most);
}

function drawFocus() {
  const s = site(), l = state.focus.layer, h = state.focus.head, box = $("enlarged");
  const queries = data.tokens[s.queries], keys = data.tokens[s.keys], matrix = s.weights[l][h];
  $("focus-title").textContent = "one head: " + s.names[l][h];
  box.innerHTML = "";
  const caption = element("div", "note", s.title + ", layer " + l + ", head " + h +
    (s.ablated[l][h] ? " (switched off)" : "") + (note(s, l, h) ? "; " + note(s, l, h) : ""));
  const size = 11, width = Math.max(200, room["enlarged"] - 4);
  const labelW = Math.min(Math.ceil(widest(queries, size)) + 10, 130);
  // A cell's size in CSS pixels (not a whole number when many tokens share the width: the canvas is scaled).
  const cell = Math.min(36, (width - labelW - 2) / Math.max(1, keys.length));
  const every = Math.ceil((size + 2) / cell);  // a label every `every` tokens when a cell is shorter than the text
  const labelH = keyAxisHeight(keys, size, cell * every, 90);
  $("focus-hint").textContent = "Rows: the queries, " + sideName(s.queries) + "; columns: the keys, " +
    sideName(s.keys) + ". Darker: more attention. Point at a cell for its weight; click a map below to show it " +
    "here." + (every > 1 ? " A label every " + every + " tokens." : "");
  const map = element("div", "map");
  map.style.width = labelW + cell * keys.length + 2 + "px";
  map.style.height = labelH + cell * queries.length + 2 + "px";
  const axes = svgElement("svg", { width: labelW + cell * keys.length, height: labelH + cell * queries.length });
  queries.forEach((t, q) => {
    if (q % every === 0) {
      label(axes, t, size, labelW - 8, { x: labelW - 4, y: labelH + (q + 0.5) * cell + 1, "text-anchor": "end",
                                          class: "axis query-axis" });
    }
  });
  keyAxis(axes, keys, size, cell, labelW + 1, labelH, every);
  const canvas = element("canvas");
  canvas.id = "enlarged-map";
  const top = heatMap(canvas, matrix, colour(h));
  Object.assign(canvas.style, { left: labelW + "px", top: labelH + "px", width: cell * keys.length + 2 + "px",
                                height: cell * queries.length + 2 + "px" });
  pointAt(canvas, matrix, queries, keys, "");
  map.append(axes, canvas);
  const scale = element("div", "scale");
  const ramp = element("canvas");
  heatMap(ramp, [Array.from({ length: 60 }, (_, i) => i / 59)], colour(h));
  scale.append(element("span", "", "0"), ramp, element("span", "", "darkest = " + top.toFixed(3) +
    " (each map is scaled to its own largest weight)"));
  box.append(map, scale, caption);
}

function drawModelView() {
  const s = site(), grid = $("model-view");
  const heads = headCount(), queries = data.tokens[s.queries], keys = data.tokens[s.keys];
  const longest = Math.max(queries.length, keys.length, 1), size = 10, gap = 6, frame = 6;  // frame: padding, border
  const width = Math.max(320, room["model-box"]);
  // A map's width when the row heads take `rowHeadW`: the rest shared by the heads (40 to 160 px each).
  const thumbFor = (rowHeadW) => Math.max(40, Math.min(160, Math.floor((width - rowHeadW) / heads) - gap - frame));
  // Tokens on the shared axes (queries left of each layer, keys above each head) when a cell is as tall as the
  // text; with more tokens than that, pointing at a map names the cell's tokens, and a click shows it enlarged.
  const queryAxisW = Math.min(Math.ceil(widest(queries, size)) + 8, 90);
  const labelled = thumbFor(56 + queryAxisW) / longest >= size;
  const axisW = labelled ? queryAxisW : 0, rowHeadW = 56 + axisW, thumb = thumbFor(rowHeadW);
  const cell = thumb / longest, mapW = cell * keys.length, mapH = cell * queries.length;
  const axisH = labelled ? keyAxisHeight(keys, size, cell, 70) : 0;
  $("model-hint").textContent = "Every layer (rows) and head (columns) of the " + s.title + ", each a map like " +
    "the one above: rows are queries, columns keys, darker is more attention. Click a map to show it enlarged. " +
    (labelled ? "" : "Too many tokens to label every map: point at a map to read a cell's tokens and weight.");
  grid.innerHTML = "";
  grid.style.gridTemplateColumns = rowHeadW + "px repeat(" + heads + ", " + (thumb + frame) + "px)";
  grid.appendChild(element("div"));
  for (let h = 0; h < heads; h++) {
    const head = element("div", "colhead");
    head.append(element("div", "", "head " + h));
    if (labelled) {
      const axis = svgElement("svg", { width: mapW + 6, height: axisH });
      keyAxis(axis, keys, size, cell, 3, axisH, 1);
      head.append(axis);
    }
    grid.appendChild(head);
  }
  s.weights.forEach((layer, l) => {
    const rowHead = element("div", "rowhead");
    rowHead.append(element("span", "", "layer " + l));
    if (labelled) {
      const axis = svgElement("svg", { width: axisW, height: mapH + 4 });
      queries.forEach((t, q) => label(axis, t, size, axisW - 4, { x: axisW - 2, y: 2 + (q + 0.5) * cell,
        "text-anchor": "end", class: "axis query-axis" }));
      rowHead.append(axis);
    }
    grid.appendChild(rowHead);
    layer.forEach((matrix, h) => {
      const focused = state.focus.layer === l && state.focus.head === h;
      const cellBox = element("div", "cell" + (s.ablated[l][h] ? " ablated" : "") + (focused ? " focus" : ""));
      cellBox.dataset.layer = l; cellBox.dataset.head = h; cellBox.dataset.name = s.names[l][h];
      cellBox.title = [s.names[l][h], note(s, l, h), s.ablated[l][h] ? "switched off" : ""].filter(Boolean).join("; ");
      const canvas = element("canvas");
      heatMap(canvas, matrix, colour(h));
      Object.assign(canvas.style, { width: mapW + "px", height: mapH + "px" });
      pointAt(canvas, matrix, queries, keys, s.names[l][h] + ": ");
      const caption = element("div", "label", s.names[l][h]);
      caption.style.width = mapW + "px";
      cellBox.append(canvas, caption);
      cellBox.onclick = () => { state.layer = l; state.focus = { layer: l, head: h }; draw(); };
      grid.appendChild(cellBox);
    });
  });
}

setup();
"""
