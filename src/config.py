"""The configuration schema (Hydra structured configs) and the semantic checks run before anything is built.

Two layers of checking, on purpose:

1. *Shape and type*: every config group and field is declared below as a dataclass and registered in Hydra's
   ConfigStore. Hydra then rejects an unknown key (`model.head=8`) or a wrong type (`model.heads=eight`) with its
   own message while composing the config, before our code runs.
2. *Meaning*: values that are each fine but cannot work together (heads not dividing d_model, an encoder-only
   model on a translation task, a data file that does not exist, ...) are caught by `validate_config`, which
   raises `ConfigError` with one line naming the field and the fix. The CLI prints it as `error: ...` and exits
   with status 2 - never a traceback.

The yaml files under conf/ pick values; this file says what may be picked. Task schemas are the data layer's own
dataclasses (src/data/configs.py), so field names and defaults have one source of truth.
"""

from __future__ import annotations

import hashlib
import math
import re
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

from src.data.configs import (
    AdditionTaskConfig,
    CharLMTaskConfig,
    ClassificationTaskConfig,
    Multi30kTaskConfig,
    SyntheticTaskConfig,
    TranslationTaskConfig,
)
from src.model.config import ConfigError, TransformerConfig

# ------------------------------------------------------------------------------------------------------------
# Schemas
# ------------------------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """The transformer's shape and the ablation axes. Mirrors src.model.TransformerConfig (minus vocab sizes,
    which come from the task's data, and mask settings, which have their own group)."""

    arch: str = "auto"  # auto | encoder_decoder | decoder_only | encoder_only  (auto: what the task needs)
    d_model: int = 128
    heads: int = 4
    layers: int = 2  # both stacks; enc_layers / dec_layers follow it unless set on their own
    enc_layers: int = II(".layers")
    dec_layers: int = II(".layers")
    d_ff: int = 512
    dropout: float = 0.1
    max_len: int = 256  # longest sequence the positional tables cover (must fit the task's longest)
    pos_encoding: str = "sinusoidal"  # sinusoidal | learned | rope | alibi | none
    norm_position: str = "post"  # post (the paper) | pre
    norm_type: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    activation: str = "relu"  # relu | gelu | swiglu
    tie_embeddings: bool = True
    share_src_tgt_embeddings: bool = False


@dataclass
class MaskConfig:
    """Which attention masks each site gets (see src/model/masks.py for the table)."""

    type: str = "standard"  # standard | causal | window | prefix | none
    window: int = 4  # mask=window: how many keys a query sees (1 = itself only)
    prefix_len: int = 0  # mask=prefix: bidirectional prefix length (encoder self-attention; decoder-only: decoder self)


@dataclass
class OptimizerConfig:
    name: str = "adam_noam"  # adam_noam | adamw_cosine
    # adam_noam: lr is the paper's scale factor: lr(step) = lr * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
    # adamw_cosine: lr is the peak learning rate, reached after warmup_steps, then cosine decay to min_lr_ratio*lr
    lr: float = 1.0
    warmup_steps: int = 400
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-9
    min_lr_ratio: float = 0.0


@dataclass
class TrainerConfig:
    """Passed as keyword arguments to lightning.Trainer: the names are Lightning's own."""

    accelerator: str = "cpu"  # cpu | gpu | auto | ...
    devices: Any = 1  # an int, a list of device ids, or "auto"
    strategy: str = "auto"  # auto | ddp_spawn | ddp | ...
    precision: Any = "32-true"  # 32-true | 16-mixed | bf16-mixed | 64-true
    max_steps: int = 1000
    max_epochs: Optional[int] = None
    val_check_interval: Any = 250  # an int counts training steps (with check_val_every_n_epoch=null)
    check_val_every_n_epoch: Optional[int] = None
    limit_val_batches: Any = 1.0
    num_sanity_val_steps: int = 0
    gradient_clip_val: Optional[float] = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    deterministic: Any = False
    enable_progress_bar: bool = True
    # Off: the run prints its own model size (parameters, FLOPs per token) in the config tree; Lightning's table
    # would add a "FLOPs 0" column (it counts FLOPs only with an example input).
    enable_model_summary: bool = False
    # Our training loader shards its seeded permutation by rank itself (src/data/resumable.py, exact resume);
    # Lightning must not swap in a DistributedSampler. Under DDP every rank then validates the whole val set.
    use_distributed_sampler: bool = False


@dataclass
class LoggerConfig:
    name: str = "tensorboard"  # tensorboard | none


@dataclass
class DashboardConfig:
    """What the TensorBoard callbacks from src/dashboard log (only when logger=tensorboard)."""

    attention_every_n_steps: int = 250  # attention maps and head statistics on a fixed probe (0 = at the end only)
    attention_examples: int = 1  # probe examples drawn as attention maps (one image per layer and example)
    probe_size: int = 8  # probe examples the per-head statistics average over
    text_examples: int = 4  # validation examples in the text-sample table
    attention_maps: bool = True
    attention_stats: bool = True
    text_samples: bool = True
    hparams: bool = True


@dataclass
class CheckpointConfig:
    save_last: bool = True  # checkpoints/last.ckpt, refreshed at every validation
    save_best: bool = True  # checkpoints/best.ckpt, by the task's main metric
    every_n_train_steps: int = 0  # > 0: also keep checkpoints/step=N.ckpt every N steps (all kept)


@dataclass
class DecodeConfig:
    """How src.predict (and src.eval's generation) decodes: greedy, beam search or sampling."""

    strategy: str = "greedy"  # greedy | beam | sample
    beam_size: int = 4
    length_penalty: float = 0.6
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    max_new_tokens: int = 100


@dataclass
class Config:
    """The whole training run (`python -m src.run`)."""

    model: ModelConfig = MISSING
    task: Any = MISSING  # one of the task schemas, chosen by the task yaml's defaults list
    mask: MaskConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    seed: int = 0
    batch_size: int = 64
    num_workers: int = 0
    label_smoothing: float = 0.0
    # CPU threads for torch; 0 = torch's default (one per core, or OMP_NUM_THREADS: the joblib launcher sets 1 per
    # worker). Set 1 when several runs share a machine: on a busy 2-core machine, two threads per process slowed a
    # tiny model's step from 30 ms to 2 s. The default run took 51 s with 0 and 70 s with 1 on a quiet 2-core machine.
    torch_threads: int = 0
    ckpt_path: Optional[str] = None  # resume training from this checkpoint
    compile: bool = False  # run the model under torch.compile (slow first steps, faster after; see `make bench`)
    sweep_catch_errors: bool = True  # multirun: a failing job is reported and the sweep goes on


@dataclass
class EvalConfig:
    """`python -m src.eval ckpt=...`: test metrics of a checkpoint."""

    ckpt: str = MISSING
    batch_size: Optional[int] = None  # None: the training run's batch size
    split: str = "test"  # test (all test splits, incl. test_long for synthetic tasks) | val
    accelerator: str = "cpu"
    torch_threads: int = 0


@dataclass
class PredictConfig:
    """`python -m src.predict ckpt=... text="..."`: translate, continue or classify one text."""

    ckpt: str = MISSING
    text: str = MISSING
    num_samples: int = 1  # decode.strategy=sample: how many continuations to draw
    seed: int = 0  # sampling seed
    torch_threads: int = 0
    decode: DecodeConfig = field(default_factory=DecodeConfig)


# Task kinds: which model arch each task needs and what the datamodule yields.
TASK_KINDS = {
    "copy": "seq2seq",
    "reverse": "seq2seq",
    "sort": "seq2seq",
    "addition": "seq2seq",
    "translation": "seq2seq",
    "multi30k": "seq2seq",
    "char_lm": "lm",
    "classification": "classification",
}
ARCH_FOR_KIND = {"seq2seq": "encoder_decoder", "lm": "decoder_only", "classification": "encoder_only"}
SYNTHETIC_TASKS = ("copy", "reverse", "sort", "addition")

TASK_SCHEMAS = {
    "synthetic": SyntheticTaskConfig,
    "addition": AdditionTaskConfig,
    "char_lm": CharLMTaskConfig,
    "translation": TranslationTaskConfig,
    "multi30k": Multi30kTaskConfig,
    "classification": ClassificationTaskConfig,
}


def safe_dirname(overrides: str, limit: int = 200) -> str:
    """A sweep job's directory name from its overrides (`model.heads:8+task:sort`, see hydra.job.config in
    conf/config.yaml): characters that a shell or Hydra's override grammar would trip over (`/ = , [ ] '` ...)
    become `-`, so the path can be pasted into `ckpt=...` unquoted; long names are shortened with a hash, since a
    file name may not exceed 255 bytes. The full overrides are always in the job's .hydra/overrides.yaml."""
    name = re.sub(r"[^\w.:+@%-]", "-", overrides) or "defaults"
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}-{digest}"


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore. Group yaml files merge into these typed nodes; task yamls start
    with `defaults: [/schema/task/<kind>@_here_, _self_]` (Hydra's "extending configs" pattern; the schemas sit
    in their own `schema/` group so that `--help` lists only real task options)."""
    if not OmegaConf.has_resolver("safe_dirname"):
        OmegaConf.register_new_resolver("safe_dirname", safe_dirname)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(name="base_eval", node=EvalConfig)
    cs.store(name="base_predict", node=PredictConfig)
    for name, schema in TASK_SCHEMAS.items():
        cs.store(group="schema/task", name=name, node=schema)


# ------------------------------------------------------------------------------------------------------------
# Semantic validation
# ------------------------------------------------------------------------------------------------------------

ARCH_CHOICES = ("auto", "encoder_decoder", "decoder_only", "encoder_only")
OPTIMIZERS = ("adam_noam", "adamw_cosine")
LOGGERS = ("tensorboard", "none")
DECODE_STRATEGIES = ("greedy", "beam", "sample")


def task_kind(task_name: str) -> str:
    if task_name not in TASK_KINDS:
        raise ConfigError(f"task.name={task_name!r} is not a known task: choose one of {', '.join(TASK_KINDS)}")
    return TASK_KINDS[task_name]


def resolve_arch(cfg: DictConfig) -> str:
    """model.arch, with `auto` replaced by the architecture the task needs."""
    kind = task_kind(cfg.task.name)
    return ARCH_FOR_KIND[kind] if cfg.model.arch == "auto" else cfg.model.arch


def required_max_len(task_cfg) -> Optional[int]:
    """The longest sequence (tokens incl. BOS/EOS) the task can produce, when the config alone tells; else None
    (text tasks: known once the data is read, checked again then)."""
    name = task_cfg.name
    if name in ("copy", "reverse", "sort"):
        return max(task_cfg.max_len, task_cfg.test_long_max_len) + 2  # + BOS/EOS
    if name == "addition":
        digits = max(task_cfg.max_len, task_cfg.test_long_max_len)
        return 2 * digits + 1 + 2  # "a+b" plus BOS/EOS; the sum is shorter
    if name == "char_lm":
        return task_cfg.block_size
    if name in ("translation", "multi30k", "classification"):
        return task_cfg.max_len + 1
    return None


def _check_choice(field_name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{field_name}={value!r} is not known: choose one of {', '.join(allowed)}")


def is_file_field(key: str) -> bool:
    """Task fields naming data files: path, train_path, train_src, test_tgt, ... (data_dir is a directory)."""
    return key == "path" or key.endswith(("_path", "_src", "_tgt"))


def absolute_task_paths(cfg: DictConfig) -> None:
    """Make the task's data paths absolute, so the checkpoint's copy of the config works from any directory."""
    for key in list(cfg.task):
        if (is_file_field(key) or key == "data_dir") and isinstance(cfg.task[key], str):
            cfg.task[key] = str(resolve_path(cfg.task[key]))


def _check_file(field_name: str, path: str) -> None:
    resolved = resolve_path(path)
    if not resolved.is_file():
        raise ConfigError(f"{field_name}={path} does not exist (looked at {resolved}): fix the path")


def resolve_path(path: str) -> Path:
    """Relative data paths are relative to where the command was started (Hydra keeps the cwd with
    version_base=1.3, but we ask Hydra explicitly in case a job changed directory)."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return p
    try:
        from hydra.utils import get_original_cwd

        return Path(get_original_cwd()) / p
    except Exception:  # not inside a Hydra app (tests, eval/predict helpers)
        return Path.cwd() / p


def model_config_for(cfg: DictConfig, src_vocab_size: int = 8, tgt_vocab_size: int = 8,
                     num_classes: int = 2) -> TransformerConfig:
    """The model's own config from the composed Hydra config; vocab sizes come from the data (placeholders
    until the data is built, so the model's validate() can run first)."""
    m = cfg.model
    return TransformerConfig(
        arch=resolve_arch(cfg),
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        num_classes=num_classes,
        d_model=m.d_model,
        heads=m.heads,
        enc_layers=m.enc_layers,
        dec_layers=m.dec_layers,
        d_ff=m.d_ff,
        dropout=m.dropout,
        max_len=m.max_len,
        pos_encoding=m.pos_encoding,
        norm_position=m.norm_position,
        norm_type=m.norm_type,
        norm_eps=m.norm_eps,
        activation=m.activation,
        mask_type=cfg.mask.type,
        window=cfg.mask.window,
        prefix_len=cfg.mask.prefix_len,
        tie_embeddings=m.tie_embeddings,
        share_src_tgt_embeddings=m.share_src_tgt_embeddings,
    )


def validate_config(cfg: DictConfig, multirun: bool = False) -> None:
    """Raise ConfigError (one line: the field and the fix) for a config that cannot work. Cheap: reads no data
    but checks that data files exist; runs before the datamodule and the model are built."""
    name = cfg.task.name
    kind = task_kind(name)

    # --- model and mask ---
    _check_choice("model.arch", cfg.model.arch, ARCH_CHOICES)
    arch = resolve_arch(cfg)
    needed = ARCH_FOR_KIND[kind]
    if arch != needed:
        raise ConfigError(
            f"model.arch={arch} cannot train task={name} ({kind}): use model.arch={needed} (or model.arch=auto)"
        )
    # The model's own checks (choices, heads | d_model, rope's even head size, dropout range, mask window and
    # prefix, ...), with placeholder vocabulary sizes: the real ones are known after the data is read and are
    # checked again then.
    model_config_for(cfg).validate()
    need = required_max_len(cfg.task)
    if need is not None and cfg.model.max_len < need:
        raise ConfigError(
            f"model.max_len={cfg.model.max_len} is shorter than the longest sequence task={name} produces "
            f"({need} tokens): set model.max_len={_round_up(need)} or shorten the task's lengths"
        )

    # --- task ---
    if name in SYNTHETIC_TASKS:
        t = cfg.task
        if name != "addition" and t.vocab_size < 1:
            raise ConfigError(f"task.vocab_size={t.vocab_size} must be >= 1")
        if not 1 <= t.min_len <= t.max_len:
            raise ConfigError(f"task.min_len={t.min_len} and task.max_len={t.max_len} need 1 <= min_len <= max_len")
        if not t.test_long_min_len <= t.test_long_max_len:
            raise ConfigError(
                f"task.test_long_min_len={t.test_long_min_len} must be <= task.test_long_max_len={t.test_long_max_len}"
            )
        for split in ("train_size", "val_size", "test_size"):
            if t[split] < 1:
                raise ConfigError(f"task.{split}={t[split]} must be >= 1")
    elif name == "char_lm" and cfg.task.block_size < 2:
        raise ConfigError(f"task.block_size={cfg.task.block_size} must be >= 2")
    elif name == "multi30k" and {cfg.task.src_lang, cfg.task.tgt_lang} != {"de", "en"}:
        raise ConfigError(
            f"task.src_lang={cfg.task.src_lang} task.tgt_lang={cfg.task.tgt_lang}: multi30k is de-en, "
            "use src_lang=de tgt_lang=en or src_lang=en tgt_lang=de"
        )
    elif name == "classification":
        _check_choice("task.tokenizer", cfg.task.tokenizer, ("word", "bpe"))
    # Required fields (??? in the schema) and data files: every path-like field must name an existing file.
    for key in cfg.task:
        if OmegaConf.is_missing(cfg.task, key):
            raise ConfigError(f"task.{key} is required for task={name}: set task.{key}=...")
        if is_file_field(key) and cfg.task[key] is not None:
            _check_file(f"task.{key}", cfg.task[key])

    # --- training ---
    _check_choice("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    if cfg.optimizer.lr <= 0:
        raise ConfigError(f"optimizer.lr={cfg.optimizer.lr} must be > 0")
    if cfg.optimizer.warmup_steps < 0:
        raise ConfigError(f"optimizer.warmup_steps={cfg.optimizer.warmup_steps} must be >= 0")
    if cfg.optimizer.name == "adam_noam" and cfg.optimizer.warmup_steps < 1:
        raise ConfigError("optimizer.warmup_steps=0: the adam_noam schedule divides by it, use 1 or more")
    if len(cfg.optimizer.betas) != 2:
        raise ConfigError(f"optimizer.betas={list(cfg.optimizer.betas)} needs two values, e.g. [0.9,0.98]")
    _check_trainer(cfg.trainer, multirun)
    if cfg.num_workers < 0:
        raise ConfigError(f"num_workers={cfg.num_workers} must be >= 0 (0 = load data in the training process)")
    for key in ("attention_examples", "probe_size", "text_examples"):
        if cfg.dashboard[key] < 1:
            raise ConfigError(f"dashboard.{key}={cfg.dashboard[key]} must be >= 1 (turn the logger off with its switch)")
    if cfg.checkpoint.every_n_train_steps < 0:
        raise ConfigError(f"checkpoint.every_n_train_steps={cfg.checkpoint.every_n_train_steps} must be >= 0 (0 = off)")
    if cfg.task.name == "char_lm" and cfg.task.val_fraction <= 0:
        raise ConfigError("task.val_fraction=0 leaves no validation text, so no checkpoint would be saved: use > 0")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing={cfg.label_smoothing} must be in [0, 1)")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} must be >= 1")
    _check_choice("logger", cfg.logger.name, LOGGERS)
    if cfg.dashboard.attention_every_n_steps < 0:
        raise ConfigError(
            f"dashboard.attention_every_n_steps={cfg.dashboard.attention_every_n_steps} must be >= 0 "
            "(0 = only at the end of training)"
        )
    validate_decode(cfg.decode)
    if cfg.ckpt_path is not None:
        check_checkpoint_file(cfg.ckpt_path, "ckpt_path")


PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine")


def _check_trainer(trainer, multirun: bool) -> None:
    """The Trainer arguments Lightning would reject late (after data and model are built) or never."""
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
    if trainer.max_steps < 1 and trainer.max_epochs is None:
        raise ConfigError("training never stops: set trainer.max_steps > 0 or trainer.max_epochs")
    several_devices = str(trainer.devices) not in ("1", "[0]")
    if multirun and several_devices and trainer.strategy in ("auto", "ddp"):
        # PITFALLS: Lightning's ddp launcher re-runs the command line in each extra rank, i.e. the whole sweep.
        raise ConfigError(
            f"trainer.devices={trainer.devices} with trainer.strategy={trainer.strategy} inside a sweep would start the "
            "sweep again in every extra process: use trainer=ddp (strategy ddp_spawn)"
        )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


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


def check_checkpoint_file(path: str, field_name: str = "ckpt") -> Path:
    """A checkpoint path must name an existing file (loading it is checked where it is loaded)."""
    resolved = resolve_path(path)
    if resolved.is_dir():
        hint = resolved / "checkpoints" / "best.ckpt"
        raise ConfigError(
            f"{field_name}={path} is a directory: give a .ckpt file"
            + (f", e.g. {field_name}={hint}" if hint.is_file() else " (a run keeps them in <run>/checkpoints/)")
        )
    if not resolved.is_file():
        raise ConfigError(f"{field_name}={path} does not exist (looked at {resolved}): give a .ckpt file of a run")
    return resolved


def _round_up(n: int) -> int:
    """A friendly suggestion: the next power of two >= n."""
    return 2 ** math.ceil(math.log2(max(n, 1)))


def to_plain(cfg: DictConfig) -> dict:
    """Resolved plain-dict copy (for checkpoints and hparams)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
