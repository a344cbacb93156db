"""The configuration schema: Hydra structured configs for every group and field, registered in Hydra's ConfigStore.

Hydra rejects an unknown key (`model.head=8`) or a wrong type (`model.heads=eight`) against these while composing
the config, before our code runs; values that are each fine but cannot work together are src/cli/validation.py's job.

Three schemas are not written here but derived, so that they cannot drift from the code that reads them:
- `model`: `ModelConfig` is the model's own `ModelAxes` (src/model/config.py) plus `layers`;
- `task`: each registered task's settings dataclass (src/data/tasks/), stored as `schema/task/<name>`;
- `mask`: each mask scheme's dataclass fields (src/model/masks.py), stored as `schema/mask/<name>`.
The yaml files in conf/ pick values (task and mask yamls start with `defaults: [/schema/<group>/<name>@_here_]`,
Hydra's "extending configs" pattern; the `schema/` group is hidden from `--help`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import typing
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import II, MISSING, DictConfig, OmegaConf

from src.cli.composition import compose_cheaply
from src.data import all_tasks, task_spec
from src.model import ConfigError, ModelAxes, TransformerConfig
from src.model.config import ARCHITECTURES
from src.model.masks import MASK_SCHEMES, MaskScheme

# The architecture each task kind needs (model.arch=auto picks it), as the architectures say what they do.
ARCH_FOR_KIND = {arch.task_kind: name for name, arch in ARCHITECTURES.items()}


@dataclass
class RopeScalingConfig:
    """`model.rope_scaling.*`: a scaling of RoPE's frequencies (src/model/positional.py ROPE_SCALINGS), `type` (none,
    linear, llama3) and its settings; a setting left null takes the scaling's own default. A node with every key
    (not a free dict): Hydra's struct mode then takes `model.rope_scaling.type=llama3` and
    `model.rope_scaling={type:linear,factor:2}` alike."""

    type: str = "none"
    factor: Optional[float] = None
    low_freq_factor: Optional[float] = None  # llama3
    high_freq_factor: Optional[float] = None  # llama3
    original_max_len: Optional[int] = None  # llama3: the context length the model was pre-trained on


def rope_scaling_settings(node) -> dict:
    """model.rope_scaling as the model's config keeps it (TransformerConfig.rope_scaling): {} for none, else the type
    and the settings given. A setting given without a type is refused (it would be silently unread)."""
    given = {key: value for key, value in node.items() if key != "type" and value is not None}
    if node.type == "none":
        if given:
            listed = ", ".join(f"model.rope_scaling.{key}={value}" for key, value in given.items())
            raise ConfigError(f"{listed} is given without a scaling: add model.rope_scaling.type=linear or llama3")
        return {}
    return {"type": node.type, **given}


def schema_value(axis: str, value):
    """A model axis's value as the schema's `model.*` node holds it (the inverse of model_config_for's reading):
    rope_scaling's plain dict as its RopeScalingConfig node; everything else as it is."""
    if axis == "rope_scaling":
        return RopeScalingConfig(**{"type": "none", **value})
    return value


@dataclass
class ModelConfig(ModelAxes):
    """`model.*`: every field of the model's ModelAxes, plus `layers` for both stacks and `arch=auto`."""

    # a node with every setting in the schema; the model's config keeps a plain dict (rope_scaling_settings)
    rope_scaling: RopeScalingConfig = field(default_factory=RopeScalingConfig)  # type: ignore[assignment]

    arch: str = "auto"  # auto (what the task needs) | encoder_decoder | decoder_only | encoder_only
    # both stacks; enc_layers / dec_layers follow it unless set on their own. null in the config of a fine-tuned
    # model whose stacks differ in depth (Flan-T5 variants): no one number is both (src/pretrained/run_config.py)
    layers: Optional[int] = 2
    enc_layers: int = II(".layers")
    dec_layers: int = II(".layers")
    # A Hugging Face model (hub name or local directory) to fine-tune: its config.json gives the architecture and
    # its weights the start (src/pretrained/); the task reads text with its tokenizer. Only model.dropout applies.
    pretrained: Optional[str] = None


def mask_schema(name: str, scheme: type[MaskScheme]) -> type:
    """`mask.*` for one scheme: its `type` and its own settings (e.g. window), with the scheme's defaults."""
    hints = typing.get_type_hints(scheme)
    settings = [(f.name, hints[f.name], field(default=f.default)) for f in fields(scheme)]
    return make_dataclass(f"{scheme.__name__}Config", [("type", str, field(default=name)), *settings])


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
    # auto (what suits the device: resolve_precision) | 32-true | 16-mixed | bf16-mixed | 64-true | ...
    precision: Any = "32-true"
    max_steps: int = 1000
    max_epochs: Optional[int] = None
    # A wall-clock budget for training, days:hours:minutes:seconds (e.g. 00:00:30:00); training stops at the budget
    # or at max_steps, whichever comes first, and adamw_cosine's decay ends with the budget (src/training/optim.py).
    max_time: Optional[str] = None
    val_check_interval: Any = 250  # an int counts training steps (with check_val_every_n_epoch=null)
    check_val_every_n_epoch: Optional[int] = None
    limit_val_batches: Any = None  # None: all of them (Lightning says nothing; an explicit 1.0 makes it print a line)
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
    """Where scalars and hyperparameters go (src/training/loggers.py): TensorBoard always (the dashboards live
    there), plus a copy for csv | wandb | mlflow; none writes no logs at all."""

    name: str = "tensorboard"  # tensorboard | csv | wandb | mlflow | none
    project: str = "transformer-ablations"  # wandb: the project; mlflow: the experiment name
    tracking_uri: Optional[str] = None  # mlflow: where runs go (None: MLflow's default, ./mlruns)


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
    no_repeat_ngram_size: int = 0  # greedy and sample: never repeat an n-gram of the text (0 = off)


@dataclass
class AblateConfig:
    """Heads and sublayers switched off (src/model/ablation.py): in src.run from the first training step (an
    ablation axis like any other); in src.eval, src.predict and src.analyze an intervention on the trained
    checkpoint, on top of what it was trained without. Specs: site[:layer[:head]], `*` for every layer or head."""

    heads: Any = field(
        default_factory=list
    )  # e.g. [cross:1:3,encoder_self:0:*]; sites encoder_self | decoder_self | cross
    sublayers: Any = field(default_factory=list)  # e.g. [cross:1,decoder_ffn:*]; also encoder_ffn | decoder_ffn
    method: str = "zero"  # zero | mean (an ablated head outputs its mean output over reference data; not in src.run)
    reference_examples: int = 256  # mean ablation: training examples the head means are taken over


@dataclass
class AnalysisConfig:
    """What src.analyze measures of a trained model (and a run with analyze_after_fit=true): head importance,
    attention entropy, single-head ablations, keep-one-head-per-layer and the pruning curve (src/analysis/)."""

    split: str = "val"  # val | test: the examples the analysis runs on
    max_examples: Optional[int] = None  # the first N examples of the split (None: all of them)
    single_heads: bool = True  # the exact effect of removing each head alone (decodes the split once per head)
    keep_one: bool = True  # the metric with only one head kept in a layer (the best one, per layer and site)
    prune_step: float = 0.1  # pruning: the fraction of all heads removed per step (importance re-scored after each)
    # pruning: the largest metric drop allowed, as a fraction of the unpruned model's value (0.05: 5% of its BLEU)
    tolerance: float = 0.05
    rows_per_batch: int = 1024  # ablations x examples decoded in one batch (several head masks per batch)


@dataclass
class ReportConfig:
    """The report written at the end of every sweep (src/report.py)."""

    baseline: Optional[str] = None  # e.g. "model.heads=4"; None: the first configuration of the sweep


@dataclass
class Config:
    """The whole training run (`python -m src.run`)."""

    model: ModelConfig = MISSING
    task: Any = MISSING  # one task's schema, chosen by the task yaml's defaults list (src/data/tasks/)
    mask: Any = MISSING  # one mask scheme's schema, chosen by the mask yaml's defaults list (src/model/masks.py)
    optimizer: OptimizerConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    ablate: AblateConfig = field(default_factory=AblateConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    seed: int = 0
    batch_size: int = 64
    num_workers: int = 0
    # Training batches of examples of similar length (less padding computed: faster on text tasks of varied
    # lengths, such as translation); the batches are still drawn at random, and a run still resumes exactly.
    bucket_by_length: bool = False
    label_smoothing: float = 0.0
    # CPU threads for torch; 0 = torch's default (one per core, or OMP_NUM_THREADS: the joblib launcher sets 1 per
    # worker). Set 1 when several runs share a machine: on a busy 2-core machine, two threads per process slowed a
    # tiny model's step from 30 ms to 2 s. The default run took 51 s with 0 and 70 s with 1 on a quiet 2-core machine.
    torch_threads: int = 0
    # Resume: a .ckpt file, a run directory (its newest checkpoint), or `last` (the newest checkpoint of this run's
    # own directory: hydra.run.dir=<run> ckpt_path=last continues an interrupted run in place).
    ckpt_path: Optional[str] = None
    max_loss: Optional[float] = None  # stop as diverged when the training loss passes this (NaN/inf always stop)
    # After training, score the best checkpoint on the test splits (test/*, and test_long/* for the synthetic tasks'
    # longer held-out lengths); the results go to TensorBoard, metrics.json and the sweep report.
    test_after_fit: bool = False
    # After training, analyse the best checkpoint's heads as src.analyze does (analysis.* settings): <run>/analysis/
    # with report.md, csv tables and figures, the figures also in TensorBoard; a sweep report shows them per config.
    analyze_after_fit: bool = False
    progress_every_n_steps: int = 100  # when output is not a terminal: a progress line this often (and per validation)
    compile: bool = False  # run the model under torch.compile (slow first steps, faster after; see `make bench`)
    sweep_catch_errors: bool = True  # multirun: a failing job is reported and the sweep goes on
    # What the run returns to an optimising sweeper (Optuna, hparams_search=...) and what the sweep report ranks by:
    # a metric tag the run logs, e.g. val/loss or (with test_after_fit) test/sacrebleu; null = the task's main metric.
    # hydra.sweeper.direction must agree with it (checked before the first trial).
    objective: Optional[str] = None
    # Lightning's own callbacks by class name and arguments (src/training/stock_callbacks.py), e.g.
    # +callbacks.EarlyStopping.patience=5 (watching the task's main metric unless monitor= is given).
    callbacks: Dict[str, Any] = field(default_factory=dict)
    # Your own notes, kept in the run's config and nowhere read: +meta.note="first try" (`+` adds a key; under any
    # other group it would add a setting nothing reads, which is refused).
    meta: Dict[str, Any] = field(default_factory=dict)


# Settings that say where and how a run is carried out, watched or resumed, not what is trained and measured: two
# runs that differ only in these are the same configuration of an experiment (one sweep job resumed in place has
# ckpt_path=last; the sweep report pools it with its seeds). A key is matched with everything under it.
NOT_EXPERIMENT_SETTINGS = (
    "hydra",  # directories, launcher, sweeper
    "ckpt_path",  # resuming
    "logger",
    "dashboard",
    "checkpoint",
    "report",
    "meta",  # the user's notes
    "progress_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "num_workers",
    "torch_threads",  # the reduction order, not the experiment (a resumed run checks it separately)
    "compile",
    "sweep_catch_errors",
    "objective",  # what a sweeper optimises, not what a run does
    # The head analysis after training looks at the trained model; it does not change it (its own settings say
    # which figures the sweep report's pruning section shows, and it says so when they differ between jobs).
    "analyze_after_fit",
    "analysis",
)


def is_experiment_setting(key: str) -> bool:
    """Whether a setting (`model.heads`, `optimizer`, `+meta.note`, ...) changes what a run trains or measures,
    so that runs differing in it are different configurations (see NOT_EXPERIMENT_SETTINGS)."""
    key = key.lstrip("+~")
    return not any(key == name or key.startswith((f"{name}.", f"{name}/")) for name in NOT_EXPERIMENT_SETTINGS)


@dataclass
class EvalConfig:
    """`python -m src.eval ckpt=...`: test metrics of a checkpoint."""

    # Every command that reads a trained model takes the same ckpt= (src/training/checkpoint.py
    # read_any_checkpoint): a run directory (its best checkpoint, said in one line), a .ckpt file, or hf:<model>.
    ckpt: str = MISSING
    batch_size: Optional[int] = None  # None: the training run's batch size
    split: str = "test"  # test (all test splits, incl. test_long for synthetic tasks) | val
    accelerator: str = "cpu"
    torch_threads: int = 0
    # Translation tasks: the split is also translated with these settings (greedy or beam) and scored with
    # sacrebleu against the raw references (`<split>/sacrebleu`, cased and lowercased, with its signature): the
    # one BLEU src.eval prints (training's quick val/bleu is not computed here).
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    ablate: AblateConfig = field(default_factory=AblateConfig)  # heads and sublayers off while evaluating
    task: Any = None  # ckpt=hf:<model> only: the task to evaluate it on (task=multi30k ...); ours bring their own


@dataclass
class PredictConfig:
    """`python -m src.predict ckpt=... text="..."`: translate, continue or classify one text, or every line of a
    file (`input=<file>`, printed or written to `output=<file>`)."""

    ckpt: str = MISSING  # a run directory (its best checkpoint), a .ckpt file or hf:<model>, as src.eval takes
    text: Optional[str] = None
    input: Optional[str] = None  # a text file: one input per line
    output: Optional[str] = None  # with input: the file to write (one output per line); never overwritten
    batch_size: int = 64  # lines decoded together (seq2seq)
    num_samples: int = 1  # decode.strategy=sample: how many continuations to draw
    seed: int = 0  # sampling seed
    torch_threads: int = 0
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    ablate: AblateConfig = field(default_factory=AblateConfig)  # heads and sublayers off while predicting
    task: Any = None  # ckpt=hf:<model> only, and optional: a task whose data it reads (mean ablation needs them)
    attention: Optional[str] = None  # with text=: an HTML page of the attention on it (src/dashboard/explorer.py)
    target: Optional[str] = None  # with attention= on an encoder-decoder: the decoder's side (default: its output)
    attention_site: Optional[str] = None  # with attention=: the site the page opens on (default: the first)


@dataclass
class AnalyzeConfig(AnalysisConfig):
    """`python -m src.analyze ckpt=... [split=val]`: what the heads of a trained model do (src/analysis/)."""

    # As src.eval's (a run directory: its best checkpoint; a .ckpt file; hf:<model> with task=), or a sweep
    # directory: every completed job's best checkpoint (failed jobs are named and skipped).
    ckpt: str = MISSING
    out: Optional[str] = None  # where the analysis goes (None: <run>/analysis/); never overwritten
    batch_size: Optional[int] = None  # None: the training run's batch size
    accelerator: str = "cpu"
    torch_threads: int = 0
    ablate: AblateConfig = field(default_factory=AblateConfig)  # analyse the model with these already off
    task: Any = None  # ckpt=hf:<model> only: the task whose data it is analysed on (out= then names the folder)
    # What is measured (src/analyze.py ANALYSES): heads (importance, ablations, pruning: <run>/analysis/) or
    # patching (activation, attribution and path patching on counterfactual pairs: <run>/patching/).
    analysis: str = "heads"
    # patching: a file of pairs (src/data/pairs.py PAIRS_FILE_FORMAT); None: the task's own pairs from `split`
    pairs: Optional[str] = None
    max_pairs: int = 64  # patching: at most this many pairs (the first of the file or of the task's)
    metric: str = "logit_diff"  # patching: logit_diff | loss | exact_match, at each pair's scored position
    direction: str = "denoising"  # patching: denoising (clean into corrupted) | noising (corrupted into clean)
    # patching: path patching from each sender head to each receiver head in a later layer (as ablate.heads)
    senders: list[str] = field(default_factory=list)
    receivers: list[str] = field(default_factory=list)


def safe_dirname(overrides: str, limit: int = 200) -> str:
    """A directory name from a job's overrides (`model.heads:8+task:sort`): characters that a shell or Hydra's
    override grammar would trip over (`/ = , [ ] '` ...) become `-`, so the path can be pasted into `ckpt=...`
    unquoted; long names are shortened with a hash, since a file name may not exceed 255 bytes."""
    name = re.sub(r"[^\w.:+@%-]", "-", overrides) or "defaults"
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}-{digest}"


def varied_keys(sweep_dir: str | Path | None, sweeper_params: Any = None) -> list[str]:
    """The settings a sweep varies, in the order they were given: the sweep overrides of its command line
    (`model.heads=1,2,4`, `optimizer=adamw_cosine,adam_noam`, `range(...)`, ...), then its sweeper's params (an
    experiment's `hydra.sweeper.params`), read from the multirun.yaml Hydra's basic sweeper writes into the sweep
    directory before the first job starts. A group's name stands for the group (`optimizer`).

    An optimising sweeper (Optuna) writes no multirun.yaml: give its `sweeper_params` (a job's
    `HydraConfig.get().sweeper.params`, e.g. `optimizer.lr: tag(log, interval(1e-4, 3e-3))`) to count its search
    space too."""
    lines = list(saved_sweep_lines(Path(str(sweep_dir)) / "multirun.yaml"))
    lines += [f"{key}={value}" for key, value in (sweeper_params or {}).items()]
    return list(sweep_overrides_of(tuple(lines)))


def saved_sweep_lines(multirun_yaml: Path) -> tuple[str, ...]:
    """The overrides and sweeper params multirun.yaml holds, as override lines; none without the file. Each job's
    directory name asks for them, several times a job: the file is read again only once it has changed (a resumed
    sweep rewrites it)."""
    try:
        stat = multirun_yaml.stat()
    except OSError:  # no multirun.yaml (a single run, another sweeper): only what sweeper_params says
        return ()
    return _saved_sweep_lines(str(multirun_yaml), (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _saved_sweep_lines(path: str, version: tuple[int, ...]) -> tuple[str, ...]:
    lines: list[str] = []
    try:  # what the file holds of these, in this order (a file written by hand may hold only the overrides)
        saved = OmegaConf.load(path)
        lines += [str(o) for o in saved.hydra.overrides.task]
        lines += [f"{key}={value}" for key, value in (saved.hydra.sweeper.get("params") or {}).items()]
    except Exception:
        pass
    return tuple(lines)


@functools.lru_cache(maxsize=256)
def sweep_overrides_of(lines: tuple[str, ...]) -> tuple[str, ...]:
    """The keys (groups by name) of the lines that are sweep overrides, once each, in order (Hydra's grammar, parsed
    once per set of lines: its parser is slow)."""
    parser = OverridesParser.create()
    varied = []
    for line in lines:
        try:
            override = parser.parse_override(line)
        except Exception:  # not Hydra's grammar (a hand-edited multirun.yaml): not known to vary
            continue
        if override.is_sweep_override():
            varied.append(override.key_or_group.lstrip("+~"))
    return tuple(dict.fromkeys(varied))


def sweep_job_dirname(overrides: List[str], sweep_dir: str | None = None, sweeper_params: Any = None) -> str:
    """A sweep job's directory name: the settings the sweep varies, in sweep order, `model.heads:8+seed:1` (`:`
    and `+` rather than `=` and `,`, which would break a later `ckpt=<path>` in Hydra's grammar). When the varied
    settings are not known, every override but paths (not hyperparameters; their slashes would nest
    directories). The full overrides are always in the job's .hydra/overrides.yaml."""
    values = {}
    for override in overrides:
        key, _, value = override.partition("=")
        values[key.lstrip("+~")] = value
    varied = [key for key in varied_keys(sweep_dir, sweeper_params) if key in values]
    if varied:
        return safe_dirname("+".join(f"{key}:{values[key]}" for key in varied))
    places = {"ckpt_path"} | {f"task.{name}" for spec in all_tasks().values() for name in spec.path_fields}
    kept = [key for key in sorted(values) if key not in places and not key.startswith("hydra.")]
    return safe_dirname("+".join(f"{key}:{values[key]}" for key in kept))


# What register_configs last put in the ConfigStore: the registries' entries it was built from, and each node it stored
# by its place in the store (to know that the store still holds them all).
_REGISTERED: dict[str, Any] = {}


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (and the resolver sweep directories are named with). Every command
    calls it, and the tests for every config they compose: the schemas are built again only when a registry has
    changed since (a task or mask scheme registered later, as docs/extending.md does) or the store no longer holds
    every one of them as stored. Building them (OmegaConf.structured of every schema) was a fifth of a composition's
    time."""
    if not OmegaConf.has_resolver("sweep_job_dirname"):
        OmegaConf.register_new_resolver("sweep_job_dirname", sweep_job_dirname)
    compose_cheaply()
    cs = ConfigStore.instance()
    tasks = all_tasks()
    entries = (tuple((name, spec.schema) for name, spec in tasks.items()), tuple(MASK_SCHEMES.items()))
    if _REGISTERED.get("entries") == entries and all(cs._open(at) is node for at, node in _REGISTERED["nodes"].items()):
        return
    schemas: list[tuple[str, str, Any]] = [
        ("", "base_config", Config),
        ("", "base_eval", EvalConfig),
        ("", "base_predict", PredictConfig),
        ("", "base_analyze", AnalyzeConfig),
        *(("schema/task", name, spec.schema) for name, spec in tasks.items()),
        *(("schema/mask", name, mask_schema(name, scheme)) for name, scheme in MASK_SCHEMES.items()),
    ]
    for group, name, node in schemas:
        cs.store(group=group or None, name=name, node=node)
    stored_at = [f"{group}/{name}.yaml" for group, name, _ in schemas]  # the store's own paths (ConfigStore._open)
    _REGISTERED.update(entries=entries, nodes={at: cs._open(at) for at in stored_at})


def resolve_arch(cfg: DictConfig) -> str:
    """model.arch, with `auto` replaced by the architecture the task needs."""
    return ARCH_FOR_KIND[task_spec(cfg.task.name).kind] if cfg.model.arch == "auto" else cfg.model.arch


AUTO_PRECISION = "auto"  # trainer.precision=auto: the device's (resolve_precision)


def resolve_precision(precision: Any, accelerator: Any) -> Any:
    """trainer.precision as Lightning takes it, for a run that trains on this machine: `auto` becomes bf16-mixed on
    a CUDA GPU that computes in bf16 (Ampere or newer), 16-mixed on an older one, and 32-true elsewhere (the CPU,
    where bf16 autocast pays only with AVX512-BF16 or AMX: docs/performance.md). accelerator=auto trains on a GPU
    when one is visible, as Lightning picks. Any other precision is returned as it is."""
    import torch

    if str(precision) != AUTO_PRECISION:
        return precision
    gpu = str(accelerator) in ("gpu", "cuda") or (str(accelerator) == "auto" and torch.cuda.is_available())
    if not gpu:
        return "32-true"
    # Not counting emulation: bf16 emulated on an older GPU is slower than fp16
    return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"


def model_config_for(
    cfg: DictConfig, src_vocab_size: int = 8, tgt_vocab_size: int = 8, num_classes: int = 2
) -> TransformerConfig:
    """The model's own config from the composed Hydra config: every ModelAxes field, the mask scheme, and the
    vocabulary sizes from the data (placeholders until the data is built, so validate() can run first).
    With model.pretrained, the pretrained model's own config (its classes: the task's), model.dropout and the mask."""
    if cfg.model.get("pretrained"):
        from src.pretrained import pretrained_config

        model_cfg, _, _ = pretrained_config(cfg.model.pretrained, num_classes=num_classes)
        from src.pretrained.run_config import composed_model_settings, mask_given

        given = set(override_keys(job_overrides()))
        if mask_given(job_overrides(), to_plain(cfg.mask)):  # an ablation of the mask (typed, or an experiment's)
            model_cfg.mask = to_plain(cfg.mask)
        # else the family's own: the standard mask, or Mistral's sliding window (mask: {type: window})
        chosen = set(composed_model_settings(cfg.model, job_overrides()))  # by a config file (an experiment's)
        for name in DROPOUTS:  # the model's own dropouts (config.json's) unless set on the command line or in a file
            if f"model.{name}" in given or f"model.{name}" in chosen:
                setattr(model_cfg, name, cfg.model[name])
        return model_cfg
    axes = {f.name: cfg.model[f.name] for f in fields(ModelAxes)}
    axes["arch"] = resolve_arch(cfg)
    axes["rope_scaling"] = rope_scaling_settings(cfg.model.rope_scaling)
    return TransformerConfig(
        **axes,
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        num_classes=num_classes,
        mask=to_plain(cfg.mask),
    )


# The settings model.pretrained leaves to the user: the dropouts (fine-tuning's regularisation).
DROPOUTS = ("dropout", "attention_dropout", "ffn_dropout")


def job_overrides() -> list[str]:
    """The command line's overrides of this Hydra job (none outside one)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def override_keys(overrides: list[str]) -> list[str]:
    """The settings overrides set, in order: `model.heads` of `model.heads=4`, `+x=1` and `~x` included."""
    return [override.split("=", 1)[0].lstrip("+~") for override in overrides]


def to_plain(cfg: DictConfig) -> dict:
    """Resolved plain-dict copy (for checkpoints and hparams)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
