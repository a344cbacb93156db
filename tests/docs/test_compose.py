"""Every `python -m src.run` command of the README and docs/ is one the project accepts: composed here, in this
process, with the values it shows (placeholders filled in, a sweep's first value), its settings validated. A
quick check before the slow ones: the commands themselves run in test_train.py and the others of this folder."""

from __future__ import annotations

import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.cli.command_line import CONF_DIR
from src.cli.schema import register_configs
from src.cli.validation import validate_config

from .commands import ALL, INLINE, unique
from .conftest import write_data_files

PLACEHOLDERS = {
    "<partition>": "debug",
    "<user>@<host>:<port>/<database>": "user@localhost:5432/studies",
    "<url>": "sqlite:///studies.db",
    "outputs/<date>/<time>": "outputs/2026-01-31/14-02-07",
    "<the same overrides>": "",
    "<the sweep>": "outputs/multirun/2026-01-31/14-02-07",
}

DOCUMENTED = unique([c for c in ALL + INLINE if c.module == "src.run"])


def test_the_pages_have_commands():
    assert len(DOCUMENTED) >= 30, DOCUMENTED


@pytest.mark.parametrize("documented", DOCUMENTED, ids=[c.id for c in DOCUMENTED])
def test_a_documented_command_composes_and_validates(documented, monkeypatch, tmp_path):
    # Validated as on the machine the command is written for: a GPU command as where a GPU is visible.
    monkeypatch.setattr("src.cli.trainer_checks._cuda_available", lambda: True)
    command = documented.line
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    assert "<" not in command, f"{documented.page}: a placeholder this test does not know: {command}"
    write_data_files(tmp_path)  # the files the commands name, where they name them
    monkeypatch.chdir(tmp_path)
    overrides = [word for word in shlex.split(command)[3:] if word not in ("-m", "--cfg", "job", "--help")]
    overrides = [o for o in overrides if not o.startswith(("ckpt_path=", "model.pretrained="))]
    first_values = [re.sub(r"=([^,]+),.*$", r"=\1", o) if "," in o and "{" not in o else o for o in overrides]
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=first_values, return_hydra_config=True)
    assert cfg.hydra.launcher is not None and cfg.hydra.sweeper is not None  # the launcher and sweeper options exist
    validate_config(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), overrides=first_values)
