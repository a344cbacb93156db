"""Bad configurations fail early with one clear line; good ones compose and validate.

Most checks call `validate_config` on a config composed by Hydra's compose API (fast, in-process, see conftest.py);
a few go through the real command line to check what the user sees: exit status 2, one line on stderr, no
traceback.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from src.cli import validation
from src.cli.schema import DecodeConfig, ModelConfig, OptimizerConfig
from src.cli.validation import validate_config, warn_unread_settings
from src.data import DataError
from src.model import ConfigError
from src.model.config import ARCHITECTURES
from src.model.decoding import STRATEGIES
from src.training.optim import OPTIMIZERS
from tests.conftest import run_in_process

ROOT = Path(__file__).resolve().parents[2]
USER_ERRORS = (ConfigError, DataError)


# --- every task, every group option composes and validates --------------------------------------------------


@pytest.mark.parametrize("task", ["copy", "reverse", "sort", "addition", "multi30k"])
def test_self_contained_tasks_validate(compose, task):
    validate_config(compose(f"task={task}"))


def test_file_tasks_validate(compose, text_files, translation_overrides):
    validate_config(compose("task=char_lm", f"task.path={text_files['text.txt']}"))
    validate_config(compose(*translation_overrides()))
    validate_config(compose("task=classification", f"task.train_path={text_files['train.tsv']}"))


@pytest.mark.parametrize(
    "override",
    [
        "model=tiny",
        "model=small",
        "model=base",
        "mask=standard",
        "mask=causal",
        "mask=window",
        "mask=prefix",
        "mask=none",
        "trainer=cpu",
        "trainer=gpu",
        "trainer=ddp",
        "logger=tensorboard",
        "logger=none",
        "optimizer=adam_noam",
        "optimizer=adamw_cosine",
    ],
)
def test_group_options_compose(compose, override):
    cfg = compose(override)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU is visible: use trainer=cpu"):
            validate_config(cfg)
        return
    validate_config(cfg)


@pytest.mark.parametrize(
    "overrides,field",
    [
        (["trainer.precision=bogus"], "trainer.precision=bogus"),
        (["trainer.precision=16-mixed"], "trainer.precision=16-mixed: fp16 mixed precision is for GPUs"),
        (["trainer.val_check_interval=0"], "trainer.val_check_interval=0"),
        (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0"),
        (["trainer.limit_val_batches=0"], "trainer.limit_val_batches=0"),
        (["optimizer.betas=[0.9]"], "optimizer.betas"),
        (["num_workers=-1"], "num_workers=-1"),
        (["dashboard.probe_size=0"], "dashboard.probe_size=0"),
        (["checkpoint.every_n_train_steps=-1"], "checkpoint.every_n_train_steps=-1"),
    ],
)
def test_trainer_and_run_settings_out_of_range_are_one_line(compose, overrides, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[")) as error:
        validate_config(compose(*overrides))
    assert "\n" not in str(error.value)


# --- semantic errors: one line naming the field -------------------------------------------------------------

BAD_CONFIGS = [
    (["model.heads=3"], "model.heads"),
    (["model.d_model=60", "model.heads=8"], "model.heads"),
    (["mask=window", "mask.window=0"], "mask.window"),
    (["mask=prefix", "mask.prefix_len=-1"], "mask.prefix_len"),
    (["model.arch=decoder_only"], "model.arch"),
    (["model.arch=encoder_only"], "model.arch"),
    (["task=char_lm", "task.path=/nonexistent/input.txt"], "task.path"),
    (["task=char_lm"], "task.path"),
    (["task=classification", "task.train_path=missing.tsv"], "task.train_path"),
    (["task=multi30k", "task.src_lang=fr"], "task.src_lang"),
    (["model.max_len=8"], "model.max_len"),
    (["model.pos_encoding=rotary"], "model.pos_encoding"),
    (["model.pos_encoding=rope", "model.d_model=60", "model.heads=4"], "model.pos_encoding"),
    (["model.pos_encoding=rope", "model.rope_theta=1"], "model.rope_theta=1.0 must be > 1"),
    (["model.pos_encoding=rope", "model.rope_fraction=0.1"], "model.rope_fraction=0.1 of the head size"),
    (["model.pos_encoding=rope", "model.rope_scaling.type=yarn"], "model.rope_scaling.type='yarn' is not known"),
    (["model.pos_encoding=rope", "model.rope_scaling.factor=2"], "model.rope_scaling.factor=2.0 is given without"),
    (["model.norm_type=batchnorm"], "model.norm_type"),
    # T5's buckets: a decoder's are one-way, so max_distance must exceed relative_buckets/2 (not /4) exact distances
    (
        ["task=induction", "model.pos_encoding=t5_relative", "model.relative_max_distance=12"],
        "model.relative_max_distance=12 must exceed the exact distances of a decoder's one-way buckets, "
        "relative_buckets//2 = 16: set model.relative_max_distance=17 or more",
    ),
    (
        ["model.pos_encoding=t5_relative", "model.relative_buckets=8", "model.relative_max_distance=3"],
        "model.relative_max_distance=3 must exceed the exact distances of a decoder's one-way buckets",
    ),
    (["model.norm_eps=-1", "model.qk_norm=true", "model.norm_type=rmsnorm"], "model.norm_eps=-1.0 must be > 0"),
    (["model.norm_eps=0"], "model.norm_eps=0.0 must be > 0"),
    (
        ["model.attention_bias=false"],
        "model.attention_bias=false is not known: it is not a switch but names the projections with biases: choose "
        "one of all, qkv, none (none: no biases)",
    ),
    (["model.arch=true"], "model.arch=true is not known: it is not a switch but names the architecture"),
    (["model.dropout=1.5"], "model.dropout"),
    (["model.layers=0"], "model.enc_layers"),
    (["+trainer.gradient_clip_algorithm=bogus"], "trainer.gradient_clip_algorithm=bogus is not known to Lightning"),
    (["model.layers=null"], "model.layers=null leaves model.enc_layers and model.dec_layers without a layer count"),
    (["task=char_lm", "model.layers=null"], "model.layers=null leaves model.dec_layers without"),  # enc: unread
    (
        ["task=char_lm", "model.layers=null", "model.dec_layers=1"],
        "leaves model.enc_layers, which follows it, without "
        "a count: leave model.layers out (model.dec_layers=1 sets the layers arch=decoder_only has)",
    ),
    (["mask.type=diagonal"], "mask"),
    (["mask=prefix", "mask.prefix_len=300"], "mask.prefix_len"),
    (["task=char_lm", f"task.path={ROOT / 'README.md'}", "task.block_size=1"], "task.block_size"),
    (["task=char_lm", f"task.path={ROOT / 'README.md'}", "task.val_fraction=0"], "task.val_fraction"),
    (["task=classification", f"task.train_path={ROOT / 'README.md'}", "task.tokenizer=chars"], "task.tokenizer"),
    (["optimizer.name=sgd"], "optimizer.name"),
    (["optimizer=adam_noam", "optimizer.warmup_steps=0"], "optimizer.warmup_steps"),
    (["task.min_len=5", "task.max_len=3"], "task.min_len"),
    (["label_smoothing=1.0"], "label_smoothing"),
    (["decode.top_p=0"], "decode.top_p"),
    (["decode.strategy=nucleus"], "decode.strategy"),
    (["logger.name=wandb"], "logger"),
]


@pytest.mark.parametrize("overrides,field", BAD_CONFIGS, ids=[" ".join(o) for o, _ in BAD_CONFIGS])
def test_semantic_errors_are_one_line_naming_the_field(compose, overrides, field):
    cfg = compose(*overrides)
    with pytest.raises(USER_ERRORS) as raised:
        validate_config(cfg)
    message = str(raised.value)
    assert field in message
    assert "\n" not in message


def float_settings() -> list[str]:
    """Every model.* setting that holds a real number, read from the schema (model.rope_scaling's too)."""
    from src.cli.schema import RopeScalingConfig

    model = [f"model.{f.name}" for f in dataclasses.fields(ModelConfig) if "float" in str(f.type)]
    scaling = [f"model.rope_scaling.{f.name}" for f in dataclasses.fields(RopeScalingConfig) if "float" in str(f.type)]
    return model + scaling


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("setting", float_settings())
def test_a_float_setting_that_is_not_a_finite_number_is_one_line(compose, setting, value):
    """A range check written as a comparison lets nan through (nan <= 1 is false): model.rope_theta=nan trained and
    'diverged' at step 1. Every float setting is refused, read or not (here with RoPE and a scaling: all are read)."""
    scaling = ["model.rope_scaling.type=llama3"] if setting.startswith("model.rope_scaling.") else []
    cfg = compose("model.pos_encoding=rope", *scaling, f"{setting}={value}")
    with pytest.raises(ConfigError) as refused:
        validate_config(cfg)
    assert str(refused.value).startswith(f"{setting}={value} is not a finite number: give one")
    assert "\n" not in str(refused.value)


def test_encoder_only_on_translation_names_the_fix(compose, translation_overrides):
    cfg = compose(*translation_overrides("model.arch=encoder_only"))
    with pytest.raises(ConfigError, match="model.arch=encoder_decoder"):
        validate_config(cfg)


def test_translation_needs_its_files(compose, text_files):
    cfg = compose("task=translation", f"task.train_src={text_files['src.txt']}")
    with pytest.raises(ConfigError, match="task.train_tgt"):
        validate_config(cfg)


# --- through the real command line ---------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src.run", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow  # tens of seconds: handed out with the end-to-end files, first
def test_cli_semantic_error_is_one_line_exit_2(tmp_path):
    result = run_cli("model.heads=3", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "model.heads" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


# The two below run the command in this process (tests/conftest.py run_in_process): the one above is the real
# process's check that nothing else reaches stderr before the line (its imports' warnings).
def test_cli_bad_checkpoint_is_one_line_exit_2(tmp_path):
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("not a checkpoint")
    code, _, err = run_in_process("src.run", f"ckpt_path={not_a_checkpoint}", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "ckpt_path" in lines[0], err
    assert "Traceback" not in err


def test_cli_typo_fails_with_hydras_message(tmp_path):
    code, _, err = run_in_process("src.run", "model.head=8", f"hydra.run.dir={tmp_path / 'run'}")
    assert code != 0
    assert "model.head" in err
    assert "Traceback" not in err


# --- legal settings the chosen options leave unread: one warning line, naming what would read them ----------------

# Every experiment= option: experiments/<name>.yaml, and a study's configurations in experiments/<study>/<name>.yaml
EXPERIMENTS = sorted(
    path.relative_to(ROOT / "experiments").with_suffix("").as_posix() for path in (ROOT / "experiments").rglob("*.yaml")
)


def unread_warnings(compose, capsys, *overrides: str) -> list[str]:
    """What src.run would warn about settings nothing reads, for a config composed from `overrides`: every line it
    prints, each of which must be a warning."""
    capsys.readouterr()  # what earlier steps printed is not this config's
    warn_unread_settings(compose(*overrides))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert all(line.startswith("warning: ") for line in lines), lines
    return lines


def sweep_points(experiment: str) -> list[list[str]]:
    """The experiment alone, and with each value its sweeper varies (one at a time): the jobs' own settings."""
    params = OmegaConf.load(ROOT / "experiments" / f"{experiment}.yaml").get("hydra", {}).get("sweeper", {})
    points = [[f"experiment={experiment}"]]
    for key, values in (params.get("params") or {}).items():
        points += [[f"experiment={experiment}", f"{key}={value.strip()}"] for value in str(values).split(",")]
    return points


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_the_default_config_and_every_experiment_read_every_setting_they_give(compose, capsys, experiment):
    points = [[]] if experiment is None else sweep_points(experiment)
    for overrides in points:
        assert unread_warnings(compose, capsys, *overrides) == [], overrides


def test_the_kv_heads_study_compares_its_attentions_at_equal_parameter_count(compose):
    """experiments/kv_heads.md: multi-head, grouped (4 and 2 KV heads) and multi-query attention, each configuration's
    model.d_ff giving back what its smaller key and value projections save."""
    from src.cli.schema import model_config_for
    from src.model import build_model

    counts = {}
    for name in ("mha", "gqa4", "gqa2", "mqa"):
        cfg = compose(f"experiment=kv_heads/{name}")
        model_cfg = model_config_for(cfg, tgt_vocab_size=69).validate()  # Tiny Shakespeare's 65 characters + 4
        counts[name] = (model_cfg.kv_head_count, sum(p.numel() for p in build_model(model_cfg).parameters()))
    assert [kv for kv, _ in counts.values()] == [8, 4, 2, 1]
    multi_head = counts["mha"][1]
    assert all(abs(count - multi_head) / multi_head < 5e-4 for _, count in counts.values()), counts


# (overrides, the one warning line) for each kind of setting an option leaves unread
UNREAD = [
    (
        ["optimizer=adam_noam", "optimizer.min_lr_ratio=0.1"],
        "optimizer.min_lr_ratio=0.1 has no effect with optimizer=adam_noam (its schedule has no end): only "
        "adamw_cosine reads it",
    ),
    (
        ["model.pooling=first_token"],
        "model.pooling=first_token has no effect with model.arch=encoder_decoder (the architecture of task=reverse): "
        "only encoder_only (classification tasks) reads it",
    ),
    (
        ["task=char_lm", "model.enc_layers=3"],
        "model.enc_layers=3 has no effect with model.arch=decoder_only (the architecture of task=char_lm): only "
        "encoder_decoder (seq2seq tasks) and encoder_only (classification tasks) read it",
    ),
    (
        ["task=classification", "model.arch=encoder_only", "model.tie_embeddings=false", "model.output_bias=true"],
        "model.tie_embeddings=false, model.output_bias=true have no effect with model.arch=encoder_only: only "
        "encoder_decoder (seq2seq tasks) and decoder_only (lm tasks) read them",
    ),
    (
        ["task=classification", "task.val_path=val.tsv", "task.val_fraction=0.2"],
        "task.val_fraction=0.2 has no effect with task.val_path=val.tsv (task.val_path replaces it): only "
        "task=classification without task.val_path reads it",
    ),
    (
        ["logger=none", "dashboard.attention_every_n_steps=50"],
        "dashboard.attention_every_n_steps=50 has no effect with logger=none (it writes no TensorBoard, where the "
        "dashboards are drawn): only logger=tensorboard, logger=csv, logger=wandb and logger=mlflow read it",
    ),
    (
        ["dashboard.attention_maps=false", "dashboard.attention_stats=false", "dashboard.attention_every_n_steps=50"],
        "dashboard.attention_every_n_steps=50 has no effect with dashboard.attention_maps=false and "
        "dashboard.attention_stats=false: only dashboard.attention_maps=true and dashboard.attention_stats=true "
        "read it",
    ),
    (
        ["dashboard.attention_stats=false", "dashboard.probe_size=4"],
        "dashboard.probe_size=4 has no effect with dashboard.attention_stats=false: only "
        "dashboard.attention_stats=true reads it",
    ),
    (
        ["task=char_lm", "dashboard.text_examples=8"],
        "dashboard.text_examples=8 has no effect with task=char_lm (the text sample of an lm task is one generated "
        "text): only the text table of seq2seq and classification tasks reads it",
    ),
    (
        ["decode.strategy=beam", "decode.beam_size=8"],
        "decode.strategy=beam, decode.beam_size=8 have no effect in this run: only the test BLEU of "
        "test_after_fit=true on a task scored with BLEU (translation, multi30k) reads them; src.eval and src.predict "
        "take their own decode.*",
    ),
    (
        ["decode.temperature=0.5"],
        "decode.temperature=0.5 has no effect in this run: only the text samples of an lm task "
        "(dashboard.text_samples) reads it; src.eval and src.predict take their own decode.*",
    ),
    (
        ["task=multi30k", "test_after_fit=true", "decode.length_penalty=1.0"],
        "decode.length_penalty=1.0 has no effect with decode.strategy=greedy: only decode.strategy=beam reads it",
    ),
    (
        ["trainer.enable_progress_bar=false", "progress_every_n_steps=10"],
        "progress_every_n_steps=10 has no effect with trainer.enable_progress_bar=false (no progress is shown): only "
        "trainer.enable_progress_bar=true reads it",
    ),
    (
        ["ablate.reference_examples=16"],
        "ablate.reference_examples=16 has no effect with ablate.method=zero (an ablated head gets its output set to "
        "zero): only ablate.method=mean of src.eval, src.predict and src.analyze reads it",
    ),
    (
        ["model.rope_theta=500000", "model.rope_scaling.type=linear"],
        "model.rope_theta=500000.0, model.rope_scaling.type=linear have no effect with model.pos_encoding=sinusoidal: "
        "only model.pos_encoding=rope reads them",
    ),
    (
        ["model.pos_encoding=rope", "model.rope_scaling.type=linear"],
        "model.rope_scaling.type=linear has no effect with its default factor 1.0 (every frequency is divided by 1: "
        "the unscaled RoPE): set model.rope_scaling.factor=N for N times the trained length, or leave "
        "model.rope_scaling out",
    ),
    (
        ["model.pos_encoding=rope", "model.rope_scaling.type=llama3", "model.rope_scaling.factor=1"],
        "model.rope_scaling.type=llama3 has no effect with model.rope_scaling.factor=1.0 (every frequency is divided "
        "by 1: the unscaled RoPE): set model.rope_scaling.factor=N for N times the trained length, or leave "
        "model.rope_scaling out",
    ),
    (
        ["task=induction", "model.parallel_layers=true", "model.norm_position=pre", "model.ffn=false"],
        "model.parallel_layers=true has no effect with model.ffn=false (an attention-only parallel layer is the "
        "sequential pre-LN layer: no FFN runs beside the attention): only model.ffn=true reads it",
    ),
    (
        ["logger.tracking_uri=file:runs"],
        "logger.tracking_uri=file:runs has no effect with logger=tensorboard: only mlflow reads it",
    ),
]


@pytest.mark.parametrize("overrides,line", UNREAD, ids=[" ".join(o) for o, _ in UNREAD])
def test_a_setting_the_chosen_options_do_not_read_gets_one_warning_naming_its_readers(compose, capsys, overrides, line):
    assert unread_warnings(compose, capsys, *overrides) == [f"warning: {line}"]


# The same settings where something reads them: no warning.
READ = [
    ["optimizer=adamw_cosine", "optimizer.min_lr_ratio=0.1"],
    ["task=classification", "model.pooling=first_token"],
    ["task=char_lm", "model.tie_embeddings=false", "model.output_bias=true", "model.dec_layers=3"],
    ["task=char_lm", "model.layers=3"],  # enc_layers follows layers, and is not given on its own
    ["model.enc_layers=3", "model.share_src_tgt_embeddings=true"],
    ["task=classification", "task.val_fraction=0.2", "task.test_path=test.tsv"],
    ["logger=none"],  # conf/config.yaml's dashboard.attention_every_n_steps is the default run's, not given
    ["logger=csv", "dashboard.attention_every_n_steps=50"],  # csv writes TensorBoard too
    ["dashboard.attention_maps=false", "dashboard.attention_every_n_steps=50", "dashboard.probe_size=4"],
    ["dashboard.text_examples=8"],
    ["task=multi30k", "test_after_fit=true", "decode.strategy=beam", "decode.beam_size=8"],
    ["task=multi30k", "decode.max_new_tokens=50"],  # src.analyze decodes up to it
    ["task=char_lm", "decode.temperature=0.5", "decode.top_k=5"],
    ["trainer.enable_progress_bar=true", "progress_every_n_steps=10"],
    ["sweep_catch_errors=false", "report.baseline='model.heads=4'"],  # a sweep's or not: not known outside Hydra
    ["model.pos_encoding=rope", "model.rope_scaling.type=linear", "model.rope_scaling.factor=2"],
    ["model.pos_encoding=rope", "model.rope_scaling.type=llama3"],  # its default factor, 8
    ["task=induction", "model.parallel_layers=true", "model.norm_position=pre"],  # with an FFN beside the attention
]


@pytest.mark.parametrize("overrides", READ, ids=[" ".join(o) for o in READ])
def test_a_setting_the_chosen_options_read_gets_no_warning(compose, capsys, overrides):
    assert unread_warnings(compose, capsys, *overrides) == []


def test_a_sweeps_own_settings_in_a_single_run_get_one_warning(compose, capsys, monkeypatch):
    monkeypatch.setattr(validation, "single_run", lambda: True)
    lines = unread_warnings(compose, capsys, "sweep_catch_errors=false", "report.baseline='model.heads=4'")
    assert lines == [
        "warning: sweep_catch_errors=false, report.baseline=model.heads=4 have no effect in a single run: only a "
        "sweep (-m) reads them"
    ]
    monkeypatch.setattr(validation, "single_run", lambda: False)
    assert unread_warnings(compose, capsys, "sweep_catch_errors=false", "report.baseline='model.heads=4'") == []


def test_every_optimizer_setting_is_read_by_some_optimizer_and_named_in_the_schema():
    """The registry's facts cover the schema: no optimizer.* field that no recipe reads, no read that is not one."""
    fields = {f.name for f in dataclasses.fields(OptimizerConfig)} - {"name"}
    read = {name for recipe in OPTIMIZERS.values() for name in recipe.reads}
    assert read == fields
    for recipe in OPTIMIZERS.values():
        assert set(recipe.why_unread) <= fields - set(recipe.reads)


def test_every_architecture_setting_is_a_model_setting():
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for arch in ARCHITECTURES.values():
        assert set(arch.model_class().arch_settings) <= fields, arch


def test_every_strategy_setting_is_a_decode_setting_and_its_own():
    """A strategy's own settings (STRATEGIES[...].settings, which the unread-setting warnings read) are decode.*
    fields, and no two strategies claim the same one."""
    fields = {f.name for f in dataclasses.fields(DecodeConfig)}
    claimed = [name for strategy in STRATEGIES.values() for name in strategy.settings]
    assert set(claimed) <= fields
    assert len(claimed) == len(set(claimed))


def test_a_source_prefix_for_a_model_trained_from_scratch_gets_one_warning(compose, capsys, translation_overrides):
    """task.src_prefix is for a pretrained model trained with one (T5); a model trained here learns nothing from
    the same text in front of every source, which only takes its tokens from task.max_len."""
    lines = unread_warnings(compose, capsys, *translation_overrides("task.src_prefix='translate: '"))
    assert len(lines) == 1 and "task.src_prefix='translate: ' puts the same text in front of every source" in lines[0]
    assert unread_warnings(compose, capsys, *translation_overrides()) == []


def real_number_settings(node, path: str = "") -> list[str]:
    """Every real-number setting of a composed config, as a dotted path (lists' items by index)."""
    paths = []
    for key in node:
        value = node[key]
        if isinstance(value, DictConfig):
            paths += real_number_settings(value, f"{path}{key}.")
        elif isinstance(value, float):
            paths.append(f"{path}{key}")
    return paths


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_real_number_setting_refuses_what_is_not_a_finite_number(compose, value):
    """nan passes every range check written as a comparison; inf passes many. Each float setting of the default run
    (the model's are TransformerConfig's, checked with their defaults named) is refused by name."""
    cfg = compose()
    settings = [path for path in real_number_settings(cfg) if not path.startswith(("hydra.", "model."))]
    assert {"optimizer.lr", "optimizer.weight_decay", "trainer.gradient_clip_val", "decode.temperature"} <= set(
        settings
    )
    for path in settings:
        with pytest.raises(ConfigError, match=rf"^{re.escape(path)}={value} is not a finite number: give one"):
            validate_config(compose(f"{path}={value}"))
    with pytest.raises(ConfigError, match=r"^optimizer.betas\[1\]=nan is not a finite number"):
        validate_config(compose("optimizer.betas=[0.9,nan]"))
    with pytest.raises(ConfigError, match=r"^max_loss=inf is not a finite number: give one \(or null\)$"):
        validate_config(compose("max_loss=inf"))


def test_a_setting_that_is_not_a_finite_number_through_an_interpolation_is_refused(compose, monkeypatch):
    """`optimizer.lr=${oc.env:LR}` with LR=nan: the float setting converts what the interpolation gives."""
    monkeypatch.setenv("LR", "nan")
    with pytest.raises(ConfigError, match=r"^optimizer.lr=nan is not a finite number"):
        validate_config(compose("optimizer.lr=${oc.env:LR}"))
    with pytest.raises(ConfigError, match=r"^optimizer.lr=inf is not a finite number"):
        validate_config(compose("optimizer.lr=${max_loss}", "max_loss=inf"))  # max_loss's own line would come later
    validate_config(compose("+meta.note=nan"))  # a note of the user's is text, read by nothing


# --- optimizer.* ranges: what torch takes only when the optimizer is made, or never checks -----------------------

OPTIMIZER_OUT_OF_RANGE = [
    # below 0 the cosine decay ends at a negative learning rate; above 1 it climbs (warmup_cosine_multiplier)
    (["optimizer.min_lr_ratio=-1"], "optimizer.min_lr_ratio=-1.0 must be in [0, 1]"),
    (["optimizer.min_lr_ratio=2"], "optimizer.min_lr_ratio=2.0 must be in [0, 1]"),
    (["optimizer.betas=[0.9,1.0]"], "optimizer.betas=[0.9, 1.0]: beta2=1.0 must be in [0, 1)"),
    (["optimizer.betas=[-0.1,0.98]"], "optimizer.betas=[-0.1, 0.98]: beta1=-0.1 must be in [0, 1)"),
    (["optimizer.eps=0"], "optimizer.eps=0.0 must be > 0"),
    (["optimizer.eps=-1e-8"], "optimizer.eps=-1e-08 must be > 0"),
    (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1 must be >= 0"),
]


@pytest.mark.parametrize("overrides,line", OPTIMIZER_OUT_OF_RANGE, ids=[" ".join(o) for o, _ in OPTIMIZER_OUT_OF_RANGE])
def test_an_optimizer_setting_out_of_its_range_is_one_line(compose, overrides, line):
    with pytest.raises(ConfigError) as refused:
        validate_config(compose(*overrides))
    assert str(refused.value).startswith(line) and "\n" not in str(refused.value)


@pytest.mark.parametrize("ratio", ["0", "0.1", "1"])
def test_a_min_lr_ratio_in_its_range_is_taken(compose, ratio):
    validate_config(compose("optimizer=adamw_cosine", f"optimizer.min_lr_ratio={ratio}"))


def test_fast_dev_run_gets_one_warning_that_the_run_saves_nothing(compose, capsys):
    warn_unread_settings(compose("+trainer.fast_dev_run=true"))
    assert capsys.readouterr().err.splitlines() == [
        "warning: trainer.fast_dev_run=true runs 1 training and validation batch as a check instead of training, and "
        "Lightning then saves no checkpoint (the run cannot be evaluated or resumed): leave it out to train"
    ]


@pytest.mark.parametrize(
    ("overrides", "share", "suggested"),
    [
        (["trainer.max_steps=50"], "50%", 5),  # the default recipe (adamw_cosine) warms up over 100 steps
        (["trainer.max_steps=100"], "100%", 10),
        (["optimizer=adam_noam", "trainer.max_steps=300"], "75%", 30),  # the paper's schedule: 400 steps
    ],
)
def test_a_warm_up_that_outlasts_training_gets_one_warning(compose, capsys, overrides, share, suggested):
    """max_steps at or below warmup_steps never trains at the learning rate asked for: one line with the share of
    the peak it reaches, for every recipe that warms up."""
    cfg = compose(*overrides)
    validation.warn_if_warmup_outlasts_training(cfg)
    (line,) = capsys.readouterr().err.splitlines()
    steps, warmup = cfg.trainer.max_steps, cfg.optimizer.warmup_steps
    assert line == (
        f"warning: optimizer.warmup_steps={warmup} is not below trainer.max_steps={steps}: the learning rate is "
        f"still warming up when training ends, and reaches only {share} of its peak: lower optimizer.warmup_steps "
        f"(a tenth of the steps is usual: optimizer.warmup_steps={suggested})"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        [],  # 600 steps, 100 of warm-up
        ["trainer.max_steps=101"],
        ["optimizer.warmup_steps=0", "trainer.max_steps=5"],
        ["trainer.max_steps=-1", "trainer.max_time=00:00:01:00"],  # bounded by time: the steps are not known
    ],
)
def test_a_warm_up_that_ends_in_time_gets_no_warning(compose, capsys, overrides):
    validation.warn_if_warmup_outlasts_training(compose(*overrides))
    assert capsys.readouterr().err == ""


# --- the head analysis's settings (src.run's analysis.*, src.analyze's own) ------------------------------------------


@pytest.mark.parametrize("prefix", ["", "analysis."])
@pytest.mark.parametrize("tolerance", [1.0, 2.0])
def test_a_tolerance_of_the_whole_metric_or_more_is_refused(prefix, tolerance):
    """tolerance=2 let "100% of the heads go within 200%": a drop of the whole value allows any drop."""
    from src.cli.schema import AnalysisConfig

    settings = OmegaConf.structured(AnalysisConfig(tolerance=tolerance))
    with pytest.raises(ConfigError, match=rf"^{re.escape(prefix)}tolerance={tolerance} must be below 1"):
        validation.check_analysis_settings(settings, prefix=prefix)
    validation.check_analysis_settings(OmegaConf.structured(AnalysisConfig(tolerance=0.99)), prefix=prefix)


# --- the accelerator of the commands that read a trained model: one check (src.eval, src.analyze) -----------------


@pytest.mark.parametrize(
    "accelerator,line",
    [
        ("tpu", "accelerator='tpu' is not known: choose cpu, gpu, mps or auto"),
        ("foo", "accelerator='foo' is not known: choose cpu, gpu, mps or auto"),
        ("gpu", "accelerator=gpu: no CUDA GPU is available here: use accelerator=cpu"),
        ("mps", "accelerator=mps: MPS is not available here: use accelerator=cpu"),
    ],
)
def test_the_accelerator_of_a_trained_model_is_one_check(monkeypatch, accelerator, line):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError) as refused:
        validation.device_for(accelerator)
    assert str(refused.value) == line
    assert validation.device_for("auto") == torch.device("cpu")


@pytest.mark.parametrize(
    "heads, sublayers, line",
    [
        (["cross:1:2", "cross:1:3"], [], None),
        (["cross:1:2", "cross:1:2"], [], "ablate.heads names cross:1:2 more than once (cross:1:2 is given twice)"),
        ("cross:1:2", None, None),
        (["cross:1", "cross:1:2"], [], "ablate.heads names cross:1:2 more than once (by cross:1, cross:1:2)"),
        (
            ["cross:1", "cross:*"],
            [],
            "ablate.heads names cross:1:0, cross:1:1, cross:1:2, cross:1:3 more than once (by cross:1, cross:*)",
        ),
        (
            ["cross", "cross:0", "cross:1"],
            [],
            "ablate.heads names cross:0:0, cross:0:1, cross:0:2, cross:0:3, ... (8 heads) more than once (by cross, "
            "cross:0, cross:1)",
        ),
        (
            [],
            ["cross:1", "cross:1", "cross:1"],
            "ablate.sublayers names cross:1 more than once (cross:1 is given 3 times)",
        ),
    ],
)
def test_a_head_or_sublayer_named_more_than_once_is_one_warning(heads, sublayers, line):
    from src.model import TransformerConfig

    model = TransformerConfig(d_model=16, heads=4, enc_layers=2, dec_layers=2, d_ff=32)
    said = validation.repeated_ablation_line(OmegaConf.create({"heads": heads, "sublayers": sublayers}), model)
    if line is None:
        assert said is None
    else:
        assert said is not None and said.startswith(line + ": each ") and said.count("warning") == 0
