"""Semantic checks of a composed config, run before anything is built.

Hydra has already checked shapes and types against the schema (src/cli/schema.py); what is left are values that are
each fine but cannot work together: heads not dividing d_model, an encoder-only model on a translation task, a
data file that does not exist, ... `validate_config` raises `ConfigError` (or the data layer's `DataError`) with
one line naming the field and the fix; the commands print it as `error: ...` and exit with status 2, never a
traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from src.cli.schema import (
    ARCH_FOR_KIND,
    DROPOUTS,
    AblateConfig,
    AnalysisConfig,
    Config,
    DashboardConfig,
    DecodeConfig,
    ModelConfig,
    OptimizerConfig,
    ReportConfig,
    job_overrides,
    model_config_for,
    override_keys,
    resolve_arch,
)
from src.cli.trainer_checks import check_trainer
from src.data import all_tasks, task_spec
from src.data.files import resolve_path
from src.data.registry import KINDS, resolve_task_config, task_kind
from src.model import ConfigError, TransformerConfig
from src.model.ablation import ABLATION_METHODS, Ablation, layout_of, parse_ablation
from src.model.config import ARCHITECTURES, unknown_choice
from src.model.decoding import STRATEGIES, ngram_banning_strategies
from src.model.masks import MASK_SCHEMES
from src.model.names import head_name, layer_name
from src.provenance import module_command
from src.training.loggers import LOGGERS, check_logger, unread_settings
from src.training.metrics import metric_tags, objective_choices
from src.training.optim import OPTIMIZERS
from src.training.report import print_warning
from src.training.stock_callbacks import check_stock_callbacks

if TYPE_CHECKING:
    import torch

ARCH_CHOICES = ("auto", *ARCHITECTURES)
DECODE_STRATEGIES = tuple(STRATEGIES)  # decode.strategy: src/model/decoding.py STRATEGIES


def _check_choice(field_name: str, value: str, allowed: tuple[str, ...], names: str = "") -> None:
    if value not in allowed:
        raise unknown_choice(field_name, value, allowed, names)  # `names`: what it names, for a typed true or false


def check_finite_settings(cfg: DictConfig, skip: tuple[str, ...] = ("hydra", "model", "meta")) -> None:
    """Every real-number setting is a finite number: a range check written as a comparison lets nan through
    (`nan <= 0` is false), so optimizer.lr=nan would train and stop as diverged at its first step, with advice about
    the learning rate. `skip`: nodes checked where they are read (the model config's own, TransformerConfig.validate,
    which names each axis's default), and the user's notes (meta: read by nothing)."""

    def walk(node: Any, path: str, optional: bool = False) -> None:
        if isinstance(node, DictConfig):
            for key in node:
                if (path or key not in skip) and not OmegaConf.is_missing(node, key):
                    try:  # an interpolation (${oc.env:LR}) as it resolves: a float-typed setting converts it
                        value = node[key]
                    except Exception:  # noqa: BLE001 (one that cannot resolve is said where it is read)
                        continue
                    walk(value, f"{path}{key}.", node._get_node(key)._is_optional())
        elif isinstance(node, ListConfig):
            for index, item in enumerate(node):
                walk(item, f"{path.rstrip('.')}[{index}].")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{path.rstrip('.')}={node} is not a finite number: give one{' (or null)' * optional}")

    walk(cfg, "")


def check_layer_count(cfg: DictConfig, arch: str | None = None) -> None:
    """model.layers=null is what a fine-tuned run's config says of a model whose stacks differ in depth; typed, it
    leaves the stacks of `arch` that follow it (model.enc_layers, model.dec_layers) without a count. Without `arch`
    (the architecture is not known yet), only the pretrained case: model.layers is the model's own."""
    if cfg.model.layers is not None:
        return
    if cfg.model.get("pretrained"):
        raise ConfigError(
            f"model.layers is set by model.pretrained={cfg.model.pretrained} (its config.json): leave model.layers out"
        )
    if arch is None:
        return
    built = ARCHITECTURES[arch]
    stacks = {"enc_layers": built.has_encoder, "dec_layers": built.has_decoder}
    following = [key for key in stacks if OmegaConf.is_interpolation(cfg.model, key)]
    used = [f"model.{key}" for key in following if stacks[key]]
    if used:
        raise ConfigError(
            f"model.layers=null leaves {' and '.join(used)} without a layer count: give model.layers=N, or "
            + " and ".join(f"{key}=N" for key in used)
        )
    if following:  # only a stack this architecture does not build still follows it: the config cannot be read
        given = " and ".join(f"model.{key}={cfg.model[key]}" for key in stacks if stacks[key])
        raise ConfigError(
            f"model.layers=null leaves model.{following[0]}, which follows it, without a count: leave model.layers "
            f"out ({given} sets the layers arch={arch} has)"
        )


def _check_file(field_name: str, path: str) -> None:
    resolved = resolve_path(path)
    if resolved.is_dir():
        raise ConfigError(f"{field_name}={path} is a directory ({resolved}): give the data file inside it")
    if not resolved.is_file():
        raise ConfigError(f"{field_name}={path} does not exist (looked at {resolved}): fix the path")


def validate_config(cfg: DictConfig, overrides: list[str] | None = None, runs_here: bool = True) -> None:
    """Raise ConfigError (one line: the field and the fix) for a config that cannot work. Cheap: reads no data
    but checks that data files exist; runs before the datamodule and the model are built. `overrides`: the
    command line's (None: this Hydra job's). `runs_here`: the run trains on this machine, so the GPUs it asks for
    must be visible here (a SLURM sweep's jobs run on the cluster's nodes, and are checked where they run).

    One value is settled rather than checked: with `runs_here`, trainer.precision=auto becomes this machine's
    (src.cli.schema.resolve_precision) in `cfg` itself, so that the Trainer, the checkpoints and the resume check all
    see the precision the run trains in; .hydra/config.yaml keeps the `auto` the run was given."""
    check_no_added_keys(cfg)
    check_finite_settings(cfg)
    check_layer_count(cfg)
    name = cfg.task.name
    spec = task_spec(name)  # DataError (one line) for an unknown task
    check_pretrained(cfg, job_overrides() if overrides is None else overrides)

    # --- model and mask ---
    _check_choice("model.arch", cfg.model.arch, ARCH_CHOICES, "the architecture")
    arch, needed = resolve_arch(cfg), ARCH_FOR_KIND[spec.kind]
    if arch != needed:
        raise ConfigError(
            f"model.arch={arch} cannot train task={name} ({spec.kind}): use model.arch={needed} (or model.arch=auto)"
        )
    check_layer_count(cfg, arch)
    # The model's own checks (choices, heads | d_model, rope's even head size, dropout range, the mask scheme's
    # settings, ...), with placeholder vocabulary sizes: the real ones are known after the data is read and are
    # checked again then.
    model_config_for(cfg).validate()
    # the sites, layers and heads the model has
    check_ablation(cfg.ablate, model_config_for(cfg), training=True, overrides=overrides, warn=False)

    # --- task: required fields, data files, the task's own checks, and whether the model is long enough ---
    for key in cfg.task:
        if OmegaConf.is_missing(cfg.task, key):
            raise ConfigError(f"task.{key} is required for task={name}: set task.{key}=...")
    for key in spec.file_fields:
        if cfg.task[key] is not None:
            _check_file(f"task.{key}", cfg.task[key])
    spec.validate(cfg.task)
    need = spec.longest_sequence(cfg.task)
    # (a pretrained model's positions are its config.json's, not model.max_len: check_data checks the task against
    # them, with its tokenizer's marks)
    if need is not None and not cfg.model.get("pretrained") and cfg.model.max_len < need:
        raise ConfigError(
            f"model.max_len={cfg.model.max_len} is shorter than the longest sequence task={name} produces "
            f"({need} tokens): set model.max_len={_round_up(need)} or shorten the task's lengths"
        )

    # --- training ---
    check_optimizer(cfg.optimizer)
    check_trainer(cfg.trainer, runs_here)  # trainer_checks.py
    checkpoints = [f"checkpoint.{key}" for key in ("save_best", "save_last") if cfg.checkpoint[key]]
    checkpoints += ["checkpoint.every_n_train_steps"] * (cfg.checkpoint.every_n_train_steps > 0)
    if cfg.trainer.get("enable_checkpointing") is False and checkpoints:
        raise ConfigError(
            f"trainer.enable_checkpointing=false beside the run's own checkpoints ({', '.join(checkpoints)}), which "
            "Lightning refuses: choose the checkpoints with checkpoint.* instead, e.g. checkpoint.save_best=false"
        )
    if cfg.num_workers < 0:
        raise ConfigError(f"num_workers={cfg.num_workers} must be >= 0 (0 = load data in the training process)")
    for key in ("attention_examples", "probe_size", "text_examples"):
        if cfg.dashboard[key] < 1:
            raise ConfigError(
                f"dashboard.{key}={cfg.dashboard[key]} must be >= 1 (turn the logger off with its switch)"
            )
    if cfg.checkpoint.every_n_train_steps < 0:
        raise ConfigError(f"checkpoint.every_n_train_steps={cfg.checkpoint.every_n_train_steps} must be >= 0 (0 = off)")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing={cfg.label_smoothing} must be in [0, 1)")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} must be >= 1")
    check_logger(cfg.logger)
    check_stock_callbacks(cfg.callbacks)
    check_early_stopping(cfg.callbacks.get("EarlyStopping"), spec)
    if cfg.dashboard.attention_every_n_steps < 0:
        raise ConfigError(
            f"dashboard.attention_every_n_steps={cfg.dashboard.attention_every_n_steps} must be >= 0 "
            "(0 = only at the end of training)"
        )
    validate_decode(cfg.decode)
    check_seed(cfg.seed)
    if cfg.progress_every_n_steps < 1:
        raise ConfigError(f"progress_every_n_steps={cfg.progress_every_n_steps} must be >= 1")
    check_threads(cfg.torch_threads)
    check_objective(cfg.objective, spec, cfg.test_after_fit)
    check_analysis_settings(cfg.analysis, prefix="analysis.")  # checked even unread: a bad value is a typo
    if cfg.max_loss is not None and not cfg.max_loss > 0:
        raise ConfigError(
            f"max_loss={cfg.max_loss} is not a loss bound: set a positive one, or max_loss=null to stop only on a "
            "non-finite loss"
        )


def check_optimizer(optimizer) -> None:
    """optimizer.*: each setting in the range its recipe (src/training/optim.py) can use. Checked whichever recipe is
    chosen (a setting it does not read gets its own warning: a bad value is a typo either way). torch's Adam and
    AdamW refuse a negative lr, eps or weight_decay and a beta outside [0, 1) only when the optimizer is made, after
    the run directory exists; min_lr_ratio, the floor of adamw_cosine's decay, is never checked there: below 0 the
    learning rate turns negative late in training, above 1 the "decay" climbs."""
    _check_choice("optimizer.name", optimizer.name, OPTIMIZERS)
    if optimizer.lr <= 0:
        raise ConfigError(f"optimizer.lr={optimizer.lr} must be > 0")
    if optimizer.warmup_steps < 0:
        raise ConfigError(f"optimizer.warmup_steps={optimizer.warmup_steps} must be >= 0")
    least = OPTIMIZERS[optimizer.name].min_warmup_steps
    if optimizer.warmup_steps < least:
        raise ConfigError(
            f"optimizer.warmup_steps={optimizer.warmup_steps} is too small for {optimizer.name} (its schedule "
            f"divides by it): set optimizer.warmup_steps={least} or more"
        )
    betas = list(optimizer.betas)
    if len(betas) != 2:
        raise ConfigError(f"optimizer.betas={betas} needs two values: set e.g. optimizer.betas=[0.9,0.98]")
    for index, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ConfigError(
                f"optimizer.betas={betas}: beta{index + 1}={beta} must be in [0, 1) (the decay of Adam's running "
                "averages): set e.g. optimizer.betas=[0.9,0.98]"
            )
    if optimizer.eps <= 0:  # torch takes 0, but a weight whose gradient has always been 0 then gets 0/0 = nan
        raise ConfigError(
            f"optimizer.eps={optimizer.eps} must be > 0 (Adam divides by sqrt(v) + eps, and v is 0 for a weight that "
            "has had no gradient yet): set e.g. optimizer.eps=1e-9"
        )
    if optimizer.weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay={optimizer.weight_decay} must be >= 0 (0 = no weight decay)")
    if not 0.0 <= optimizer.min_lr_ratio <= 1.0:
        raise ConfigError(
            f"optimizer.min_lr_ratio={optimizer.min_lr_ratio} must be in [0, 1]: the learning rate the cosine decay "
            "ends at, as a fraction of optimizer.lr (0: decay to 0, 1: no decay)"
        )


def check_data(cfg: DictConfig) -> None:
    """What building the run's data and model would refuse, found cheaply: the task's data files by their first
    part (TaskSpec.check_data: all of a file up to src.data.files.CHECKED_BYTES), and a pretrained model's tokenizer
    and weight files. src.run calls it before Hydra writes the run directory (src/cli/preflight.py), so a run refused
    for its data leaves nothing behind; what only the whole of a larger file shows is found when the run reads it
    (the run then ends as failed, and its run.json says why). Raises DataError or ConfigError with one line.
    Run after validate_config (the settings are known to be sound)."""
    spec = task_spec(cfg.task.name)
    pretrained = cfg.model.get("pretrained")
    spec.check_data(resolve_task_config(cfg.task), bool(pretrained))
    if pretrained:
        check_pretrained_files(str(pretrained), cfg.task, spec)


def check_pretrained_files(name: str, task: DictConfig, spec) -> None:
    """model.pretrained: its tokenizer loads and fits the model (src/data/pretrained_tokenizer.py), its weights fit
    its config (names and shapes, read from the files' headers: check_weights), and the task's longest sequence (with
    the tokenizer's marks: BERT's [CLS] and [SEP]) fits its positions."""
    from src.data.pretrained_tokenizer import model_tokenizer
    from src.pretrained import check_weights, pretrained_config
    from src.pretrained.fit import check_length

    model_cfg, directory, _ = pretrained_config(name)
    tokenizer = model_tokenizer(name)
    check_weights(name)
    longest = spec.longest_sequence(task)
    # a source is wrapped in the tokenizer's marks (the data's bound)
    if longest is not None and task_kind(spec.kind).reads_source:
        longest = max(longest, task.max_len + tokenizer.marks)
    if longest is not None:
        check_length(f"model.pretrained={name}", model_cfg, longest)


# What the task reads with its own vocabulary, and which a pretrained model's tokenizer replaces.
OWN_TOKENIZER_SETTINGS = ("task.vocab_size", "task.tokenizer", "task.lowercase")


def check_pretrained(cfg: DictConfig, overrides: list[str]) -> None:
    """model.pretrained=<name or directory>: its config.json fixes the architecture, so a model.* setting beside it
    (but model.dropout) is refused rather than ignored; the task must read text (it reads it with the model's
    tokenizer). The model's config is read first, so a missing, unreachable or unsupported model is refused before
    anything else, and before any work."""
    name = cfg.model.get("pretrained")
    if not name:
        return
    from src.pretrained import pretrained_config

    if not str(name).strip() or str(name).startswith("hf:"):
        raise ConfigError(
            f"model.pretrained={name!r}: give a hub name or a model directory (without hf:, which is for ckpt=), "
            "or leave it out to train from scratch"
        )
    model_cfg, _, hf_config = pretrained_config(name)  # a missing or unsupported model first: nothing else then
    from src.pretrained.run_config import composed_model_settings

    given = override_keys(overrides)
    fixed = list(dict.fromkeys(key for key in given if key == "model" or key.startswith("model.")))
    fixed = [key for key in fixed if key not in PRETRAINED_MAY_SET]
    if fixed:
        raise ConfigError(
            f"{fixed[0]} is set by model.pretrained={name} (its config.json): leave {', '.join(fixed)} out "
            "(model.dropout, model.attention_dropout and model.ffn_dropout may be set)"
        )
    # the same settings chosen by a config file (an experiment's model.heads, or its override /model: small)
    chosen = [key for key in composed_model_settings(cfg.model, overrides) if key not in PRETRAINED_MAY_SET]
    if chosen:
        raise ConfigError(
            f"{chosen[0]} is set by model.pretrained={name} (its config.json), and a config file (an experiment's?) "
            f"sets it too: take {', '.join(chosen)} out of it (model.dropout, model.attention_dropout and "
            "model.ffn_dropout may be set)"
        )
    spec = task_spec(cfg.task.name)
    if not spec.reads_text:
        readers = ", ".join(task for task, other in all_tasks().items() if other.reads_text)
        raise ConfigError(
            f"model.pretrained={name} reads text with its own tokenizer, and task={cfg.task.name} has its own "
            f"symbols: choose a task that reads text ({readers})"
        )
    from src.pretrained.fit import check_src_prefix, check_task_kind

    check_task_kind(f"model.pretrained={name}", model_cfg, cfg.task.name)
    if "src_prefix" in cfg.task:  # a translation task: the prefixes T5's config.json names
        check_src_prefix(f"model.pretrained={name}", hf_config, cfg.task.src_prefix)


def warn_unread_tokenizer_settings(cfg: DictConfig) -> None:
    """One warning for the task's own tokenizer settings given beside model.pretrained (its tokenizer reads)."""
    name = cfg.model.get("pretrained")
    unused = [key for key in override_keys(job_overrides()) if key in OWN_TOKENIZER_SETTINGS]
    if name and unused:
        print_warning(
            f"{', '.join(unused)} {'are' if len(unused) > 1 else 'is'} not used: model.pretrained={name} reads the "
            "text with its own tokenizer"
        )


def warn_if_no_src_prefix(cfg: DictConfig) -> None:
    """One warning when a pretrained model trained with a prefix in front of every source (T5, whose config.json
    names its prefixes) is fine-tuned on a translation task without task.src_prefix; and one when a model trained
    from scratch is given a prefix, which only costs it positions."""
    name = cfg.model.get("pretrained")
    if "src_prefix" not in cfg.task:
        return
    if not name and cfg.task.src_prefix:
        print_warning(
            f"task.src_prefix={cfg.task.src_prefix!r} puts the same text in front of every source of a model trained "
            "from scratch, which tells it nothing and takes its tokens from task.max_len: a prefix is for a "
            "pretrained model trained with one (model.pretrained=t5-small); leave it out here"
        )
        return
    if not name or cfg.task.src_prefix:
        return
    from src.pretrained import pretrained_config
    from src.pretrained.fit import missing_prefix_line

    line = missing_prefix_line(f"model.pretrained={name}", pretrained_config(name)[2], cfg.task)
    if line is not None:
        print_warning(line)


PRETRAINED_MAY_SET = ("model.pretrained", *(f"model.{name}" for name in DROPOUTS))


def check_ablation(
    ablate,
    model_cfg: TransformerConfig,
    training: bool = False,
    overrides: list[str] | None = None,
    warn: bool = True,
) -> Ablation:
    """`ablate.*` against the model `model_cfg` describes: ConfigError (one line) for a spec the model cannot take
    (parse_ablation: an unknown site or method, a layer or head out of range, bad syntax) and for no reference
    examples. `training`: src.run, where mean ablation is refused, since a head's mean output needs a trained
    model to take it from (src.eval, src.predict and src.analyze have one). `warn`: one warning for a head or
    sublayer named more than once (False where the command checks the same settings again, and warns then)."""
    try:
        ablation = parse_ablation(ablate, model_cfg)
    except ConfigError as error:
        preset = chosen_ablate_preset(overrides)
        if preset is None:
            raise
        # the user typed ablate=<preset>, not the heads it sets: name what they typed first
        raise ConfigError(f"ablate={preset} (conf/ablate/{preset}.yaml) does not fit this model: {error}") from None
    if warn and (repeated := repeated_ablation_line(ablate, model_cfg)) is not None:
        print_warning(repeated)
    examples = ablate.get("reference_examples", 1)
    if examples < 1:
        raise ConfigError(
            f"ablate.reference_examples={examples} must be >= 1 (training examples mean ablation averages over)"
        )
    if training and ABLATION_METHODS[ablation.method].needs_reference:
        raise ConfigError(
            f"ablate.method={ablation.method} needs a trained model to take each head's mean output from: train "
            "with ablate.method=zero, and use mean ablation with src.eval, src.predict or src.analyze ckpt=<run>"
        )
    return ablation


def repeated_ablation_line(ablate, model_cfg: TransformerConfig) -> str | None:
    """The warning for heads (or sublayers) that `ablate.heads` (`ablate.sublayers`) names more than once, by one
    spec given twice (`[cross:1:2,cross:1:2]`) or by two that overlap (`[cross:1,cross:1:2]`): legal, since each is
    switched off once however often it is named, but a list that names one twice may have meant another. None when
    every one is named once. The specs are valid (parse_ablation read them)."""
    said = []
    for key, unit in (("heads", "head"), ("sublayers", "sublayer")):
        given = (ablate or {}).get(key)
        specs = ([given] if given.strip() else []) if isinstance(given, str) else [str(s) for s in given or []]
        named_by: dict[str, list[str]] = {}  # each head (site:layer:head) or sublayer (site:layer): its specs
        for spec in specs:
            alone = parse_ablation({key: [spec]}, model_cfg)
            chosen = alone.heads if key == "heads" else alone.sublayers
            for site, items in chosen.items():
                for item in items:
                    name = head_name(site, *item) if key == "heads" else layer_name(site, item)
                    named_by.setdefault(name, []).append(spec.strip())
        repeated = {name: by for name, by in named_by.items() if len(by) > 1}
        if not repeated:
            continue
        names = list(repeated)
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} {unit}s)" if len(names) > 4 else "")
        specs_involved = list(dict.fromkeys(spec for by in repeated.values() for spec in by))
        times = len(repeated[names[0]])
        by_what = (
            f"{specs_involved[0]} is given {'twice' if times == 2 else f'{times} times'}"
            if len(specs_involved) == 1
            else f"by {', '.join(specs_involved)}"
        )
        said.append(
            f"ablate.{key} names {shown} more than once ({by_what}): each {unit} is switched off once however often "
            f"it is named: name each {unit} once, or check whether another was meant"
        )
    return "; ".join(said) or None


def chosen_ablate_preset(overrides: list[str] | None = None) -> str | None:
    """The `ablate=` option the command line chose (cross, decoder_ffn) when what it sets was not typed beside it;
    None for `none`, for ablate.* settings typed too, or for no choice. `overrides`: the command line's (None: this
    Hydra job's, or none outside a command)."""
    from hydra.core.hydra_config import HydraConfig

    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    chosen = [override.split("=", 1)[1] for override in overrides if override.startswith("ablate=")]
    typed = any(override.lstrip("+~").startswith("ablate.") for override in overrides)
    return None if not chosen or chosen[-1] == "none" or typed else chosen[-1]


def warn_if_every_head_ablated(ablation: Ablation, model_cfg: TransformerConfig) -> None:
    """Training with every attention head off (gated, or its sublayer removed) is legal, a baseline even, but no
    position can then read any other: one warning, so that a spec list that happens to cover every site does not
    go unnoticed."""
    layout = layout_of(model_cfg)
    for site, (layers, heads) in layout.items():
        removed = set(ablation.sublayers.get(site, ()))
        gated = [layer for layer, _ in ablation.heads.get(site, ())]
        if any(layer not in removed and gated.count(layer) < heads for layer in range(layers)):
            return  # a head of this layer still attends
    total = sum(layers * heads for layers, heads in layout.values())
    print_warning(
        f"ablate switches off every attention head of the model (all {total}, in {', '.join(layout)}), so no "
        "position can read any other while it trains: keep some heads if you meant the model to attend"
    )


def check_objective(objective: str | None, spec, test_after_fit: bool) -> None:
    """`objective=` must name a metric the run will have at its end, or a sweeper would get nothing back."""
    if objective is None:
        return
    choices = objective_choices(spec.kind, spec.bleu, test_after_fit, spec.metric_names)
    if objective in choices:
        return
    if objective in objective_choices(spec.kind, spec.bleu, test_after_fit=True, task_metrics=spec.metric_names):
        raise ConfigError(f"objective={objective} is measured only after training: set test_after_fit=true")
    raise ConfigError(f"objective={objective} is not a metric task={spec.name} logs: choose one of {choices}")


def check_early_stopping(arguments, spec) -> None:
    """`+callbacks.EarlyStopping.monitor=` must name a metric the run logs while it trains (a typo would surface as
    Lightning's error once training had begun), and `mode` must be min or max."""
    if not arguments:
        return
    monitor, mode = arguments.get("monitor"), arguments.get("mode")
    during_training = [*metric_tags(spec.kind, spec.bleu, spec.metric_names), "train/loss"]
    if monitor is not None and monitor not in during_training:
        raise ConfigError(
            f"callbacks.EarlyStopping.monitor={monitor} is not a metric task={spec.name} logs while it trains: "
            f"choose one of {', '.join(during_training)}"
        )
    if mode is not None and mode not in ("min", "max"):
        raise ConfigError(
            f"callbacks.EarlyStopping.mode={mode} is not a mode: write min or max (or leave it out: the monitored "
            "metric's own direction)"
        )


ANALYSIS_SPLITS = ("val", "test")


def check_analysis_settings(settings, prefix: str = "", all_examples: str = "the whole split") -> None:
    """The head analysis's settings (AnalysisConfig): `analysis.*` of src.run (prefix "analysis.", read with
    analyze_after_fit=true) and src.analyze's own top-level ones (no prefix). One place, so the two commands refuse
    the same values with the same line. `all_examples`: what leaving max_examples out reads."""
    if settings.split not in ANALYSIS_SPLITS:
        raise ConfigError(f"{prefix}split={settings.split!r} is not known: choose val or test")
    if settings.max_examples is not None and settings.max_examples < 1:
        raise ConfigError(
            f"{prefix}max_examples={settings.max_examples} must be >= 1 (or leave it out: {all_examples})"
        )
    if not 0.0 < settings.prune_step <= 1.0:
        raise ConfigError(
            f"{prefix}prune_step={settings.prune_step} must be in (0, 1]: the fraction of heads removed per step"
        )
    if settings.tolerance < 0:
        raise ConfigError(
            f"{prefix}tolerance={settings.tolerance} must be >= 0: the largest relative drop of the metric allowed"
        )
    # A drop of the whole unpruned value (BLEU, exact_match or accuracy down to 0) or more is every drop there is:
    # every head "can go within" it, whatever the heads do. (A loss can rise further, but a pruning curve read as
    # the loss doubling is no tolerance either.)
    if settings.tolerance >= 1:
        raise ConfigError(
            f"{prefix}tolerance={settings.tolerance} must be below 1: it is the largest drop of the metric allowed, "
            f"as a fraction of the unpruned model's value, and {settings.tolerance:.0%} allows any drop (every head "
            f"could go): give e.g. {prefix}tolerance=0.05 (5%)"
        )
    if settings.rows_per_batch < 1:
        raise ConfigError(f"{prefix}rows_per_batch={settings.rows_per_batch} must be >= 1")


def given_analysis_settings(settings) -> list[str]:
    """`analysis.<name>=<value>` for each analysis setting the command line gave or that differs from its default
    (an experiment's yaml may set them): what a run without analyze_after_fit=true would silently not read."""
    default, typed = AnalysisConfig(), typed_settings()
    return [
        f"analysis.{f.name}={written_value(settings[f.name])}"
        for f in dataclasses.fields(AnalysisConfig)
        if f"analysis.{f.name}" in typed or settings[f.name] != getattr(default, f.name)
    ]


def warn_unread_analysis_settings(cfg: DictConfig) -> None:
    """One warning when analysis.* is given but analyze_after_fit is off: legal, and nothing reads them."""
    if cfg.analyze_after_fit:
        return
    given = given_analysis_settings(cfg.analysis)
    if given:
        verb = "have" if len(given) > 1 else "has"
        as_analyze = " ".join(setting.removeprefix("analysis.") for setting in given)  # src.analyze's own names
        print_warning(
            f"{', '.join(given)} {verb} no effect without analyze_after_fit=true (the run is not analysed after "
            f"training): add analyze_after_fit=true, or analyse the run later with "
            f"{module_command('src.analyze', 'ckpt=<run>', as_analyze)}"
        )


def check_seed(seed: int) -> None:
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed} must be in [0, 2^32 - 1] (the generators' range): use e.g. seed=0")


def device_for(accelerator: str) -> torch.device:
    """The torch device `accelerator` names (Lightning's names: cpu, gpu, cuda, mps, auto), for the commands that
    read a trained model on one device: src.eval, src.analyze (and a run's analyze_after_fit). One check, one
    wording: a name they do not take, or a device this machine lacks, is one line with the fix."""
    import torch

    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator in ("gpu", "cuda", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if accelerator == "auto":
            return torch.device("cpu")
        raise ConfigError(f"accelerator={accelerator}: no CUDA GPU is available here: use accelerator=cpu")
    if accelerator == "mps":
        if torch.backends.mps.is_available():
            return torch.device("mps")
        raise ConfigError("accelerator=mps: MPS is not available here: use accelerator=cpu")
    raise ConfigError(f"accelerator={accelerator!r} is not known: choose cpu, gpu, mps or auto")


def check_threads(threads: int) -> None:
    if threads < 0:
        raise ConfigError(f"torch_threads={threads} must be >= 0 (0 = torch's default, one per core)")


# Groups where a key added with `+` is read after all: trainer.* goes to lightning.Trainer as it is, meta.* is the
# user's own notes.
OPEN_GROUPS = ("trainer", "meta", "callbacks")


def check_no_added_keys(cfg: DictConfig, prefix: str = "") -> None:
    """`+model.head=8` adds a key Hydra's schema does not have; nothing would read it, so the run would silently
    ignore what the user asked for. Refuse every key that is not a field of its node's schema."""
    schema = OmegaConf.get_type(cfg)
    if not prefix and not dataclasses.is_dataclass(schema):
        # The run's settings without Hydra's (preflight's masked copy of the composed config) have lost the root's
        # type, not their nodes': the root's schema is the run's Config (a top-level +foo=1)
        schema = Config
    known = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    for key in cfg:
        path = f"{prefix}{key}"
        if known is not None and key not in known:
            raise ConfigError(added_key_line(cfg, path, known))
        value = cfg._get_node(key)
        if isinstance(value, DictConfig) and path not in OPEN_GROUPS:
            check_no_added_keys(value, prefix=f"{path}.")


def added_key_line(node: DictConfig, path: str, known: set[str]) -> str:
    """Why `+path=...` is not read, and the fix: the task or mask scheme whose setting it is (`+task.tokenizer=bpe`
    with task=reverse belongs to task=classification), or the setting it is closest to (`+model.haeds`)."""
    group, _, key = path.rpartition(".")
    owners = options_with_setting(group, key)
    if owners:
        chosen = node.get("name") if group == "task" else node.get("type")
        names = ", ".join(f"{group}={option}" for option in owners)
        return f"{path} belongs to {names}, not to {group}={chosen}: choose {names.split(', ')[0]}, or drop +{path}"
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    if close:
        return (
            f"{path} is not a setting, so nothing would read it: did you mean {group + '.' if group else ''}"
            f"{close[0]}, without the +? ({module_command('src.run', '--cfg', 'job')} prints every setting)"
        )
    return (
        f"{path} is not a setting, so nothing would read it: check the spelling "
        f"({module_command('src.run', '--cfg', 'job')} prints every setting); keep your own notes under +meta.<name>"
    )


def options_with_setting(group: str, key: str) -> list[str]:
    """The task or mask options that have `key` among their settings (their schemas: src/cli/schema.py)."""
    if group == "task":
        return [name for name, spec in all_tasks().items() if key in {f.name for f in dataclasses.fields(spec.schema)}]
    if group == "mask":
        return [name for name, scheme in MASK_SCHEMES.items() if key in {f.name for f in dataclasses.fields(scheme)}]
    return []


# decode.strategy -> the decode.* settings only it reads, as each strategy says (src/model/decoding.py)
SETTINGS_OF_STRATEGY = {name: strategy.settings for name, strategy in STRATEGIES.items()}


def typed_settings() -> set[str]:
    """The settings the command line gave (`decode.beam_size` of `decode.beam_size=4`); none outside Hydra."""
    return set(override_keys(job_overrides()))


def given_decode_settings(decode, names) -> list[str]:
    """`decode.<name>=<value>` for each of `names` the command line gave or that differs from its default: a default
    typed out (decode.beam_size=4) is asked for as much as any other value."""
    default, typed = DecodeConfig(), typed_settings()
    return [
        f"decode.{name}={decode[name]}"
        for name in names
        if f"decode.{name}" in typed or decode[name] != getattr(default, name)
    ]


def warn_unused_decode_settings(decode, offered=tuple(SETTINGS_OF_STRATEGY), command: str = "src.predict") -> None:
    """One warning naming the decode.* settings given (typed, or not at their defaults) that the chosen strategy does
    not read, each with the strategy that reads it (SETTINGS_OF_STRATEGY). `offered`: the strategies `command` can
    decode with."""
    unused = {
        strategy: given_decode_settings(decode, names)
        for strategy, names in SETTINGS_OF_STRATEGY.items()
        if strategy != decode.strategy
    }
    unused = {strategy: given for strategy, given in unused.items() if given}
    if not unused:
        return
    named = []
    for strategy, given in unused.items():
        whose = "settings" if len(given) > 1 else "a setting"
        elsewhere = "" if strategy in offered else f", which {command} does not offer"
        named.append(f"{', '.join(given)} ({whose} of decode.strategy={strategy}{elsewhere})")
    several = sum(len(given) for given in unused.values()) > 1
    them = "them" if several else "it"
    fix = (
        f"choose the strategy {'they belong' if several else 'it belongs'} to, or leave {them} out"
        if any(strategy in offered for strategy in unused)
        else f"leave {them} out"
    )
    print_warning(f"decode.strategy={decode.strategy} does not use {', '.join(named)}: {fix}")


def validate_decode(decode) -> None:
    _check_choice("decode.strategy", decode.strategy, DECODE_STRATEGIES)
    if decode.beam_size < 1:
        raise ConfigError(f"decode.beam_size={decode.beam_size} must be >= 1")
    if decode.temperature <= 0:
        raise ConfigError(f"decode.temperature={decode.temperature} must be > 0 (use decode.strategy=greedy for 0)")
    if decode.top_k < 0:
        raise ConfigError(f"decode.top_k={decode.top_k} must be >= 0 (0 = off)")
    if not 0.0 < decode.top_p <= 1.0:
        raise ConfigError(f"decode.top_p={decode.top_p} must be in (0, 1] (1 = off)")
    if decode.max_new_tokens < 1:
        raise ConfigError(f"decode.max_new_tokens={decode.max_new_tokens} must be >= 1")
    if decode.no_repeat_ngram_size < 0:
        raise ConfigError(f"decode.no_repeat_ngram_size={decode.no_repeat_ngram_size} must be >= 0 (0 = off)")
    if decode.no_repeat_ngram_size > 0 and not STRATEGIES[decode.strategy].bans_ngrams:
        raise ConfigError(
            f"decode.no_repeat_ngram_size works with decode.strategy={' or '.join(ngram_banning_strategies())}: "
            "leave it out with beam search"  # the one strategy that cannot ban n-grams
        )


def warn_if_warmup_outlasts_training(cfg: DictConfig) -> None:
    """One warning when the learning-rate warm-up does not end before training does (trainer.max_steps at or below
    optimizer.warmup_steps): legal, and a quick try of a few steps does it, but the run then never trains at its
    learning rate: it reaches max_steps / warmup_steps of its peak (the same share for every recipe with a warm-up,
    adamw_cosine's linear ramp and the paper's), and adamw_cosine's decay never starts."""
    recipe, steps, warmup = OPTIMIZERS[cfg.optimizer.name], cfg.trainer.max_steps, cfg.optimizer.warmup_steps
    if "warmup_steps" not in recipe.reads or steps is None or steps < 1 or warmup < steps:
        return  # no warm-up in this recipe, or training bounded by time or epochs, or a warm-up that ends in time
    print_warning(
        f"optimizer.warmup_steps={warmup} is not below trainer.max_steps={steps}: the learning rate is still "
        f"warming up when training ends, and reaches only {steps / warmup:.0%} of its peak: lower "
        f"optimizer.warmup_steps (a tenth of the steps is usual: optimizer.warmup_steps={max(1, steps // 10)})"
    )


# --- settings the chosen options leave unread: legal, without effect, one warning line each ----------------------


def warn_unread_settings(cfg: DictConfig) -> None:
    """src.run's warnings for settings that are legal but that nothing reads with the options chosen, one `warning:`
    line for each group of such settings that the same options would read. A setting counts as given when it was
    typed on the command line or is set to another value than the default run's (see `given_settings`), so the
    default config and the experiments, whose settings are all read, print none.

    Each check asks the registry of its group what an option reads (OPTIMIZERS[...].reads, LOGGERS[...].reads, an
    architecture's arch_settings, a task's read_without, ABLATION_METHODS[...].needs_reference) rather than
    comparing names; where the code that reads a group has no registry (the dashboards, decode.* in src.run), the
    facts are tables here, next to the code they describe."""
    spec = task_spec(cfg.task.name)
    lines = [
        *unread_logger_settings(cfg),
        *unread_optimizer_settings(cfg),
        *unread_model_settings(cfg, spec),
        *unread_ffn_settings(cfg),
        *unread_positional_settings(cfg),
        *idle_rope_scaling(cfg),
        *unread_task_settings(cfg, spec),
        *unread_dashboard_settings(cfg, spec),
        *unread_decode_settings(cfg, spec),
        *unread_run_settings(cfg),
    ]
    for line in lines:
        print_warning(line)
    warn_unread_analysis_settings(cfg)
    warn_unread_tokenizer_settings(cfg)
    warn_if_no_src_prefix(cfg)


def written_value(value) -> str:
    """A value as an override types it: null, true, 0.1."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@functools.lru_cache(maxsize=1)
def default_run_values() -> DictConfig:
    """conf/config.yaml: the values the default run sets above the schema's (dashboard.attention_every_n_steps,
    batch_size, ...). Settings it does not name keep the schema's default."""
    from src.cli.command_line import CONF_DIR

    return OmegaConf.load(Path(CONF_DIR) / "config.yaml")


def given_settings(node: DictConfig, prefix: str, names, schema) -> list[str]:
    """`<prefix><name>=<value>` for each of `names` (settings of `node`, whose path is `<prefix><name>`) that was
    given: typed on the command line, or set, by an experiment or a group's yaml, to another value than the default
    run's (conf/config.yaml's, else the schema's: `schema` is an instance of the node's schema dataclass). A setting
    that still follows another by interpolation (model.enc_layers follows model.layers) was not given; one that no
    longer does was."""
    typed, given = typed_settings(), []
    for name in names:
        path = f"{prefix}{name}"
        if path not in typed:
            if OmegaConf.is_interpolation(node, name):
                continue
            default = OmegaConf.select(default_run_values(), path, default=getattr(schema, name))
            follows = isinstance(default, str) and default.startswith("${")  # the schema's own interpolation
            if not follows and node[name] == default:
                continue
        given.append(f"{path}={written_value(node[name])}")
    return given


def _and(items) -> str:
    """`a`, `a and b`, `a, b and c`."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def unread_line(given: list[str], context: str, readers: list[str], why: str = "", note: str = "") -> str:
    """The text of one warning: `<given> has no effect <context> (<why>): only <readers> reads it[; <note>]`."""
    several = len(given) > 1
    it = "them" if several else "it"
    who = f"only {_and(readers)} {'read' if len(readers) > 1 else 'reads'} {it}" if readers else f"nothing reads {it}"
    because = f" ({why})" if why else ""
    return f"{', '.join(given)} {'have' if several else 'has'} no effect {context}{because}: {who}" + (
        f"; {note}" if note else ""
    )


def grouped_lines(given: list[str], readers_of, context: str, why_of=lambda path: "", note: str = "") -> list[str]:
    """One warning line per group of `given` settings (`path=value`) with the same readers and reason, in order:
    `readers_of(path)` names what would read the setting at `path`, `why_of(path)` why nothing does here."""
    groups: dict[tuple, list[str]] = {}
    for setting in given:
        path = setting.split("=", 1)[0]
        groups.setdefault((tuple(readers_of(path)), why_of(path)), []).append(setting)
    return [unread_line(group, context, list(readers), why, note) for (readers, why), group in groups.items()]


def unread_logger_settings(cfg: DictConfig) -> list[str]:
    """logger.* that only other loggers read (LOGGERS[...].reads): logger.project with TensorBoard alone."""
    return grouped_lines(
        unread_settings(cfg.logger),
        lambda path: [name for name, option in LOGGERS.items() if path.removeprefix("logger.") in option.reads],
        f"with logger={cfg.logger.name}",
    )


def unread_optimizer_settings(cfg: DictConfig) -> list[str]:
    """optimizer.* that the chosen recipe does not read (OPTIMIZERS[...].reads): the schema has one field set for
    all of them, e.g. min_lr_ratio, the floor of adamw_cosine's decay, beside adam_noam's endless schedule."""
    recipe = OPTIMIZERS[cfg.optimizer.name]
    names = [f.name for f in dataclasses.fields(OptimizerConfig) if f.name != "name" and f.name not in recipe.reads]
    return grouped_lines(
        given_settings(cfg.optimizer, "optimizer.", names, OptimizerConfig()),
        lambda path: [name for name, other in OPTIMIZERS.items() if path.removeprefix("optimizer.") in other.reads],
        f"with optimizer={cfg.optimizer.name}",
        lambda path: recipe.why_unread.get(path.removeprefix("optimizer."), ""),
    )


def unread_model_settings(cfg: DictConfig, spec) -> list[str]:
    """model.* that only other architectures read (their classes' arch_settings): model.pooling without a
    classifier, model.enc_layers without an encoder, model.tie_embeddings without an output projection. Nothing with
    model.pretrained, whose config.json gives the architecture (and a model.* setting beside it is refused)."""
    if cfg.model.get("pretrained"):
        return []
    arch = resolve_arch(cfg)
    settings_of = {name: other.model_class().arch_settings for name, other in ARCHITECTURES.items()}
    others = dict.fromkeys(name for settings in settings_of.values() for name in settings)
    names = [name for name in others if name not in settings_of[arch]]

    def readers(path: str) -> list[str]:
        name = path.removeprefix("model.")
        return [
            f"{other} ({ARCHITECTURES[other].task_kind} tasks)"
            for other, settings in settings_of.items()
            if name in settings
        ]

    auto = f" (the architecture of task={spec.name})" if cfg.model.arch == "auto" else ""
    context = f"with model.arch={arch}{auto}"
    return grouped_lines(given_settings(cfg.model, "model.", names, ModelConfig()), readers, context)


def unread_ffn_settings(cfg: DictConfig) -> list[str]:
    """The feed-forward network's settings with model.ffn=false (attention-only layers), which build none: model.d_ff
    when typed on the command line (every model preset sets it, so its value alone says nothing), model.activation,
    model.ffn_dropout and model.ffn_bias when given; and model.parallel_layers, which has no FFN to put beside the
    attention (its own line: another reason). Nothing with model.pretrained (its layers have their feed-forward
    networks)."""
    if cfg.model.get("pretrained") or cfg.model.get("ffn", True):
        return []
    given = [f"model.d_ff={cfg.model.d_ff}"] if "model.d_ff" in typed_settings() else []
    given += given_settings(cfg.model, "model.", ["activation", "ffn_dropout", "ffn_bias"], ModelConfig())
    lines = []
    if given:
        why = "attention-only layers: no feed-forward sublayer"
        lines.append(unread_line(given, "with model.ffn=false", ["model.ffn=true"], why))
    # A parallel layer puts the FFN beside the attention: without an FFN, it is the sequential pre-LN layer
    parallel = given_settings(cfg.model, "model.", ["parallel_layers"], ModelConfig())
    if parallel:
        why = "an attention-only parallel layer is the sequential pre-LN layer: no FFN runs beside the attention"
        lines.append(unread_line(parallel, "with model.ffn=false", ["model.ffn=true"], why))
    return lines


def unread_positional_settings(cfg: DictConfig) -> list[str]:
    """The settings of one positional scheme given with another (model.rope_theta with model.pos_encoding=learned):
    each scheme names its own (PositionalScheme.settings). Nothing with model.pretrained (its config sets them)."""
    from src.model.positional import POSITIONAL_SCHEMES

    chosen = POSITIONAL_SCHEMES.get(cfg.model.pos_encoding)
    if cfg.model.get("pretrained") or chosen is None:
        return []
    readers: dict[str, list[str]] = {}
    for name, scheme in POSITIONAL_SCHEMES.items():
        for setting in scheme.settings:
            readers.setdefault(setting, []).append(f"model.pos_encoding={name}")
    unread = [name for name in readers if name not in chosen.settings]
    given = given_settings(cfg.model, "model.", [n for n in unread if n != "rope_scaling"], ModelConfig())
    if "rope_scaling" in unread and cfg.model.rope_scaling.type != "none":
        given.append(f"model.rope_scaling.type={cfg.model.rope_scaling.type}")
    if not given:
        return []
    return grouped_lines(
        given, lambda path: readers[path.split(".")[1]], f"with model.pos_encoding={cfg.model.pos_encoding}"
    )


def idle_rope_scaling(cfg: DictConfig) -> list[str]:
    """model.rope_scaling with factor 1 (linear's default), which scales no frequency: the run is the unscaled RoPE's
    while its config records a scaling. Legal, and not refused: a sweep over model.rope_scaling.factor=1,2,4,8 has
    its baseline at 1 (transformers takes factor 1.0 too). Nothing with model.pretrained (its config.json sets it),
    nor with another scheme (unread_positional_settings says it is unread there)."""
    from src.cli.schema import rope_scaling_settings
    from src.model.positional import build_rope_scaling

    if cfg.model.get("pretrained") or cfg.model.pos_encoding != "rope":
        return []
    settings = rope_scaling_settings(cfg.model.rope_scaling)
    scaling = build_rope_scaling(settings)
    if scaling is None or not scaling.scales_nothing():
        return []
    factor = (
        f"model.rope_scaling.factor={scaling.factor}"
        if "factor" in settings
        else f"its default factor {scaling.factor}"
    )
    return [
        f"model.rope_scaling.type={settings['type']} has no effect with {factor} (every frequency is divided by "
        "1: the unscaled RoPE): set model.rope_scaling.factor=N for N times the trained length, or leave "
        "model.rope_scaling out"
    ]


def unread_task_settings(cfg: DictConfig, spec) -> list[str]:
    """task.* that another given task setting replaces (the task's read_without): classification's
    task.val_fraction beside task.val_path, whose file is the validation split."""
    lines = []
    for name, other in spec.read_without:
        value = cfg.task.get(other)
        if value is None or value == "":
            continue
        given = given_settings(cfg.task, "task.", [name], spec.schema())
        if given:
            lines.append(
                unread_line(
                    given,
                    f"with task.{other}={value}",
                    [f"task={spec.name} without task.{other}"],
                    why=f"task.{other} replaces it",
                )
            )
    return lines


# The dashboard.* settings and the switches whose TensorBoard callbacks read them (src/run.py, dashboard_callbacks):
# with all of its switches off, a setting is read by nothing.
DASHBOARD_SETTINGS = {
    "attention_every_n_steps": ("attention_maps", "attention_stats"),
    "attention_examples": ("attention_maps",),
    "probe_size": ("attention_stats",),
    "text_examples": ("text_samples",),
}


def writes_tensorboard(cfg: DictConfig) -> bool:
    """Whether the run writes TensorBoard, where the dashboards go: every logger but none (with_tensorboard)."""
    return LOGGERS[cfg.logger.name].with_tensorboard


def unread_dashboard_settings(cfg: DictConfig, spec) -> list[str]:
    """dashboard.* that nothing draws: any of them with a logger that writes no TensorBoard (logger=none); a
    setting whose dashboards are switched off (DASHBOARD_SETTINGS); text_examples for an lm task."""
    default = DashboardConfig()
    if not writes_tensorboard(cfg):
        names = [f.name for f in dataclasses.fields(DashboardConfig)]
        writers = [f"logger={name}" for name, option in LOGGERS.items() if option.with_tensorboard]
        return grouped_lines(
            given_settings(cfg.dashboard, "dashboard.", names, default),
            lambda path: writers,
            f"with logger={cfg.logger.name}",
            lambda path: "it writes no TensorBoard, where the dashboards are drawn",
        )
    lines = []
    for name, switches in DASHBOARD_SETTINGS.items():
        given = given_settings(cfg.dashboard, "dashboard.", [name], default)
        if given and not any(cfg.dashboard[switch] for switch in switches):
            off = " and ".join(f"dashboard.{switch}=false" for switch in switches)
            lines.append(unread_line(given, f"with {off}", [f"dashboard.{switch}=true" for switch in switches]))
    # The text samples of a kind that reads a source are a table of dashboard.text_examples examples, one row per
    # source read (src/dashboard/text_samples.py); a kind without one (lm) samples one generated text.
    if cfg.dashboard.text_samples and not task_kind(spec.kind).reads_source:
        tables = [name for name, kind in KINDS.items() if kind.reads_source]
        lines += grouped_lines(
            given_settings(cfg.dashboard, "dashboard.", ["text_examples"], default),
            lambda path: [f"the text table of {_and(tables)} tasks"],
            f"with task={spec.name}",
            lambda path: f"the text sample of an {spec.kind} task is one generated text",
        )
    return lines


@dataclass(frozen=True)
class DecodeReader:
    """A part of src.run (or of what reads its checkpoint) that decodes with decode.* settings: which, and when."""

    what: str  # for the warning: "only <what> reads it"
    settings: tuple[str, ...]
    runs: Callable[[DictConfig, object], bool]  # (config, task spec) -> whether it decodes in this run
    # Whether it decodes with decode.strategy, and so reads a strategy's own settings (SETTINGS_OF_STRATEGY) only
    # with that strategy; the text samples always sample.
    by_strategy: bool = False


def _bleu_tasks() -> str:
    return ", ".join(name for name, spec in all_tasks().items() if spec.bleu)


# What decodes with decode.* in src.run: src.eval and src.predict take their own decode.* (EvalConfig, PredictConfig),
# so the run's are read only here. The test BLEU reads the settings src/training/bleu.py's score_split passes on (the
# beam's only with decode.strategy=beam, see unread_decode_settings); src.analyze (and analyze_after_fit) decodes a
# translation up to the run's max_new_tokens (src/analysis/scoring.py); an lm task's text sample is drawn with the
# run's sampling settings (src/training/inference.py, sample_text), whatever decode.strategy says.
RUN_DECODE_READERS = (
    DecodeReader(
        "the test BLEU of test_after_fit=true on a task scored with BLEU ({bleu})",
        ("strategy", "beam_size", "length_penalty", "max_new_tokens", "no_repeat_ngram_size"),
        lambda cfg, spec: cfg.test_after_fit and spec.bleu,
        by_strategy=True,
    ),
    DecodeReader(
        "the head analysis of a task scored with BLEU (analyze_after_fit=true, or src.analyze)",
        ("max_new_tokens",),
        lambda cfg, spec: spec.bleu,
    ),
    DecodeReader(
        "the text samples of an lm task (dashboard.text_samples)",
        SETTINGS_OF_STRATEGY["sample"],
        lambda cfg, spec: (
            not task_kind(spec.kind).reads_source and writes_tensorboard(cfg) and cfg.dashboard.text_samples
        ),
    ),
)


def unread_decode_settings(cfg: DictConfig, spec) -> list[str]:
    """decode.* that nothing in this run decodes with (RUN_DECODE_READERS): decode.strategy=beam on a task that is
    not scored with BLEU, or without test_after_fit=true. Where something does decode, a setting of another
    strategy than decode.strategy (SETTINGS_OF_STRATEGY): decode.beam_size with greedy decoding."""
    running = [reader for reader in RUN_DECODE_READERS if reader.runs(cfg, spec)]
    read = {name for reader in running for name in reader.settings}
    names = [f.name for f in dataclasses.fields(DecodeConfig) if f.name not in read]
    bleu = _bleu_tasks()
    lines = grouped_lines(
        given_settings(cfg.decode, "decode.", names, DecodeConfig()),
        lambda path: [
            reader.what.format(bleu=bleu)
            for reader in RUN_DECODE_READERS
            if path.removeprefix("decode.") in reader.settings
        ],
        "in this run",
        note="src.eval and src.predict take their own decode.*",
    )
    chosen = cfg.decode.strategy
    always = {name for reader in running if not reader.by_strategy for name in reader.settings}
    other = [  # read by a running reader, but only with another strategy
        name
        for strategy, settings in SETTINGS_OF_STRATEGY.items()
        if strategy != chosen
        for name in settings
        if name in read and name not in always and name not in SETTINGS_OF_STRATEGY.get(chosen, ())
    ]
    return lines + grouped_lines(
        given_settings(cfg.decode, "decode.", other, DecodeConfig()),
        lambda path: [
            f"decode.strategy={strategy}"
            for strategy, settings in SETTINGS_OF_STRATEGY.items()
            if path.removeprefix("decode.") in settings
        ],
        f"with decode.strategy={chosen}",
    )


def single_run() -> bool:
    """Whether this is a Hydra job of a single run, not of a sweep (False outside Hydra: not known there)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def unread_run_settings(cfg: DictConfig) -> list[str]:
    """Settings another setting, or a single run, leaves unread: progress_every_n_steps without the progress bar,
    ablate.reference_examples without mean ablation (ABLATION_METHODS' needs_reference; src.run trains with zero
    ablation only), and a sweep's own settings in a single run; and +trainer.fast_dev_run, with which Lightning
    reads neither trainer.max_steps nor checkpoint.*."""
    lines = []
    if not cfg.trainer.enable_progress_bar:
        given = given_settings(cfg, "", ["progress_every_n_steps"], Config())
        if given:
            readers = ["trainer.enable_progress_bar=true"]  # a progress line this often, when the output is no terminal
            lines.append(unread_line(given, "with trainer.enable_progress_bar=false", readers, "no progress is shown"))
    quick = cfg.trainer.get("fast_dev_run")
    if quick:  # Lightning's check of the code: its Trainer then runs a batch or two and saves nothing
        batches = 1 if quick is True else int(quick)
        lines.append(
            f"trainer.fast_dev_run={written_value(quick)} runs {batches} training and validation "
            f"batch{'es' * (batches > 1)} as a check instead of training, and Lightning then saves no checkpoint "
            "(the run cannot be evaluated or resumed): leave it out to train"
        )
    method = cfg.ablate.get("method", "zero")
    if method in ABLATION_METHODS and not ABLATION_METHODS[method].needs_reference:
        given = given_settings(cfg.ablate, "ablate.", ["reference_examples"], AblateConfig())
        if given:
            users = [name for name, other in ABLATION_METHODS.items() if other.needs_reference]
            readers = [f"ablate.method={_and(users)} of src.eval, src.predict and src.analyze"]
            why = f"an ablated head gets {ABLATION_METHODS[method].description}"
            lines.append(unread_line(given, f"with ablate.method={method}", readers, why))
    if single_run():
        given = [
            *given_settings(cfg, "", ["sweep_catch_errors"], Config()),
            *given_settings(cfg.report, "report.", ["baseline"], ReportConfig()),
        ]
        if given:
            lines.append(unread_line(given, "in a single run", ["a sweep (-m)"]))
        lines += sweep_options_in_a_single_run()
    return lines


def sweep_options_in_a_single_run() -> list[str]:
    """A launcher or a sweeper chosen for a run without `-m` (hydra/launcher=slurm, hparams_search=...): Hydra uses
    neither, so the run trains here, once, and a forgotten `-m` would go unnoticed (on a cluster's login node)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    choices = HydraConfig.get().runtime.choices
    chosen = [
        f"{group}={choices.get(group)}"
        for group, default in (("hydra/launcher", "basic"), ("hydra/sweeper", "grid"))  # conf/config.yaml's
        if choices.get(group) not in (None, default)
    ]
    if not chosen:
        return []
    return [
        f"{' and '.join(chosen)} {'have' if len(chosen) > 1 else 'has'} no effect without -m: this run trains here, "
        "once; add -m to run it as a sweep"
    ]


def _round_up(n: int) -> int:
    """A friendly suggestion: the next power of two >= n."""
    return 2 ** math.ceil(math.log2(max(n, 1)))
