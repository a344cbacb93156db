"""Semantic checks of a composed config, run before anything is built.

Hydra has already checked shapes and types against the schema (src/schema.py); what is left are values that are
each fine but cannot work together: heads not dividing d_model, an encoder-only model on a translation task, a
data file that does not exist, ... `validate_config` raises `ConfigError` (or the data layer's `DataError`) with
one line naming the field and the fix; the commands print it as `error: ...` and exit with status 2, never a
traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re

from omegaconf import DictConfig, OmegaConf

from src.data import all_tasks, task_spec
from src.data.files import resolve_path
from src.model import ConfigError, TransformerConfig
from src.model.ablation import ABLATION_METHODS, Ablation, layout_of, parse_ablation
from src.model.masks import MASK_SCHEMES
from src.schema import (
    ARCH_FOR_KIND,
    DROPOUTS,
    AnalysisConfig,
    DecodeConfig,
    job_overrides,
    model_config_for,
    override_keys,
    resolve_arch,
)
from src.training.loggers import check_logger
from src.training.metrics import metric_tags, objective_choices
from src.training.optim import OPTIMIZERS
from src.training.report import print_warning
from src.training.stock_callbacks import check_stock_callbacks

ARCH_CHOICES = ("auto", "encoder_decoder", "decoder_only", "encoder_only")
DECODE_STRATEGIES = ("greedy", "beam", "sample")


def _check_choice(field_name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{field_name}={value!r} is not known: choose one of {', '.join(allowed)}")


def _check_file(field_name: str, path: str) -> None:
    resolved = resolve_path(path)
    if not resolved.is_file():
        raise ConfigError(f"{field_name}={path} does not exist (looked at {resolved}): fix the path")


def validate_config(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """Raise ConfigError (one line: the field and the fix) for a config that cannot work. Cheap: reads no data
    but checks that data files exist; runs before the datamodule and the model are built. `overrides`: the
    command line's (None: this Hydra job's)."""
    check_no_added_keys(cfg)
    name = cfg.task.name
    spec = task_spec(name)  # DataError (one line) for an unknown task
    check_pretrained(cfg, job_overrides() if overrides is None else overrides)

    # --- model and mask ---
    _check_choice("model.arch", cfg.model.arch, ARCH_CHOICES)
    arch, needed = resolve_arch(cfg), ARCH_FOR_KIND[spec.kind]
    if arch != needed:
        raise ConfigError(
            f"model.arch={arch} cannot train task={name} ({spec.kind}): use model.arch={needed} (or model.arch=auto)"
        )
    # The model's own checks (choices, heads | d_model, rope's even head size, dropout range, the mask scheme's
    # settings, ...), with placeholder vocabulary sizes: the real ones are known after the data is read and are
    # checked again then.
    model_config_for(cfg).validate()
    check_ablation(cfg.ablate, model_config_for(cfg), training=True)  # sites, layers and heads the model has

    # --- task: required fields, data files, the task's own checks, and whether the model is long enough ---
    for key in cfg.task:
        if OmegaConf.is_missing(cfg.task, key):
            raise ConfigError(f"task.{key} is required for task={name}: set task.{key}=...")
    for key in spec.file_fields:
        if cfg.task[key] is not None:
            _check_file(f"task.{key}", cfg.task[key])
    spec.validate(cfg.task)
    need = spec.longest_sequence(cfg.task)
    if need is not None and cfg.model.max_len < need:
        raise ConfigError(
            f"model.max_len={cfg.model.max_len} is shorter than the longest sequence task={name} produces "
            f"({need} tokens): set model.max_len={_round_up(need)} or shorten the task's lengths"
        )

    # --- training ---
    _check_choice("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    if cfg.optimizer.lr <= 0:
        raise ConfigError(f"optimizer.lr={cfg.optimizer.lr} must be > 0")
    if cfg.optimizer.warmup_steps < 0:
        raise ConfigError(f"optimizer.warmup_steps={cfg.optimizer.warmup_steps} must be >= 0")
    least = OPTIMIZERS[cfg.optimizer.name].min_warmup_steps
    if cfg.optimizer.warmup_steps < least:
        raise ConfigError(
            f"optimizer.warmup_steps={cfg.optimizer.warmup_steps} is too small for {cfg.optimizer.name} (its schedule "
            f"divides by it): set optimizer.warmup_steps={least} or more"
        )
    if len(cfg.optimizer.betas) != 2:
        raise ConfigError(
            f"optimizer.betas={list(cfg.optimizer.betas)} needs two values: set e.g. optimizer.betas=[0.9,0.98]"
        )
    _check_trainer(cfg.trainer)
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
    model_cfg, _, _ = pretrained_config(name)  # a missing or unsupported model first: nothing else matters then
    given = override_keys(overrides)
    fixed = list(dict.fromkeys(key for key in given if key == "model" or key.startswith("model.")))
    fixed = [key for key in fixed if key not in PRETRAINED_MAY_SET]
    if fixed:
        raise ConfigError(
            f"{fixed[0]} is set by model.pretrained={name} (its config.json): leave {', '.join(fixed)} out "
            "(model.dropout, model.attention_dropout and model.ffn_dropout may be set)"
        )
    spec = task_spec(cfg.task.name)
    if not spec.reads_text:
        readers = ", ".join(task for task, other in all_tasks().items() if other.reads_text)
        raise ConfigError(
            f"model.pretrained={name} reads text with its own tokenizer, and task={cfg.task.name} has its own "
            f"symbols: choose a task that reads text ({readers})"
        )
    from src.pretrained.fit import check_task_kind

    check_task_kind(f"model.pretrained={name}", model_cfg, cfg.task.name)


def warn_unread_tokenizer_settings(cfg: DictConfig) -> None:
    """One warning for the task's own tokenizer settings given beside model.pretrained (its tokenizer reads)."""
    name = cfg.model.get("pretrained")
    unused = [key for key in override_keys(job_overrides()) if key in OWN_TOKENIZER_SETTINGS]
    if name and unused:
        print_warning(
            f"{', '.join(unused)} {'are' if len(unused) > 1 else 'is'} not used: model.pretrained={name} reads the "
            "text with its own tokenizer"
        )


PRETRAINED_MAY_SET = ("model.pretrained", *(f"model.{name}" for name in DROPOUTS))


def check_ablation(ablate, model_cfg: TransformerConfig, training: bool = False) -> Ablation:
    """`ablate.*` against the model `model_cfg` describes: ConfigError (one line) for a spec the model cannot take
    (parse_ablation: an unknown site or method, a layer or head out of range, bad syntax) and for no reference
    examples. `training`: src.run, where mean ablation is refused, since a head's mean output needs a trained
    model to take it from (src.eval, src.predict and src.analyze have one)."""
    ablation = parse_ablation(ablate, model_cfg)
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
    choices = objective_choices(spec.kind, spec.bleu, test_after_fit)
    if objective in choices:
        return
    if objective in objective_choices(spec.kind, spec.bleu, test_after_fit=True):
        raise ConfigError(f"objective={objective} is measured only after training: set test_after_fit=true")
    raise ConfigError(f"objective={objective} is not a metric task={spec.name} logs: choose one of {choices}")


def check_early_stopping(arguments, spec) -> None:
    """`+callbacks.EarlyStopping.monitor=` must name a metric the run logs while it trains (a typo would surface as
    Lightning's error once training had begun), and `mode` must be min or max."""
    if not arguments:
        return
    monitor, mode = arguments.get("monitor"), arguments.get("mode")
    during_training = [*metric_tags(spec.kind, spec.bleu), "train/loss"]
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


def check_analysis_settings(settings, prefix: str = "") -> None:
    """The head analysis's settings (AnalysisConfig): `analysis.*` of src.run (prefix "analysis.", read with
    analyze_after_fit=true) and src.analyze's own top-level ones (no prefix). One place, so the two commands refuse
    the same values with the same line."""
    if settings.split not in ANALYSIS_SPLITS:
        raise ConfigError(f"{prefix}split={settings.split!r} is not known: choose val or test")
    if settings.max_examples is not None and settings.max_examples < 1:
        raise ConfigError(
            f"{prefix}max_examples={settings.max_examples} must be >= 1 (or leave it out: the whole split)"
        )
    if not 0.0 < settings.prune_step <= 1.0:
        raise ConfigError(
            f"{prefix}prune_step={settings.prune_step} must be in (0, 1]: the fraction of heads removed per step"
        )
    if settings.tolerance < 0:
        raise ConfigError(
            f"{prefix}tolerance={settings.tolerance} must be >= 0: the largest relative drop of the metric allowed"
        )
    if settings.rows_per_batch < 1:
        raise ConfigError(f"{prefix}rows_per_batch={settings.rows_per_batch} must be >= 1")


def given_analysis_settings(settings) -> list[str]:
    """`analysis.<name>=<value>` for each analysis setting the command line gave or that differs from its default
    (an experiment's yaml may set them): what a run without analyze_after_fit=true would silently not read."""
    default, typed = AnalysisConfig(), typed_settings()

    def written(value) -> str:  # as an override is typed: null, true
        return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return [
        f"analysis.{f.name}={written(settings[f.name])}"
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
            f"training): add analyze_after_fit=true, or analyse the run later with python -m src.analyze "
            f"ckpt=<run> {as_analyze}"
        )


def warn_unread_settings(cfg: DictConfig) -> None:
    """src.run's warnings for settings that are legal but that nothing reads with the options chosen (one
    `warning:` line each): logger.* of another logger, analysis.* without analyze_after_fit, a task's own tokenizer
    settings beside model.pretrained."""
    from src.training.loggers import LOGGERS, unread_settings

    if unread := unread_settings(cfg.logger):
        users = sorted(name for name, option in LOGGERS.items() if option.reads)
        print_warning(
            f"{', '.join(unread)} has no effect with logger={cfg.logger.name}: only {' and '.join(users)} read it"
        )
    warn_unread_analysis_settings(cfg)
    warn_unread_tokenizer_settings(cfg)


def check_seed(seed: int) -> None:
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed} must be in [0, 2^32 - 1] (the generators' range): use e.g. seed=0")


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
            f"{close[0]}, without the +? (python -m src.run --cfg job prints every setting)"
        )
    return (
        f"{path} is not a setting, so nothing would read it: check the spelling (python -m src.run --cfg job "
        "prints every setting); keep your own notes under +meta.<name>"
    )


def options_with_setting(group: str, key: str) -> list[str]:
    """The task or mask options that have `key` among their settings (their schemas: src/schema.py)."""
    if group == "task":
        return [name for name, spec in all_tasks().items() if key in {f.name for f in dataclasses.fields(spec.schema)}]
    if group == "mask":
        return [name for name, scheme in MASK_SCHEMES.items() if key in {f.name for f in dataclasses.fields(scheme)}]
    return []


PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine")


def _check_trainer(trainer) -> None:
    """The Trainer arguments Lightning would reject late (after data and model are built) or never."""
    import inspect

    from lightning import Trainer

    # A key added with + (`+trainer.max_step=5`) reaches Lightning's Trainer as a keyword it does not take.
    accepted = set(inspect.signature(Trainer.__init__).parameters) - {"self", "logger", "callbacks", "default_root_dir"}
    for key in trainer:
        if key not in accepted:
            close = difflib.get_close_matches(str(key), sorted(accepted), n=1, cutoff=0.75)
            hint = f"did you mean trainer.{close[0]} (without +)?" if close else "check Lightning's Trainer arguments"
            raise ConfigError(f"trainer.{key} is not an argument of Lightning's Trainer: {hint}")
    if str(trainer.precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={trainer.precision} is not known: choose one of {', '.join(PRECISIONS)}")
    if trainer.accelerator in ("gpu", "cuda") and not _cuda_available():
        raise ConfigError(f"trainer.accelerator={trainer.accelerator} but no CUDA GPU is visible: use trainer=cpu")
    interval = trainer.val_check_interval
    if isinstance(interval, int) and interval < 1:
        raise ConfigError(f"trainer.val_check_interval={interval} must be >= 1 (training steps between validations)")
    if trainer.limit_val_batches == 0:
        raise ConfigError("trainer.limit_val_batches=0 skips validation, so no checkpoint would be saved: use > 0")
    if trainer.accumulate_grad_batches < 1:
        raise ConfigError(f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches} must be >= 1")
    if trainer.gradient_clip_val is not None and trainer.gradient_clip_val < 0:
        raise ConfigError(
            f"trainer.gradient_clip_val={trainer.gradient_clip_val} must be >= 0 (0 or null turn clipping off)"
        )
    if trainer.max_time is not None and not re.fullmatch(r"\d+:\d+:\d+:\d+", str(trainer.max_time)):
        raise ConfigError(
            f"trainer.max_time={trainer.max_time} is not a duration: write days:hours:minutes:seconds, "
            "e.g. trainer.max_time=00:00:30:00 for 30 minutes"
        )
    # Limits that train nothing: Lightning would return at once and the run end "completed" with no metrics.
    if trainer.max_steps == 0:
        raise ConfigError("trainer.max_steps=0 trains nothing: set trainer.max_steps > 0 (or -1: no step limit)")
    if trainer.max_steps < -1:
        raise ConfigError(f"trainer.max_steps={trainer.max_steps} must be > 0, or -1 for no step limit")
    if trainer.max_epochs is not None and trainer.max_epochs == 0:
        raise ConfigError("trainer.max_epochs=0 trains nothing: set trainer.max_epochs >= 1, or leave it out")
    if trainer.max_time is not None and all(int(part) == 0 for part in str(trainer.max_time).split(":")):
        raise ConfigError(
            f"trainer.max_time={trainer.max_time} is no time at all: give a budget, e.g. trainer.max_time=00:00:30:00"
        )
    no_batches = trainer.get("limit_train_batches")
    if no_batches is not None and float(no_batches) == 0:
        raise ConfigError("trainer.limit_train_batches=0 trains nothing: leave it out, or give a fraction or count > 0")
    if trainer.max_steps < 1 and trainer.max_epochs is None and trainer.max_time is None:
        raise ConfigError("training never stops: set trainer.max_steps > 0, trainer.max_epochs or trainer.max_time")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# The decode.* settings each strategy reads (decode.max_new_tokens: every one): any other strategy ignores them.
SETTINGS_OF_STRATEGY = {
    "greedy": (),
    "beam": ("beam_size", "length_penalty"),
    "sample": ("temperature", "top_k", "top_p"),
}


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
    if decode.no_repeat_ngram_size > 0 and decode.strategy == "beam":
        raise ConfigError(
            "decode.no_repeat_ngram_size works with decode.strategy=greedy or sample: leave it out with beam search"
        )


def _round_up(n: int) -> int:
    """A friendly suggestion: the next power of two >= n."""
    return 2 ** math.ceil(math.log2(max(n, 1)))
