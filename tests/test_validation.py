"""Bad configurations fail early with one clear line; good ones compose and validate.

Most checks call `validate_config` on a config composed by Hydra's compose API (fast, in-process, see conftest.py);
a few go through the real command line to check what the user sees: exit status 2, one line on stderr, no
traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.data import DataError
from src.model import ConfigError
from src.validation import validate_config

ROOT = Path(__file__).resolve().parents[1]
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
    (["model.norm_type=batchnorm"], "model.norm_type"),
    (["model.dropout=1.5"], "model.dropout"),
    (["model.layers=0"], "model.enc_layers"),
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


def test_cli_semantic_error_is_one_line_exit_2(tmp_path):
    result = run_cli("model.heads=3", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "model.heads" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_bad_checkpoint_is_one_line_exit_2(tmp_path):
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("not a checkpoint")
    result = run_cli(f"ckpt_path={not_a_checkpoint}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ckpt_path" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_typo_fails_with_hydras_message(tmp_path):
    result = run_cli("model.head=8", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "model.head" in result.stderr
    assert "Traceback" not in result.stderr
