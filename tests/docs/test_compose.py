"""Every `python -m src.run` command in docs/ is one the project accepts: composed here with the values it
shows (placeholders filled in, a sweep's first value), its settings validated. The commands themselves run, at a
test's size, in the end-to-end tests (multi-process runs: tests/e2e/test_launch_paths.py, tests/e2e/test_slurm.py,
tests/e2e/test_shared_study.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.cli import CONF_DIR
from src.schema import register_configs
from src.validation import validate_config

DOCS = Path(__file__).resolve().parents[1] / "docs"
PLACEHOLDERS = {
    "<partition>": "debug",
    "<user>@<host>:<port>/<database>": "user@localhost:5432/studies",
    "<url>": "sqlite:///studies.db",
}


def commands(path: Path) -> list[str]:
    """The `python -m src.run ...` lines of the file's bash blocks (continuation lines joined, comments dropped)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("python -m src.run"):
                found.append(line)
    return found


DOCUMENTED = [(path.name, command) for path in sorted(DOCS.glob("*.md")) for command in commands(path)]


def test_the_docs_have_commands():
    assert len(DOCUMENTED) >= 5, DOCUMENTED


@pytest.mark.parametrize(("doc", "command"), DOCUMENTED, ids=[command for _, command in DOCUMENTED])
def test_a_documented_command_composes_and_validates(doc, command, monkeypatch):
    # Validated as on the machine the command is written for: a GPU command as where a GPU is visible.
    monkeypatch.setattr("src.validation._cuda_available", lambda: True)
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    assert "<" not in command, f"{doc}: a placeholder this test does not know: {command}"
    overrides = [word for word in shlex.split(command)[3:] if word != "-m"]
    first_values = [re.sub(r"=([^,]+),.*$", r"=\1", o) if "," in o and "{" not in o else o for o in overrides]
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=first_values, return_hydra_config=True)
    assert cfg.hydra.launcher is not None and cfg.hydra.sweeper is not None  # the launcher and sweeper options exist
    validate_config(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), overrides=first_values)
