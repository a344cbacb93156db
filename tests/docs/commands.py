"""The commands of the README and docs/, as the tests run them.

Every line of a ```bash block in README.md and docs/*.md is a command a reader may paste. The tests in this folder
run each one for real, at a test's size:

- `python -m src.<command> ...`: the project's commands, in a scratch directory that holds the files the command
  names (`sst2.tsv`, `input.txt`, `sentences.de`), with the placeholders (`outputs/<date>/<time>`, `ckpt=...`,
  `<sweep dir>`) filled in by runs the tests trained first, and `hf:<model>` names found in a model-hub cache of
  tiny random-weight models built by `transformers` itself. Training is cut short: the settings that size a run
  (steps, width, data sizes) are set small unless the command sets them, and a command's own step count is cut
  to the test's (what the command means is unchanged: the same task, model family, mask, sweep).
- A command that needs a GPU is composed and validated as on a GPU machine (test_compose.py); one that needs a
  cluster or a database server runs in the test its block names in a comment just above it,
  `<!-- run by tests/e2e/test_slurm.py -->`, and that test must hold the command's settings.
- `make <target>` runs as `make -n` (what it would run); `tensorboard ...` starts TensorBoard on a run and asks
  its HTTP API for the run's tags.
- A block without a language whose first line starts with `$ ` shows a command and what it prints: the command
  runs and must print that.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

RUN_BY = re.compile(r"<!--\s*run by (tests/[\w/]+\.py)\s*-->\s*\n```bash\n")


@dataclass(frozen=True)
class Command:
    page: str  # README.md or docs/<name>.md
    line: str  # as written, continuation lines joined, the trailing comment dropped
    run_by: str | None = None  # the test file named above its block (a cluster, a database server)

    @property
    def words(self) -> list[str]:
        return shlex.split(self.line)

    @property
    def module(self) -> str | None:
        """'src.run' for `python -m src.run ...` (or transformer-run, .venv/bin/python -m src.run)."""
        words = self.words
        if len(words) >= 3 and words[0].endswith("python") and words[1] == "-m":
            return words[2]
        if words and words[0].startswith("transformer-"):
            return "src." + words[0].removeprefix("transformer-")
        return None

    @property
    def args(self) -> list[str]:
        words = self.words
        return words[3:] if words[0].endswith("python") else words[1:]

    @property
    def id(self) -> str:
        return f"{self.page}: {self.line}"


def _page_name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def commands(path: Path) -> list[Command]:
    """The commands of the page's ```bash blocks."""
    text = path.read_text()
    found = []
    for match in re.finditer(r"```bash\n(.*?)```", text, flags=re.S):
        before = text[: match.start() + len("```bash\n")]
        marker = RUN_BY.search(before[-200:])
        run_by = marker.group(1) if marker and before.endswith(marker.group(0)) else None
        joined = re.sub(r"\\\n\s*", " ", match.group(1))
        for line in joined.splitlines():
            line = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
            if line and not line.startswith("#"):
                found.append(Command(_page_name(path), line, run_by))
    return found


def shown_outputs(path: Path) -> list[tuple[Command, list[str]]]:
    """Blocks that show a command (`$ ...`) and what it prints."""
    shown = []
    for block in re.findall(r"```\n(\$ .*?)```", path.read_text(), flags=re.S):
        first, *printed = block.rstrip("\n").splitlines()
        shown.append((Command(_page_name(path), first.removeprefix("$ ").strip()), printed))
    return shown


def inline_commands(path: Path) -> list[Command]:
    """`python -m src.run ...` written inside a sentence (composed and validated: test_compose.py). The extending
    page's examples name a scheme the page adds: tests/test_extending.py registers and runs those."""
    if path.name == "extending.md":
        return []
    spans = re.findall(r"`(python -m src\.run[^`]*)`", path.read_text())
    return [Command(_page_name(path), span.strip()) for span in spans]


ALL = [command for page in PAGES for command in commands(page)]
INLINE = [command for page in PAGES for command in inline_commands(page)]
SHOWN = [pair for page in PAGES for pair in shown_outputs(page)]


def needs_a_gpu(command: Command) -> bool:
    return any(re.fullmatch(r"trainer=gpu|hydra/launcher=slurm_gpu", word) for word in command.args)


def of_kind(kind: str) -> list[Command]:
    """The commands one test file runs: 'train' (src.run), 'inspect' (eval, predict, analyze, report on our
    runs), 'pretrained' (hf: models and model.pretrained), 'tools' (make, tensorboard), 'elsewhere' (a named
    test), 'gpu'."""
    return [command for command in ALL if kind_of(command) == kind]


def kind_of(command: Command) -> str:
    if command.module is None:
        return "tools"
    if needs_a_gpu(command):
        return "gpu"
    if command.run_by:
        return "elsewhere"
    if any(mark in command.line for mark in ("hf:", "model.pretrained=", "<the fine-tuned run>")):
        return "pretrained"
    if command.module == "src.run":
        return "train"
    return "inspect"


def unique(commands_: list[Command]) -> list[Command]:
    """One of each command line (the README repeats a few of the docs' commands)."""
    seen: dict[str, Command] = {}
    for command in commands_:
        seen.setdefault(command.line, command)
    return list(seen.values())
