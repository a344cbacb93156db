"""Evaluate a checkpoint: `python -m src.eval ckpt=outputs/<date>/<time>/checkpoints/best.ckpt [split=val]`.

Rebuilds the run's model and data from the checkpoint alone (vocabularies are reloaded from the run directory)
and prints the metrics of every test split; synthetic tasks also report `test_long/*`, the held-out longer
lengths that measure length generalisation. Translation tasks also get the split translated with `decode.*`
(greedy, or `decode.strategy=beam decode.beam_size=4`) and scored with sacrebleu, cased and lowercased, with
sacrebleu's signature: the figure to publish.

`ablate.heads=[cross:1:3]` (`ablate.sublayers=...`, `ablate=<preset>`, `ablate.method=mean`) evaluates the checkpoint
with those heads or sublayers switched off, on top of what it was trained without (src/analysis/ablation.py); the
checkpoint file is only read. `ablated: ...` says what is off.
"""

from __future__ import annotations

import gc

collecting_before = gc.isenabled()  # restored once the imports are done
gc.disable()  # while the imports below run (see gc.freeze() after them)

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from src.cli import CONF_DIR, run_hydra_command, user_errors_as_one_line
from src.model import ConfigError
from src.schema import DecodeConfig, register_configs
from src.training.report import print_warning, quiet_lightning
from src.validation import (
    check_ablation,
    check_threads,
    given_decode_settings,
    validate_decode,
    warn_unused_decode_settings,
)

# As in src/run.py: what the imports made is frozen, so no garbage collection scans it again.
gc.freeze()
if collecting_before:
    gc.enable()

register_configs()
quiet_lightning()


# What a task kind's metrics are computed from, when it has no references for decode.* to translate.
METRICS_DECODING = {
    "seq2seq": "its exact_match comes from greedy decoding",
    "lm": "its metrics (loss, ppl, token_acc) need no decoding",
    "classification": "its metrics (loss, acc) need no decoding",
}


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
            f"{METRICS_DECODING.get(kind, 'its metrics do not use it')}: leave decode.* out"
        )


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """The metrics of the checkpoint `cfg.ckpt` on `cfg.split`, with `cfg.ablate` switched off on top of what it was
    trained without (one line `ablated: ...` says what is off, when anything is)."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from src.analysis.ablation import ablate_trained_model, ablated_line
    from src.training.bleu import has_references, score_split
    from src.training.checkpoint import checkpoint_model_config, load_run, read_any_checkpoint

    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError(
            "ckpt is required: give it, e.g. python -m src.eval ckpt=outputs/<date>/<time>/checkpoints/best.ckpt"
        )
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} must be >= 1 (or leave it out: the run's batch size)")
    if cfg.split not in ("test", "val"):
        raise ConfigError(f"split={cfg.split!r} is not known: choose test or val")
    validate_decode(cfg.decode)
    if cfg.decode.strategy == "sample":
        raise ConfigError("decode.strategy=sample gives a different BLEU every run: choose greedy or beam")
    check_threads(cfg.torch_threads)
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    # A bad file is the one line printed, before Lightning talks; ckpt=hf:<model> is a pretrained model (on task=...)
    checkpoint = read_any_checkpoint(cfg.ckpt, cfg.get("task"), "ckpt")
    if (checkpoint["hyper_parameters"].get("pretrained") or {}).get("reading_only"):
        from src.pretrained.fit import EXAMPLE_TASK

        example = EXAMPLE_TASK[checkpoint["hyper_parameters"]["kind"]]
        raise ConfigError(f"ckpt={cfg.ckpt} is evaluated on a task's data: give one, e.g. {example}")
    check_ablation(cfg.ablate, checkpoint_model_config(checkpoint))  # a bad spec: before the data are loaded
    try:  # Lightning checks the accelerator: before the data are loaded
        trainer = L.Trainer(
            accelerator=cfg.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        raise ConfigError(f"accelerator={cfg.accelerator}: {str(error).strip().splitlines()[0]}") from None
    module, datamodule = load_run(cfg.ckpt, cfg.batch_size, checkpoint=checkpoint)
    check_decoding(cfg.decode, datamodule.kind, has_references(datamodule, cfg.split))
    ablation = ablate_trained_model(module, datamodule, cfg.ablate)
    if not ablation.empty:
        print(ablated_line(module, ablation))
    run = trainer.test if cfg.split == "test" else trainer.validate
    results = run(module, datamodule=datamodule, verbose=False)
    metrics: dict[str, float] = {}
    for per_loader in results:
        metrics.update({k: float(v) for k, v in per_loader.items()})
    if has_references(datamodule, cfg.split):
        bleu = score_split(module, datamodule, cfg.split, cfg.decode, batch_size=datamodule.batch_size)
        metrics.update(bleu.metrics())
        print(bleu.summary())
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors_as_one_line():
        metrics = evaluate(cfg)
    from src.training.report import print_metrics

    print(f"checkpoint: {cfg.ckpt}")
    print_metrics(metrics)


def cli() -> None:
    """The console script's entry point (pyproject.toml) and `python -m src.eval`'s."""
    run_hydra_command(main)


if __name__ == "__main__":
    cli()
