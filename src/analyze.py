"""Analyse the heads of trained models: `python -m src.analyze ckpt=<run directory | checkpoint | sweep directory>`.

For each checkpoint (a run directory stands for its best checkpoint, as in src.eval and src.predict: the one line
`using ...` says which; a sweep directory for every completed job's, the others named and skipped)
it measures, on the `split` (val by default): each head's importance (Michel et al. 2019) and attention entropy,
the exact effect of removing each head alone, of keeping one head per layer, and a pruning curve; then writes
`<run>/analysis/` (report.md, csv tables, PNG figures, summary.json) and the figures into the run's TensorBoard.
On a sweep, the sweep's report.md is rewritten with the pruning figures per configuration. See src/analysis/.

    python -m src.analyze ckpt=outputs/<date>/<time>                      # the run's best checkpoint, val split
    python -m src.analyze ckpt=<run>/checkpoints/last.ckpt split=test max_examples=500 single_heads=false
    python -m src.analyze ckpt=outputs/multirun/<date>/<time>             # every job of a sweep
    python -m src.analyze ckpt=<run> ablate.heads=[cross:*:0]             # analyse with head 0 of every layer off
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: Ctrl-C during the imports below is one line (src/cli/startup.py)
    from src.cli.startup import quiet_until_started

    quiet_until_started()

import gc

collecting_before = gc.isenabled()  # restored once the imports are done
gc.disable()  # while the imports below run (see gc.freeze() after them)

import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from src.cli.command_line import CONF_DIR, run_hydra_command, user_errors_as_one_line
from src.cli.schema import register_configs
from src.cli.validation import check_analysis_settings, check_finite_settings, check_threads, device_for
from src.data.files import resolve_path
from src.model import ConfigError
from src.provenance import command_line, git_state, module_command, now, package_versions, shell_override
from src.training.report import print_warning, quiet_lightning

gc.freeze()
if collecting_before:
    gc.enable()

register_configs()
quiet_lightning()

ANALYSIS_DIR = "analysis"
RUN_FILE = "run.json"


@dataclass
class Target:
    """One checkpoint to analyse, where its analysis goes, and whether its figures also go into the run's
    TensorBoard (only the run's own analysis does: one set of `<split>_analysis/` tags per run)."""

    checkpoint: Path
    run_dir: Path
    out: Path
    tensorboard: bool = True
    read: dict | None = None  # the checkpoint already read (ckpt=hf:<model>: made from the pretrained model)


# What src.analyze takes as ckpt= (the error lines' words): what every command takes, and a sweep directory.
ANALYZE_FORMS = (
    "a run directory (its best checkpoint), a .ckpt file, a sweep directory, or hf:<model> task=<name> out=<dir>"
)


def _skipped_because(job: Path, folder: str = ANALYSIS_DIR) -> str | None:
    """Why a sweep's job is not analysed (None: it is): it did not complete (as its run.json says, with the error a
    failed job recorded), saved no checkpoint, or has this analysis (its `folder`) already."""
    from src.provenance import read_record
    from src.training.checkpoint import UNFINISHED, best_checkpoint_of

    record = read_record(job)
    if record is None:
        return f"it has no {RUN_FILE} (it never started, or was refused before it ran)"
    status = record.get("status")
    if status != "completed":
        error = str(record.get("error") or "").strip().splitlines()
        because = f": {error[0]}" if error else ""
        return f"it {UNFINISHED.get(status, f'ended {status}')}{because} (see {job / RUN_FILE})"
    if best_checkpoint_of(job) is None:
        return f"it saved no checkpoint (see {job / RUN_FILE})"
    if (job / folder).exists():
        return f"it has an analysis already ({job / folder})"
    return None


def _sweep_targets(path: Path, ckpt: str, out: str | None, folder: str = ANALYSIS_DIR) -> list[tuple[Path, Path]]:
    """(best checkpoint, job directory) of every job of the sweep that completed and has no analysis yet; one
    warning names each other job and why it is skipped (a failed or refused job is named failed, never analysed)."""
    from src.training.checkpoint import best_checkpoint_of

    if out is not None:
        raise ConfigError(f"out={out} is for one run: a sweep's jobs each get their own {folder}/; leave out= out")
    targets = []
    for job in sorted(p.parents[1] for p in path.glob("*/.hydra/overrides.yaml")):
        skipped, found = _skipped_because(job, folder), best_checkpoint_of(job)
        if skipped is not None or found is None:  # (found is None only where _skipped_because says so)
            print_warning(f"{job.name} is skipped: {skipped}")
            continue
        targets.append((found, job))
    if not targets:
        raise ConfigError(
            f"ckpt={ckpt}: no job of this sweep is left to analyse (none completed, or each has "
            f"{folder}/ already; move those away to analyse again, or rewrite the sweep's report from them: "
            f"{module_command('src.report', shlex.quote(str(path)))})"
        )
    return targets


def existing_out_line(target_out: Path, run_dir: Path, default_out: Path, given: bool) -> str:
    """Why the folder an analysis would write (`out=`, when `given`, else `default_out`, its own) cannot be written,
    saying what it is: a run directory (the analysed run's own, or another), a sweep directory, an earlier analysis,
    or another folder; and where the analysis could go instead. Nothing is ever written into an existing folder."""
    from src.training.checkpoint import is_run_dir, is_sweep_dir

    named = f"out={target_out}" if given else str(target_out)
    elsewhere = (
        f"leave out= out (the analysis then goes to its own folder, {default_out})"
        if given and not default_out.exists()
        else f"give another place with {shell_override('out', str(target_out) + '-2')}"
    )
    if is_run_dir(target_out):
        whose = "the analysed run's own directory" if target_out.resolve() == run_dir.resolve() else "a run directory"
        return f"{named} is {whose}, not a folder for an analysis: {elsewhere}"
    if is_sweep_dir(target_out):
        return f"{named} is a sweep directory, not a folder for an analysis: {elsewhere}"
    earlier = " (an earlier analysis)" if (target_out / "summary.json").is_file() else ""
    return f"{named} exists{earlier}, and an analysis is never written over a folder: {elsewhere}, or move it away"


def find_targets(ckpt: str, out: str | None, folder: str = ANALYSIS_DIR) -> tuple[list[Target], Path | None]:
    """The checkpoints `ckpt` names, each with its output directory (`folder` in a run directory: the analysis's
    own, ANALYSES), and the sweep directory when `ckpt` is one.
    A run directory or a file is read as every command reads `ckpt=` (read_any_checkpoint: the same checkpoint
    src.eval and src.predict would take, said in one line). ConfigError (one line) when it names nothing analysable
    or an output directory already exists: nothing is ever overwritten, and every target is checked before any
    work starts."""
    from src.training.checkpoint import READ_FROM, is_run_dir, is_sweep_dir, read_any_checkpoint, run_dir_of

    if not str(ckpt).strip():
        raise ConfigError(f"ckpt is empty: give {ANALYZE_FORMS}")
    if out is not None and not str(out).strip():
        raise ConfigError("out is empty: give a folder to write the analysis to, or leave out= out")
    path = resolve_path(ckpt)
    sweep_dir = None
    targets: list[tuple[Path, Path, dict | None]]
    if path.is_dir() and not is_run_dir(path) and is_sweep_dir(path):
        sweep_dir = path
        targets = [(found, job, None) for found, job in _sweep_targets(path, ckpt, out, folder)]
    else:
        checkpoint = read_any_checkpoint(ckpt, forms=ANALYZE_FORMS)
        found = Path(checkpoint[READ_FROM])
        targets = [(found, run_dir_of(str(found), checkpoint), checkpoint)]
    resolved = []
    for checkpoint_file, run_dir, read in targets:
        own = checkpoint_file.parent == run_dir / "checkpoints"  # a checkpoint of the run it names, where saved
        # a checkpoint moved away from its run: its analysis goes beside it, not into the run it came from
        default_out = run_dir / folder if own else checkpoint_file.parent / f"{checkpoint_file.stem}_{folder}"
        target_out = resolve_path(out) if out is not None else default_out
        if target_out.is_file():
            raise ConfigError(f"out={target_out} is a file: give a folder that does not exist yet")
        if target_out.exists() and sweep_dir is None:
            raise ConfigError(existing_out_line(target_out, run_dir, default_out, given=out is not None))
        if not target_out.parent.is_dir():
            raise ConfigError(
                f"{'out=' + str(out) if out is not None else str(target_out)}: the folder {target_out.parent} does "
                f"not exist: {'create it or choose another' if out is not None else 'give out=<a folder>'}"
            )
        resolved.append(Target(checkpoint_file, run_dir, target_out, tensorboard=own and out is None, read=read))
    return resolved, sweep_dir


def check_settings(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError(
            "ckpt is required: give a checkpoint, a run directory or a sweep directory, e.g. "
            f"{module_command('src.analyze', 'ckpt=outputs/<date>/<time>')}"
        )
    if cfg.analysis not in ANALYSES:
        choices = "; ".join(f"{name} ({kind.what})" for name, kind in ANALYSES.items())
        raise ConfigError(f"analysis={cfg.analysis!r} is not known: choose one of: {choices}")
    # split, max_examples, prune_step, ...: as src.run checks its analysis.* (induction makes its own sequences)
    made = f"{INDUCTION_SEQUENCES} sequences made for it"
    check_finite_settings(cfg)
    check_analysis_settings(cfg, all_examples=made if cfg.analysis == "induction" else "the whole split")
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} must be >= 1 (or leave it out: the run's batch size)")
    check_threads(cfg.torch_threads)
    check_patching_settings(cfg)
    warn_unread_settings(cfg)


def check_patching_settings(cfg: DictConfig) -> None:
    """analysis=patching's own settings, one line each, before any checkpoint is read."""
    from src.analysis.causal import PAIR_METRICS
    from src.analysis.patching import DIRECTIONS

    if cfg.metric not in PAIR_METRICS:
        raise ConfigError(f"metric={cfg.metric!r} is not known: choose one of {', '.join(PAIR_METRICS)}")
    if cfg.direction not in DIRECTIONS:
        raise ConfigError(
            f"direction={cfg.direction!r} is not known: denoising (clean activations into the corrupted run) or "
            "noising (corrupted activations into the clean run)"
        )
    if cfg.max_pairs < 1:
        raise ConfigError(f"max_pairs={cfg.max_pairs} must be >= 1")
    if cfg.analysis == "patching" and not (metric := PAIR_METRICS[cfg.metric]).differentiable:
        print_warning(
            f"metric={cfg.metric} has no gradient ({metric.no_gradient}): attribution patching is left out, "
            "activation patching is exact"
        )
    if cfg.pairs is not None:
        from src.data.pairs import PAIRS_FILE_FORMAT

        path = resolve_path(cfg.pairs)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise ConfigError(f"pairs={cfg.pairs} {what}: give a file of pairs, {PAIRS_FILE_FORMAT}")
    if bool(cfg.senders) != bool(cfg.receivers):
        given, missing = ("senders", "receivers") if cfg.senders else ("receivers", "senders")
        raise ConfigError(
            f"{given}= is given without {missing}=: path patching follows each sender head into each receiver head: "
            f"give both, e.g. senders=[decoder_self:0:1] receivers=[decoder_self:1:*]"
        )


# The settings each analysis reads (the rest are read by every analysis: ckpt, out, batch_size, ablate, ...).
OWN_SETTINGS = {
    "heads": ("split", "max_examples", "single_heads", "keep_one", "prune_step", "tolerance", "rows_per_batch"),
    "patching": ("split", "pairs", "max_pairs", "metric", "direction", "senders", "receivers", "rows_per_batch"),
    "lens": ("split", "max_examples"),
    "induction": ("max_examples",),  # its sequences are made, not read from a split
}


def warn_unread_settings(cfg: DictConfig) -> None:
    """One warning naming the settings the command line gave that the chosen analysis does not read."""
    from src.cli.validation import typed_settings

    typed = typed_settings()
    readers: dict[str, list[str]] = {}
    for name, keys in OWN_SETTINGS.items():
        for key in keys:
            readers.setdefault(key, []).append(f"analysis={name}")
    unread = [key for key in readers if key in typed and key not in OWN_SETTINGS.get(cfg.analysis, ())]
    if unread:
        listed = ", ".join(f"{key}= ({' and '.join(readers[key])})" for key in unread)
        ignored = "they are ignored" if len(unread) > 1 else "it is ignored"
        print_warning(f"analysis={cfg.analysis} does not read {listed}: {ignored}")


def analyze_checkpoint(
    target: Target,
    settings,
    device: torch.device,
    *,
    ablate=None,
    batch_size: int | None = None,
    tensorboard: bool = True,
    command: str = "src.analyze",
    log: Callable[[str], None] = print,
    verbose: bool = True,
) -> Path:
    """Analyse one checkpoint into target.out; returns it. `settings`: the analysis settings (AnalysisConfig's
    fields: src.analyze's top-level ones, or a run's `analysis.*` with analyze_after_fit=true). `ablate`: heads and
    sublayers to switch off on top of what the run trained without; `batch_size`: None for the run's. `command`: the
    command recorded in summary.json. `log` gets the lines; `verbose=False` (after training, src.run) keeps only
    the last one, what was written."""
    from src.analysis.ablation import ablate_trained_model, ablated_line, trained_ablation
    from src.analysis.formatting import attention_heads
    from src.analysis.heads import analyze_heads
    from src.analysis.report import figures, write_analysis, write_tensorboard
    from src.dashboard.rendering import rendered
    from src.model.head_mask import attention_sites
    from src.training.checkpoint import load_run, read_checkpoint

    checkpoint = target.read or read_checkpoint(str(target.checkpoint))
    module, datamodule = load_run(str(target.checkpoint), batch_size, checkpoint=checkpoint)
    ablation = ablate_trained_model(module, datamodule, ablate)
    model = module.model.to(device)
    layout = {site: (len(m), m[0].heads) for site, m in attention_sites(model).items()}
    detail = log if verbose else (lambda line: None)
    detail(f"checkpoint: {target.checkpoint}")
    if not ablation.empty:
        detail(ablated_line(module, ablation))
    started = time.perf_counter()
    result = analyze_heads(
        model,
        datamodule,
        module.config.get("decode", {}),
        split=settings.split,
        max_examples=settings.max_examples,
        single_heads=settings.single_heads,
        keep_one=settings.keep_one,
        prune_step=settings.prune_step,
        tolerance=settings.tolerance,
        rows_per_batch=settings.rows_per_batch,
        log=lambda line: detail(f"  {line}"),
    )
    about = {
        "checkpoint": str(target.checkpoint),
        "step": int(checkpoint.get("global_step", 0)),
        "ablation": ablation.describe(layout),
        "ablation_specs": ablation.as_specs(),
        "attention": attention_heads(model.cfg),  # query and key/value heads: what the report's heads are
        "settings": {
            k: getattr(settings, k) for k in ("split", "max_examples", "prune_step", "tolerance", "single_heads")
        },
        "command": command_line(command),
        "started": now(),
        "seconds_total": time.perf_counter() - started,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "git": git_state(),
        "versions": package_versions(),
    }
    pictures = rendered(figures(result))  # drawn once, for the files and TensorBoard alike
    write_analysis(result, target.out, about, pictures)
    has_tensorboard = any(target.run_dir.glob("events.out.tfevents.*"))
    # One analysis per run in its TensorBoard: the run's own (its checkpoint, its analysis/, its trained ablation).
    own = target.tensorboard and ablation == trained_ablation(module)
    if tensorboard and has_tensorboard and own:
        write_tensorboard(result, target.run_dir, about["step"], about, pictures)
    elif tensorboard and has_tensorboard:
        detail("  TensorBoard: left as it is (an analysis with out= or ablate.* of its own is written to files only)")
    m = result.metric
    fraction = (
        "the prunable fraction is undefined (see report.md)"
        if math.isnan(result.prunable_fraction)
        else f"{100 * result.prunable_fraction:.0f}% of the heads can go within {100 * result.tolerance:g}%"
    )
    # The number as src.eval names it (`val/sacrebleu`, ...), with the examples it is over (max_examples may cut).
    line = f"{settings.split}/{m.name} {result.baseline_metric:.4g} ({result.examples} examples); {fraction}; "
    line += f"written: {target.out}"
    log(f"  {line}" if verbose else f"analysis:      {line}")
    return target.out


def no_pairs_line(task_name: str | None) -> str:
    """A task that makes no counterfactual pairs (a text task), or none (a pretrained model read without one)."""
    from src.data.pairs import PAIRS_FILE_FORMAT

    which = f"task={task_name}" if task_name else "a model without a task"
    return f"{which} makes no counterfactual pairs of its own: give pairs=<file> ({PAIRS_FILE_FORMAT})"


def pairs_of_run(cfg: DictConfig, datamodule, log: Callable[[str], None]):
    """The counterfactual pairs an analysis runs on (src/data/pairs.py): those of the file `pairs=`, or those the
    task makes from its `split` (synthetic tasks: one symbol changed), at most `max_pairs`; with the words the
    report describes them in. ConfigError when neither exists (a text task, a pretrained model without a task)."""
    import random

    from src.data.pairs import read_pairs_file
    from src.data.registry import task_spec

    if cfg.pairs is not None:
        pairs = read_pairs_file(resolve_path(cfg.pairs), datamodule)
        found = len(pairs)
        pairs = pairs[: cfg.max_pairs]
        return pairs, f"from {cfg.pairs}" + (f", the first {len(pairs)} of {found}" if found > len(pairs) else "")
    task_name = getattr(datamodule.task_cfg, "name", None)
    spec = task_spec(task_name) if task_name else None
    if spec is None or spec.pairs is None:  # check_patching refused this before any work
        raise ConfigError(no_pairs_line(task_name))
    examples = getattr(datamodule.task, cfg.split)
    # random.Random(0): the same corruption choices on every run of a sweep (each seed's split is its own)
    pairs = spec.pairs(datamodule.task_cfg, datamodule.task, examples, cfg.max_pairs, random.Random(0))
    if not pairs:
        raise ConfigError(f"task={task_name} made no pairs from its {cfg.split} split: give pairs=<file>")
    return pairs, f"task={task_name}'s own, from its {cfg.split} split: one input symbol changed per pair"


def path_pairs(cfg: DictConfig, model_cfg, warn: bool = True) -> list[tuple[str, str]]:
    """(sender, receiver) head names for path patching: every sender of `senders=` that runs before a receiver of
    `receivers=` (heads as ablate.heads takes them, `*` allowed); one warning names the pairs left out (`warn`: the
    preflight says it once, for a sweep's first job)."""
    from src.analysis.patching import CHANNELS, reachable, runs_before
    from src.model.ablation import parse_ablation
    from src.model.names import head_name

    def heads(key: str) -> list[tuple[str, int, int]]:
        try:
            parsed = parse_ablation({"heads": list(cfg[key])}, model_cfg, key=key).heads
        except ConfigError as error:  # its words name ablate's setting: say the one typed here
            raise ConfigError(str(error).replace(f"{key}.heads", key)) from None
        return [(site, layer, head) for site, found in parsed.items() for layer, head in found]

    found, left_out, unreachable = [], [], []
    for s in heads("senders"):
        for r in heads("receivers"):
            pair = (head_name(*s), head_name(*r))
            if not runs_before(s[:2], r[:2]):
                left_out.append(pair)
            elif not any(reachable(s[0], r[0], channel) for channel in CHANNELS):
                unreachable.append(pair)  # an encoder head into decoder self-attention: no stream joins them
            else:
                found.append(pair)
    given = f"senders={list(cfg.senders)} receivers={list(cfg.receivers)}"
    if (cfg.senders or cfg.receivers) and not found and unreachable:
        raise ConfigError(
            f"{given}: no sender's output reaches a receiver: an encoder head reaches the decoder only through "
            "cross-attention's keys and values (receivers=[cross:<layer>:<head>]), a decoder head never the encoder"
        )
    if (cfg.senders or cfg.receivers) and not found:
        raise ConfigError(
            f"{given}: no sender runs before a receiver: path patching follows a head's output into a later "
            "sublayer (a later layer, or a decoder layer's cross-attention after its self-attention)"
        )
    for pairs, why in ((left_out, "the sender not running first"), (unreachable, "no stream joining them")):
        if pairs and warn:
            shown = ", ".join(f"{a} -> {b}" for a, b in pairs[:4]) + (" ..." if len(pairs) > 4 else "")
            print_warning(f"{len(pairs)} sender -> receiver pair(s) are left out, {why}: {shown}")
    return found


_WARNED: set[str] = set()


def warn_once(text: str) -> None:
    """A warning that holds for every job of a sweep alike (the pairs' template, a post-LN model's attribution):
    said for the first job only."""
    if text not in _WARNED:
        _WARNED.add(text)
        print_warning(text)


@dataclass
class Loaded:
    """A checkpoint read for one of the analyses below: its module and data, the model on the device with `ablate.*`
    applied, and its attention layout (what the ablation is described against)."""

    checkpoint: dict
    module: Any
    datamodule: Any
    model: Any
    ablation: Any
    layout: dict

    def about(self, target: Target, device: torch.device, seconds: dict[str, float], **own) -> dict:
        """What summary.json records of an analysis besides its results: what was analysed, how and where."""
        from src.analysis.formatting import attention_heads

        return {
            "checkpoint": str(target.checkpoint),
            "step": int(self.checkpoint.get("global_step", 0)),
            "ablation": self.ablation.describe(self.layout),
            "attention": attention_heads(self.model.cfg),  # query and key/value heads: what the report's heads are
            **own,
            "command": command_line("src.analyze"),
            "started": now(),
            "seconds": seconds,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "git": git_state(),
            "versions": package_versions(),
        }

    def writes_tensorboard(self, target: Target) -> bool:
        """Whether the analysis also goes into the run's TensorBoard: the run's own (its checkpoint, its folder, the
        ablation it trained with), as for the head analysis."""
        from src.analysis.ablation import trained_ablation

        own = target.tensorboard and self.ablation == trained_ablation(self.module)
        return own and any(target.run_dir.glob("events.out.tfevents.*"))


def load_for_analysis(
    target: Target,
    cfg: DictConfig,
    device: torch.device,
    log: Callable[[str], None],
    refuse: Callable[[Any, Any], None] | None = None,
) -> Loaded:
    """The checkpoint of `target` read and rebuilt, `refuse(module, datamodule)` given its say (a ConfigError for a
    model the analysis cannot read) before anything else is done, `ablate.*` applied, and the lines saying which
    checkpoint and ablation the work is on."""
    from src.analysis.ablation import ablate_trained_model, ablated_line
    from src.model.head_mask import attention_sites
    from src.training.checkpoint import load_run, read_checkpoint

    checkpoint = target.read or read_checkpoint(str(target.checkpoint))
    module, datamodule = load_run(str(target.checkpoint), cfg.batch_size, checkpoint=checkpoint)
    if refuse is not None:
        refuse(module, datamodule)
    ablation = ablate_trained_model(module, datamodule, cfg.ablate)
    model = module.model.to(device)
    layout = {site: (len(m), m[0].heads) for site, m in attention_sites(model).items()}
    log(f"checkpoint: {target.checkpoint}")
    if not ablation.empty:
        log(ablated_line(module, ablation))
    return Loaded(checkpoint, module, datamodule, model, ablation, layout)


def patch_checkpoint(target: Target, cfg: DictConfig, device: torch.device, log: Callable[[str], None] = print) -> Path:
    """Activation patching, its attribution estimate and any path patching of one checkpoint on counterfactual pairs
    (src/analysis/causal.py) into target.out (src/analysis/causal_report.py)."""
    from src.analysis.causal import (
        analyze_patching,
        clean_accuracy,
        plural,
        same_template,
        undefined_restoration,
        weak_separation,
        wrong_answer,
    )
    from src.analysis.causal_report import figures, write_patching, write_tensorboard
    from src.dashboard.rendering import rendered
    from src.data.pairs import collate_pairs
    from src.model.names import STACKS

    loaded = load_for_analysis(target, cfg, device, log)
    model, datamodule = loaded.model, loaded.datamodule
    paths = path_pairs(cfg, model.cfg, warn=False)  # said by check_patching, before any work
    pairs, described = pairs_of_run(cfg, datamodule, log)
    template = same_template(pairs)
    if template is not None:
        warn_once(
            f"{template}, so a position would mean something else in each of them: only each head's output at every "
            "position is patched (for the by-position tables, give pairs of one template)"
        )
    if cfg.rows_per_batch < len(pairs):  # a patch's rows are every pair: they are not split between passes
        warn_once(
            f"rows_per_batch={cfg.rows_per_batch} is fewer than the {len(pairs)} pairs: each forward pass holds one "
            f"patch on every pair ({len(pairs)} rows); lower max_pairs to make the passes smaller"
        )
    batch = collate_pairs(pairs, datamodule.kind, datamodule.task.specials).to(device)
    first_clean = batch.clean
    positions = {  # each stack's positions, labelled with the first clean input's tokens
        stack: datamodule.vocab(found.side).token_strings(first_clean[found.batch_key][0].tolist())
        for stack, found in STACKS.items()
        if found.batch_key in first_clean
    }
    started = time.perf_counter()
    result = analyze_patching(
        model,
        datamodule.kind,
        batch,
        metric=cfg.metric,
        direction=cfg.direction,
        rows_per_batch=cfg.rows_per_batch,
        paths=paths,
        position_labels=positions,
        described=described,
        one_template=template is None,
        log=lambda line: log(f"  {line}"),
    )
    accuracy = clean_accuracy(model, datamodule.kind, batch)
    fragile = weak_separation(result) or undefined_restoration(result) or wrong_answer(result, accuracy)
    if fragile:
        print_warning(fragile)
    settings = {key: cfg[key] for key in ("split", "pairs", "max_pairs", "metric", "direction")}
    about = loaded.about(
        target,
        device,
        {"patching": time.perf_counter() - started},
        clean_accuracy=accuracy,
        settings=settings | {"senders": list(cfg.senders), "receivers": list(cfg.receivers)},
    )
    pictures = rendered(figures(result))  # drawn once, for the files and TensorBoard alike
    write_patching(result, target.out, about, pictures)
    if loaded.writes_tensorboard(target):
        write_tensorboard(result, target.run_dir, about["step"], about, cfg.split, pictures)
    log(
        f"  {cfg.metric}: clean {result.clean:.4g}, corrupted {result.corrupted:.4g} ({plural(result.pairs, 'pair')}); "
        f"written: {target.out}"
    )
    return target.out


def lens_checkpoint(target: Target, cfg: DictConfig, device: torch.device, log: Callable[[str], None] = print) -> Path:
    """The logit lens and direct logit attribution of one checkpoint over its split (src/analysis/lens.py) into
    target.out (src/analysis/lens_report.py)."""
    from src.analysis.lens import analyze_lens, attribution_refused
    from src.analysis.lens_report import figures, write_lens, write_tensorboard
    from src.dashboard.rendering import rendered

    loaded = load_for_analysis(target, cfg, device, log)
    model, datamodule = loaded.model, loaded.datamodule
    refused = attribution_refused(model)
    if refused:  # said before the work: the report then has the lens alone
        warn_once(f"{refused}: the logit lens alone is written")
    examples = list(getattr(datamodule.task, cfg.split))[: cfg.max_examples]
    if not examples:
        raise ConfigError(f"split={cfg.split}: this run's {cfg.split} split has no examples to read")
    size = datamodule.batch_size
    batches = [
        {key: value.to(device) for key, value in datamodule.collate(examples[start : start + size]).items()}
        for start in range(0, len(examples), size)
    ]
    started = time.perf_counter()
    result = analyze_lens(model, datamodule.kind, batches, cfg.split)
    settings = {"split": cfg.split, "max_examples": cfg.max_examples}
    about = loaded.about(target, device, {"lens": time.perf_counter() - started}, settings=settings)
    pictures = rendered(figures(result))  # drawn once, for the files and TensorBoard alike
    write_lens(result, target.out, about, pictures)
    if loaded.writes_tensorboard(target):
        write_tensorboard(result, target.run_dir, about["step"], about, pictures)
    last = result.layers[-1]
    log(f"  {cfg.split} loss {result.loss:.4g}; the last layer's lens loss {last.loss:.4g}; written: {target.out}")
    return target.out


INDUCTION_SEQUENCES = 128  # analysis=induction without max_examples: sequences read
INDUCTION_HALF = 32  # tokens per half of each sequence, at most (a model trained on shorter ones: half its length)


def induction_checkpoint(
    target: Target, cfg: DictConfig, device: torch.device, log: Callable[[str], None] = print
) -> Path:
    """Induction and previous-token heads of one decoder-only checkpoint (src/analysis/induction.py), read on
    repeated random sequences, into target.out (src/analysis/induction_report.py); with the step of the phase change
    in the run's val/repeated_loss curve (its metrics.json), when it has one."""
    from src.analysis.induction import head_table, repeated_losses, repeated_random_batches
    from src.analysis.induction_report import (
        InductionAnalysis,
        figures,
        read_phase_change,
        write_induction,
        write_tensorboard,
    )
    from src.dashboard.rendering import rendered

    loaded = load_for_analysis(target, cfg, device, log)  # its architecture was checked: check_induction
    model, datamodule = loaded.model, loaded.datamodule
    # within the length the model trained on (its task's longest sequence; a pretrained model's positions)
    trained_length = datamodule.max_tgt_len or model.cfg.max_len
    half = min(INDUCTION_HALF, model.cfg.max_len // 2, trained_length // 2)
    count = cfg.max_examples or INDUCTION_SEQUENCES
    batches = repeated_random_batches(model, count, half, batch_size=datamodule.batch_size)
    started = time.perf_counter()
    heads, chance = head_table(model, batches)  # the batches carry their repeats: none is searched for
    result = InductionAnalysis(count, half, heads, math.nan, math.nan, chance=chance)
    induction_heads = result.standing_out("induction")
    intact, without = repeated_losses(model, batches, None, [[], induction_heads or []])
    result.loss = intact
    result.loss_without_induction_heads = without if induction_heads else math.nan
    # the training curve: a run's metrics.json (a pretrained model's target has no run directory of its own)
    result.phase = read_phase_change(target.run_dir) if target.run_dir != target.out else None
    about = loaded.about(target, device, {"induction": time.perf_counter() - started})
    pictures = rendered(figures(result))  # drawn once, for the files and TensorBoard alike
    write_induction(result, target.out, about, pictures)
    if loaded.writes_tensorboard(target):
        write_tensorboard(result, target.run_dir, about["step"], about, pictures)
    listed = ", ".join(induction_heads) or "none"
    if result.phase is not None:
        log(f"  {result.phase.describe()}")
    log(f"  induction heads: {listed}; loss on the repeats {intact:.4g}; written: {target.out}")
    return target.out


def check_patching(target: Target, model_cfg, cfg: DictConfig, first: bool, checkpoint: dict) -> None:
    """analysis=patching against one target's model, before any work: the path patching heads (path_pairs), the
    pairs file's lines (their fields and repeats: the tokens are checked once the model's tokenizer is read), and
    without a file, that the checkpoint's task makes pairs of its own."""
    from src.data.pairs import pairs_file_lines
    from src.data.registry import task_spec
    from src.model.config import ARCHITECTURES

    path_pairs(cfg, model_cfg, warn=first)
    if cfg.pairs is not None:
        pairs_file_lines(resolve_path(cfg.pairs), ARCHITECTURES[model_cfg.arch].task_kind)
        return
    hparams = checkpoint["hyper_parameters"]
    reading_only = (hparams.get("pretrained") or {}).get("reading_only", False)  # ckpt=hf: without a task
    task_name = None if reading_only else hparams["config"]["task"]["name"]
    if task_name is None or task_spec(task_name).pairs is None:
        raise ConfigError(no_pairs_line(task_name))


def check_induction(target: Target, model_cfg, cfg: DictConfig, first: bool, checkpoint: dict) -> None:
    """analysis=induction reads a decoder-only model's self-attention: another architecture is refused before any
    work, from the checkpoint's model config."""
    from src.data.tasks.induction import KIND
    from src.model.ablation import layout_of
    from src.model.config import ARCHITECTURES

    sites = layout_of(model_cfg)
    if ARCHITECTURES[model_cfg.arch].task_kind != KIND:  # not the induction task's kind (lm): no decoder-only model
        raise ConfigError(
            f"analysis=induction reads a decoder-only model's self-attention: {target.checkpoint} has "
            f"{', '.join(sites)}: use {' or '.join(f'analysis={name}' for name in ANALYSES if name != 'induction')}"
        )


@dataclass(frozen=True)
class AnalysisKind:
    """One `analysis=` of src.analyze: the folder it writes in a run directory, what it measures (for --help and
    messages), the function that analyses one checkpoint into a Target, and the check of a target's model config
    that runs for every target before any work (None: nothing beyond `ablate.*`)."""

    folder: str
    what: str
    run: Callable[[Target, DictConfig, torch.device], Path]
    check: Callable[[Target, Any, DictConfig, bool, dict], None] | None = None


def _heads(target: Target, cfg: DictConfig, device: torch.device) -> Path:
    return analyze_checkpoint(target, cfg, device, ablate=cfg.ablate, batch_size=cfg.batch_size)


ANALYSES = {
    "heads": AnalysisKind(ANALYSIS_DIR, "head importance, entropy, single-head ablations and a pruning curve", _heads),
    "patching": AnalysisKind(
        "patching", "activation patching, attribution patching and path patching on counterfactual pairs",
        patch_checkpoint, check_patching,
    ),
    "lens": AnalysisKind("lens", "the logit lens and direct logit attribution over the split", lens_checkpoint),
    "induction": AnalysisKind(
        "induction", "induction and previous-token heads on repeated random sequences", induction_checkpoint,
        check_induction,
    ),
}  # fmt: skip


def preflight(targets: list[Target], cfg: DictConfig, kind: AnalysisKind) -> None:
    """`ablate.*` and the analysis's own check against every target's model (each of a sweep's may differ), before
    any work: a refusal never comes after a first job's analysis is written."""
    from src.cli.validation import check_ablation
    from src.training.checkpoint import checkpoint_model_config, read_checkpoint

    for index, target in enumerate(targets):
        checkpoint = target.read or read_checkpoint(str(target.checkpoint))
        model_cfg = checkpoint_model_config(checkpoint)
        check_ablation(cfg.ablate, model_cfg, warn=index == 0)  # a repeated head: said once, not once per run
        if kind.check is not None:
            kind.check(target, model_cfg, cfg, index == 0, checkpoint)


def pretrained_target(cfg: DictConfig) -> Target:
    """ckpt=hf:<model> task=... out=<new folder>: a pretrained model analysed on a task's data. It has no run
    directory, so the analysis goes to `out` (never into an existing folder) and not into a TensorBoard."""
    from src.training.checkpoint import read_any_checkpoint

    if cfg.get("task") is None and cfg.analysis == "patching" and cfg.pairs is not None:
        pass  # the pairs file is the data: the model's own tokenizer reads it
    elif cfg.get("task") is None and cfg.analysis == "induction":
        pass  # it makes its own sequences of the model's tokens
    elif cfg.get("task") is None:
        from src.data.registry import task_kind
        from src.model.config import ARCHITECTURES
        from src.pretrained import pretrained_config

        kind = task_kind(ARCHITECTURES[pretrained_config(str(cfg.ckpt)[3:].strip())[0].arch].task_kind)
        raise ConfigError(f"ckpt={cfg.ckpt} is analysed on a task's data: give one, e.g. {kind.example_task}")
    if cfg.out is None or not str(cfg.out).strip():
        raise ConfigError(f"ckpt={cfg.ckpt} has no run directory to write into: give out=<a new folder>")
    out = resolve_path(cfg.out)
    if out.exists():
        raise ConfigError(f"out={cfg.out} exists: give a folder that does not exist yet")
    if not out.parent.is_dir():
        raise ConfigError(f"out={cfg.out}: the folder {out.parent} does not exist: create it or choose another")
    checkpoint = read_any_checkpoint(cfg.ckpt, cfg.get("task"))
    return Target(Path(cfg.ckpt), out, out, tensorboard=False, read=checkpoint)


def analyze(cfg: DictConfig) -> list[Path]:
    _WARNED.clear()  # once per command (the tests run several in one process)
    check_settings(cfg)
    kind = ANALYSES[cfg.analysis]
    device = device_for(cfg.accelerator)
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    if str(cfg.ckpt).startswith("hf:"):
        targets, sweep_dir = [pretrained_target(cfg)], None
    else:
        if cfg.get("task") is not None:
            raise ConfigError(f"task= is for ckpt=hf:<model>: ckpt={cfg.ckpt} brings its own task: leave task= out")
        targets, sweep_dir = find_targets(cfg.ckpt, cfg.out, kind.folder)
    preflight(targets, cfg, kind)
    written = []
    for target in targets:
        try:
            written.append(kind.run(target, cfg, device))
        except KeyboardInterrupt:  # the analysis is written whole or not at all (write_analysis)
            print(
                f"interrupted: {target.out} was not written"
                + (f" ({len(written)} analyses before it were)" if written else "")
                + f"; rerun: {command_line('src.analyze')}",
                file=sys.stderr,
            )
            sys.exit(130)
    if sweep_dir is not None:
        from src.report import report_sweep

        try:
            report_sweep(sweep_dir)
        except KeyboardInterrupt:  # every analysis is written: only the report is left to make
            print(
                f"interrupted while the sweep's report was written: the {len(written)} analyses are; rewrite the "
                f"report: {module_command('src.report', shlex.quote(str(sweep_dir)))}",
                file=sys.stderr,
            )
            sys.exit(130)
    return written


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="analyze")
def main(cfg: DictConfig) -> None:
    with user_errors_as_one_line("src.analyze"):
        analyze(cfg)


def cli() -> None:
    """The console script's entry point (pyproject.toml) and `python -m src.analyze`'s."""
    run_hydra_command(main)


if __name__ == "__main__":
    cli()
