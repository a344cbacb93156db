"""Evaluate a trained model: `python -m src.eval ckpt=outputs/<date>/<time> [split=val]`.

`ckpt=` takes what every command takes (src/training/checkpoint.py read_any_checkpoint): a run directory (its best
checkpoint, said in one line: `using <run>/checkpoints/best.ckpt (the best val/loss, ...)`), a .ckpt file, or
`hf:<model>` with `task=...`. Rebuilds the run's model and data from the checkpoint alone (vocabularies are
reloaded from the run directory) and prints the metrics of every test split, each with what it is; synthetic tasks
also report `test_long/*`, the held-out longer lengths that measure length generalisation. Translation tasks get the
split translated with `decode.*` (greedy, or `decode.strategy=beam decode.beam_size=4`) and scored with sacreBLEU
against the raw references, cased and lowercased, with sacreBLEU's signature: the figure to publish, and the only
BLEU printed (training's quick `val/bleu` is not computed here: one metric, one name).

`ablate.heads=[cross:1:3]` (`ablate.sublayers=...`, `ablate=<preset>`, `ablate.method=mean`) evaluates the checkpoint
with those heads or sublayers switched off, on top of what it was trained without (src/analysis/ablation.py); the
checkpoint file is only read. `ablated: ...` says what is off.

src.eval writes no file. Ctrl-C is one line and exit status 130 (src/cli/interrupts.py), Lightning's test loop
included, with the command that runs it again.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: Ctrl-C during the imports below is one line (src/cli/startup.py)
    from src.cli.startup import quiet_until_started

    quiet_until_started()

import gc
import sys
from dataclasses import dataclass, field

collecting_before = gc.isenabled()  # restored once the imports are done
gc.disable()  # while the imports below run (see gc.freeze() after them)

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from src.cli.command_line import CONF_DIR, run_hydra_command, user_errors_as_one_line
from src.cli.interrupts import ctrl_c_as_one_line, said_until_the_process_ends
from src.cli.schema import DecodeConfig, register_configs
from src.cli.validation import (
    check_ablation,
    check_finite_settings,
    check_threads,
    device_for,
    given_decode_settings,
    validate_decode,
    warn_unused_decode_settings,
)
from src.data.registry import task_kind
from src.model import ConfigError
from src.provenance import command_line, module_command
from src.training.metrics import metric_tags
from src.training.report import print_warning, quiet_lightning

# As in src/run.py: what the imports made is frozen, so no garbage collection scans it again.
gc.freeze()
if collecting_before:
    gc.enable()

register_configs()
quiet_lightning()


def metrics_decoding(kind: str) -> str:
    """What a task kind's metrics are computed from, when it has no references for decode.* to translate: greedy
    decoding (always greedy, whatever decode.* says) or none at all."""
    if task_kind(kind).decodes:
        return "its exact_match comes from greedy decoding"
    names = [tag.split("/", 1)[1] for tag in metric_tags(kind, with_bleu=False)]  # the kind's own: val/loss, ...
    return f"its metrics ({', '.join(names)}) need no decoding"


def check_decoding(decode, kind: str, scores_bleu: bool) -> None:
    """decode.* translates a translation task's split for sacreBLEU, and nothing else: one warning for settings it
    would not change, i.e. every changed setting where there are no references to score, else those the chosen
    strategy does not read."""

    if scores_bleu:
        warn_unused_decode_settings(decode, offered=("greedy", "beam"), command="src.eval")
        return
    given = given_decode_settings(decode, list(DecodeConfig.__dataclass_fields__))
    if given:
        print_warning(
            f"{', '.join(given)} {'are' if len(given) > 1 else 'is'} not used: decode.* applies only to the "
            "sacreBLEU score of translation tasks, and this task has no references to score; "
            f"{metrics_decoding(kind)}: leave decode.* out"
        )


@dataclass
class Evaluation:
    """What src.eval measured: the checkpoint file it read, the metrics, and what it needs to say what each is."""

    checkpoint: str  # the file (a run directory given as ckpt= stands for one); hf:<model> as given
    metrics: dict[str, float]
    kind: str  # the task kind (a loss is per token or per example)
    examples: dict[str, int]  # split -> its size
    notes: dict[str, str] = field(default_factory=dict)  # tag -> what it is, beyond describe_metric (sacreBLEU's)


def evaluate(cfg: DictConfig) -> Evaluation:
    """The metrics of the checkpoint `cfg.ckpt` on `cfg.split`, with `cfg.ablate` switched off on top of what it was
    trained without (one line `ablated: ...` says what is off, when anything is)."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from src.analysis.ablation import ablate_trained_model, ablated_line
    from src.training.bleu import has_references, score_split
    from src.training.checkpoint import READ_FROM, checkpoint_model_config, load_run, read_any_checkpoint
    from src.training.metrics import split_sizes

    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError(
            "ckpt is required: give a run directory (its best checkpoint), a .ckpt file or hf:<model>, e.g. "
            f"{module_command('src.eval', 'ckpt=outputs/<date>/<time>')}"
        )
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} must be >= 1 (or leave it out: the run's batch size)")
    if cfg.split not in ("test", "val"):
        raise ConfigError(f"split={cfg.split!r} is not known: choose test or val")
    check_finite_settings(cfg)
    validate_decode(cfg.decode)
    if cfg.decode.strategy == "sample":
        raise ConfigError("decode.strategy=sample gives a different BLEU every run: choose greedy or beam")
    check_threads(cfg.torch_threads)
    device = device_for(cfg.accelerator)  # as src.analyze checks it: one line with the fix, before any work
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    # A bad file is the one line printed, before Lightning talks; ckpt=hf:<model> is a pretrained model (on task=...)
    checkpoint = read_any_checkpoint(cfg.ckpt, cfg.get("task"), "ckpt")
    if (checkpoint["hyper_parameters"].get("pretrained") or {}).get("reading_only"):
        example = task_kind(checkpoint["hyper_parameters"]["kind"]).example_task
        raise ConfigError(f"ckpt={cfg.ckpt} is evaluated on a task's data: give one, e.g. {example}")
    check_ablation(cfg.ablate, checkpoint_model_config(checkpoint))  # a bad spec: before the data are loaded
    try:  # made before the data are loaded; Lightning takes the device's own name (cuda for gpu and auto there)
        trainer = L.Trainer(
            accelerator=device.type,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        raise ConfigError(f"accelerator={cfg.accelerator}: {str(error).strip().splitlines()[0]}") from None
    module, datamodule = load_run(cfg.ckpt, cfg.batch_size, checkpoint=checkpoint)
    scores_bleu = has_references(datamodule, cfg.split)
    check_decoding(cfg.decode, datamodule.kind, scores_bleu)
    ablation = ablate_trained_model(module, datamodule, cfg.ablate)
    if not ablation.empty:
        print(ablated_line(module, ablation))
    if scores_bleu:  # the split's BLEU is sacreBLEU below; training's quick val/bleu would be a second one
        module.drop_quick_bleu()
    run = trainer.test if cfg.split == "test" else trainer.validate
    results = run(module, datamodule=datamodule, verbose=False)
    metrics: dict[str, float] = {}
    for per_loader in results:
        metrics.update({k: float(v) for k, v in per_loader.items()})
    notes: dict[str, str] = {}
    if scores_bleu:
        bleu = score_split(module, datamodule, cfg.split, cfg.decode, batch_size=datamodule.batch_size)
        metrics.update(bleu.metrics())
        notes.update(bleu.notes())
    examples = split_sizes(datamodule)
    return Evaluation(checkpoint.get(READ_FROM, str(cfg.ckpt)), metrics, datamodule.kind, examples, notes)


# How far the command got, for the one line Ctrl-C gets (interrupted_line): set by main.
_PROGRESS: dict[str, str] = {}


def interrupted_line(typed: list[str] | None = None) -> str:
    """What Ctrl-C says after `interrupted by SIGINT`. src.eval writes no file: the line says how far the printed
    metrics got, and how to run it again where they are not complete."""
    again = f"run the same command again: {command_line('src.eval', typed)}"
    stage = _PROGRESS.get("stage")
    if stage == "printed":  # only the exit was left
        return " as the command ended: the metrics above are complete (src.eval writes no file)"
    if stage == "printing":
        return f" while the metrics were printed: those above may not be all of them (src.eval writes no file); {again}"
    return f": no metric was printed and nothing was written (src.eval writes no file); {again}"


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors_as_one_line():
        evaluation = evaluate(cfg)
    from src.training.report import print_metrics

    _PROGRESS["stage"] = "printing"
    print(f"checkpoint: {evaluation.checkpoint}")
    print_metrics(evaluation.metrics, notes=evaluation.notes, kind=evaluation.kind, examples=evaluation.examples)
    sys.stdout.flush()  # all of them out before the line would say they are
    _PROGRESS["stage"] = "printed"
    said_until_the_process_ends(interrupted_line())


def cli() -> None:
    """The console script's entry point (pyproject.toml) and `python -m src.eval`'s. Ctrl-C is one line and exit
    status 130 (src/cli/interrupts.py), Lightning's loop included."""
    _PROGRESS.clear()
    typed = sys.argv[1:]  # as typed: run_hydra_command rewrites free text for Hydra (src/cli/free_text.py)
    with ctrl_c_as_one_line(lambda: interrupted_line(typed)):
        run_hydra_command(main)


if __name__ == "__main__":
    cli()
