"""What a run prints: the composed config as a tree with the model's size at the start, where everything went at
the end. Printed with rich (the progress bar is rich too); everything printed here is also kept in the run's
run.log (without colours), so a run on a cluster or behind a pipe keeps its own account.

Much of it is the user's own text: paths, config values, notes, the commands to paste next. The console reads none
of it as rich markup (`[d]` in a directory name would vanish, `[/]` in a note would end the run with a traceback)
or as an emoji code (`:cat:`), and the config tree is never cut at the terminal's width: every string is printed
exactly as given. Styles are attached as rich `Text` styles instead of markup."""

from __future__ import annotations

import io
import logging
import os
import re
import shlex
import sys
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence, TextIO

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.segment import Segments
from rich.text import Text
from rich.tree import Tree

from src.model import TransformerConfig, count_parameters, flops_per_token
from src.model.ablation import layout_of, parse_ablation
from src.provenance import module_command, shell_override

# Long paths and commands stay on one line, copy-pastable; text is printed as it is (no markup, no emoji codes).
console = Console(soft_wrap=True, markup=False, emoji=False)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _Tee(io.TextIOBase):
    """Writes to the terminal as it is, and a copy without colour codes to each log file."""

    def __init__(self, terminal: TextIO, *logs: TextIO):
        self.terminal, self.logs = terminal, logs

    def write(self, text: str) -> int:
        self.terminal.write(text)
        for log in self.logs:
            log.write(_ANSI.sub("", text))
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()
        for log in self.logs:
            log.flush()

    def isatty(self) -> bool:  # rich decides colours and live display from the terminal, not the log
        return self.terminal.isatty()

    def fileno(self) -> int:
        return self.terminal.fileno()


@contextmanager
def logged_to(*paths: Path) -> Iterator[None]:
    """Copy what the run prints (its console and its error lines) into each of `paths` while the block runs (a
    stacked group of seeds prints once for all its members, and each member's run.log has it)."""
    with ExitStack() as stack:
        logs = [stack.enter_context(open(path, "a", encoding="utf-8")) for path in paths]
        console.file = _Tee(sys.stdout, *logs)
        _error_logs.extend(logs)
        try:
            yield
        finally:
            for log in logs:
                _error_logs.remove(log)
            console.file = None  # type: ignore[assignment]  # back to whatever sys.stdout is then


_error_logs: list[TextIO] = []


_quiet_rank: list[bool] = [False]  # set in an extra rank of a multi-process run (quiet_extra_rank)


def quiet_extra_rank() -> None:
    """An extra rank of a multi-process run prints nothing of its own: the first rank speaks for the run (its
    config tree, warnings and progress would each be printed once per rank otherwise). Its errors still reach
    the first rank, through its error file (src/training/processes.py)."""
    console.file = open(os.devnull, "w")  # for the rest of the process
    _quiet_rank[0] = True


def _say(line: str) -> None:
    if _quiet_rank[0] and not line.startswith("error:"):
        return
    print(line, file=sys.stderr)
    for log in _error_logs:
        log.write(line + "\n")
        log.flush()


def print_error(message: str) -> None:
    """`error: ...` on stderr, one line, and into the run's log."""
    _say(f"error: {message}")


def print_line(text: str) -> None:
    """One line on the run's console (and so in run.log), printed as it is: no markup, no highlighting."""
    console.print(text, markup=False, highlight=False)


def print_warning(message: str) -> None:
    """`warning: ...` on stderr, one line, and into the run's log: legal input that does something surprising."""
    _say(f"warning: {message}")


def print_note(message: str) -> None:
    """One line on stderr (and into the run's log) about how an argument was read, e.g. which checkpoint a run
    directory stands for: beside the output, not in it (src.predict's stdout is its predictions)."""
    _say(message)


class _DropLightningTips(logging.Filter):
    """Lightning 2.6 prints an advertisement ("Tip: ... litlogger") for every Trainer, a note each time a
    checkpoint is saved by hand (`trainer.save_checkpoint`: "`weights_only` was not set", i.e. the whole state is
    saved, which is what an interrupted run needs), and "Detected KeyboardInterrupt, attempting graceful shutdown"
    when Ctrl-C stops its loop, which the commands say in their own one line (src/run.py, src/cli/interrupts.py)."""

    DROPPED = ("Tip:", "`weights_only` was not set", "Detected KeyboardInterrupt")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(dropped in message for dropped in self.DROPPED)


def show_model_warnings_as_lines() -> None:
    """The model package's warnings (ModelWarning: mask=none's leak) as the commands say every warning: one
    `warning: ...` line, without Python's file:line and source line. Other warnings are shown as Python shows them."""
    from src.model import ModelWarning

    shown = warnings.showwarning
    if getattr(shown, "model_warnings_as_lines", False):
        return

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, ModelWarning):
            print_warning(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    show.model_warnings_as_lines = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def quiet_lightning() -> None:
    """Keep the output about the run: drop Lightning's tip line, and warnings no user can act on; say the model's
    own warnings as `warning:` lines."""
    show_model_warnings_as_lines()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropLightningTips())
    logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").addFilter(_DropLightningTips())
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # Printed on every run of a machine that has SLURM's client installed, even when the run is no SLURM job: a
    # run inside a SLURM job is told by its environment, not by the command being on the PATH.
    warnings.filterwarnings("ignore", message=".*The `srun` command is available on your system but is not used.*")
    # Under DDP Lightning suggests sync_dist=True for epoch-level logs; ours are torchmetrics values that are
    # already reduced across ranks (src/training/metrics.py), so reducing again would only cost time.
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    # The module reads each batch's padding before the transfer (module.py: it knows the model's pad id); Lightning
    # warns whenever a module with that hook is given a datamodule, which is every run here.
    warnings.filterwarnings("ignore", message=".*overridden `on_before_batch_transfer` in `LightningModule`.*")
    # Lightning warns when an epoch has fewer batches than log_every_n_steps, but it counts logging steps across
    # epochs (the loop's batches that stepped): a run of small data is logged every N steps all the same.
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")


def quiet_resume_in_place(checkpoints: Path) -> None:
    """A run resumed in its own directory finds its checkpoints/ holding what it saved before, as it should:
    Lightning's "Checkpoint directory <it> exists and is not empty." would read as a mistake there, so it is not
    said of that directory. Said still of any other (a new run's directory that holds checkpoints)."""
    directory = re.escape(os.path.realpath(checkpoints))  # Lightning names the directory by its real path
    warnings.filterwarnings("ignore", message=rf"Checkpoint directory {directory} exists and is not empty\.")


def config_tree(cfg: DictConfig, title: str = "config") -> Tree:
    """The config as a rich tree: one branch per group (model, task, ...), leaves `field: value`. Keys and values
    are `Text`, so they show as they are whatever console prints the tree."""
    tree = Tree(Text(title, style="bold"))

    def add(branch: Tree, node) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                add(branch.add(Text(str(key), style="bold cyan")), value)
            elif isinstance(value, str):
                branch.add(Text.assemble(f"{key}: ", (repr(value), "green")))
            else:
                branch.add(Text(f"{key}: {value}"))

    add(tree, OmegaConf.to_container(cfg, resolve=True))
    return tree


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def print_run_start(
    cfg: DictConfig,
    model_cfg: TransformerConfig,
    module,
    datamodule,
    run_dir: Path,
    members: Sequence[Path] | None = None,
) -> None:
    """The run's config as a tree, the model's size, and where the run writes. `members`: the job directories of a
    stacked group of seeds (src/training/stacked.py), whose one config this is but for the seed."""
    tree = config_tree(cfg)
    params = count_parameters(module.model)
    flops = flops_per_token(model_cfg, max(1, datamodule.max_src_len), max(1, datamodule.max_tgt_len))
    size = tree.add(Text("model size", style="bold magenta"))
    size.add(Text(f"arch: {model_cfg.arch}"))
    size.add(Text(f"parameters: {params:,} ({human(params)})"))
    size.add(Text(f"forward FLOPs per output token: {human(flops)} (at the task's longest sequences; training ~3x)"))
    size.add(
        Text(
            f"vocabulary: src {model_cfg.src_vocab_size}, tgt {model_cfg.tgt_vocab_size}, "
            f"classes {model_cfg.num_classes}"
        )
    )
    ablation = parse_ablation(cfg.get("ablate"), model_cfg)  # applied by the module: trained without these
    if not ablation.empty:
        size.add(Text(f"ablated: {ablation.describe(layout_of(model_cfg))}"))
    print_uncut(tree)
    if members:
        console.print(Text.assemble("run directories (one per seed): ", (", ".join(map(str, members)), "bold")))
        return
    console.print(Text.assemble("run directory: ", (str(run_dir), "bold")))


def print_uncut(tree: Tree) -> None:
    """The tree with every line whole. A rich Tree cuts its lines at the console's width (80 columns when the
    output is not a terminal), which would cut a long path in the config; rendered as wide as its longest line
    instead, and printed as it is (soft wrap: a terminal folds what does not fit)."""
    wide = console.options.update(width=1_000_000)
    console.print(Segments(console.render(tree, wide)))


def print_metrics(
    metrics: dict[str, float],
    highlight: str | None = None,
    notes: Mapping[str, str] | None = None,
    kind: str | None = None,
    examples: Mapping[str, int] | None = None,
) -> None:
    """One line per metric: `tag: value  (what it is)`, so that no number stands without its split, its decoding
    and the count it is over (src/training/metrics.py describe_metric; `notes` overrides a tag's description, e.g.
    sacreBLEU's decoding and signature from bleu.py). `kind`: the task kind; `examples`: split -> its size."""
    from src.training.metrics import describe_metric  # torchmetrics: imported when metrics are printed

    width = max((len(name) for name in metrics), default=0)
    for name, value in sorted(metrics.items()):
        marker = "  <- main metric" if name == highlight else ""
        about = (notes or {}).get(name) or describe_metric(name, kind, examples)
        console.print(f"{name:>{width}}: {value:.4f}{marker}" + (f"  ({about})" if about else ""))


def print_run_end(
    run_dir: Path,
    metrics: dict[str, float],
    monitor: str,
    with_logger: bool,
    multirun: bool,
    speed: dict | None = None,
    notes: Mapping[str, str] | None = None,
    kind: str | None = None,
    examples: Mapping[str, int] | None = None,
) -> None:
    """What a run prints when it ends: its metrics (print_metrics), speed, where its files are, and the commands to
    go on with, each in the one form every command takes: the run directory (`ckpt=<run>`, its best checkpoint)."""
    console.rule(Text("done", style="bold"))
    print_metrics(metrics, monitor, notes, kind, examples)
    if speed and "tokens_per_s" in speed:
        console.print(
            f"speed:         {speed['tokens_per_s']:,.0f} target tokens/s, {speed['steps_per_s']:.1f} steps/s "
            f"(validation excluded); first step {speed['launch_to_first_step_s']:.1f} s after launch"
            + (f"; dashboards {speed['dashboard_share']:.1%} of it" if "dashboard_share" in speed else "")
            + (f"; the {speed['stacked_members']} seeds trained together" if "stacked_members" in speed else "")
        )
    console.print(f"run directory: {run_dir}")
    checkpoints = run_dir / "checkpoints"
    saved = sorted(p.name for p in checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
    if saved:
        console.print(f"checkpoints:   {checkpoints}  ({', '.join(saved)})")
    # commands that work as printed, also from a fresh clone's unactivated .venv (module_command)
    if with_logger:
        console.print(f"TensorBoard:   {module_command('tensorboard.main', tensorboard_source(run_dir, multirun))}")
    if saved:  # ckpt=<run> reads its best checkpoint (src/training/checkpoint.py read_any_checkpoint)
        ckpt = shell_override("ckpt", run_dir)
        console.print(f"evaluate:      {module_command('src.eval', ckpt)}")
        console.print(f"analyse heads: {module_command('src.analyze', ckpt)}")


def tensorboard_source(run_dir: Path, multirun: bool) -> str:
    """The TensorBoard arguments that show this run, written so that they work for any directory name.

    A sweep's runs sit side by side under the sweep directory, named by their job directories: point TensorBoard
    there to compare them. A single run gets a name (its directory's parent and name; as --logdir it would be
    listed as "."), through --logdir_spec `name:path`, which TensorBoard splits at the first `:` and at every `,`:
    the name is written without them (a sweep job's directory `3_model.heads:8` holds one), and a path holding a
    `,` falls back to --logdir. More images per tag than TensorBoard's default 10, so the slider walks the whole
    training."""
    if multirun:
        source = f"--logdir {shlex.quote(str(run_dir.parent))}"
    elif "," in str(run_dir):
        source = f"--logdir {shlex.quote(str(run_dir))}"
    else:
        name = re.sub(r"[:,]", "_", f"{run_dir.parent.name}/{run_dir.name}")
        source = f"--logdir_spec {shlex.quote(f'{name}:{run_dir}')}"
    return f"{source} --samples_per_plugin images=100"
