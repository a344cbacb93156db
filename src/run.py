"""Train one experiment: `python -m src.run [overrides]`, or a sweep: `python -m src.run -m model.heads=1,2,4,8`.

What happens, in order (nothing heavy is built before the config is known to be sound):
  1. Hydra composes conf/config.yaml with the command-line overrides and checks types and keys (schema in
     src/cli/schema.py).
  2. Before Hydra writes anything (src/cli/preflight.py): `validate_config` (src/cli/validation.py) checks the
     values that must agree, `check_data` reads the data files' first part (and a pretrained model's tokenizer), and a
     checkpoint to resume from is read; a sweep has each of its jobs checked so. A refusal is one `error: ...`
     line, exit status 2, and no directory. Then Hydra creates the run directory and saves the config in .hydra/.
  3. The datamodule is built (vocabularies are learned and saved in the run directory), then the model.
  4. Lightning trains; TensorBoard events, checkpoints and the config all land in the run directory.
  5. run.json (src/provenance.py) says how the run was made and how it ended; run.log keeps what it printed.
  6. With analyze_after_fit=true, the completed run's best checkpoint is analysed as src.analyze would
     (`analyze_after_fit`); run.json's `analysis` says how that went, without changing the run's status.

Exit status: 0 completed, 1 diverged or crashed, or its analysis failed (or a sweep with such jobs), 2 bad input
(one `error:` line), 130 / 143 interrupted by Ctrl-C / SIGTERM (the last finished step is saved; the resume command
is printed; during the analysis, the trained run is kept and the command that analyses it is printed).

Run as `python -m src.run`, this module is `__main__`, and a launcher that ships the job to another process
(submitit) pickles its functions by value, with the module-level objects they use: keep those plain (a rich
Console holds a lock and cannot be pickled; call functions of other modules instead).
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: Ctrl-C during the imports below is one line (src/cli/startup.py)
    from src.cli.startup import quiet_until_started

    quiet_until_started()

import contextlib
import gc

collecting_before = gc.isenabled()  # restored once the imports are done
gc.disable()  # while the imports below run (see gc.freeze() after them)

import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from src.analyze import ANALYSIS_DIR, Target, analyze_checkpoint, device_for
from src.cli.command_line import CONF_DIR, EXIT_USER_ERROR, USER_ERRORS, run_hydra_command
from src.cli.schema import model_config_for, register_configs, to_plain, varied_keys
from src.cli.startup import ctrl_c_ignored_to_the_end
from src.cli.validation import (
    check_ablation,
    validate_config,
    warn_if_every_head_ablated,
    warn_if_warmup_outlasts_training,
    warn_unread_settings,
)
from src.data import absolute_task_paths
from src.data.registry import task_kind
from src.model import ConfigError
from src.provenance import (
    RunRecord,
    command_line,
    config_arguments,
    hydra_value,
    module_command,
    read_record,
    resume_in_place,
    shell_override,
    slurm_job,
    slurm_restarts,
)
from src.training.callbacks import TrainingDiverged, TrainingInterrupted
from src.training.checkpoint import best_checkpoint_of, newest_checkpoint
from src.training.processes import RANK_ERROR, RankFailed, announce, process_rank, requeued, withdraw
from src.training.report import (
    logged_to,
    print_error,
    print_line,
    print_run_end,
    print_warning,
    quiet_extra_rank,
    quiet_lightning,
    quiet_resume_in_place,
)

# Importing torch, Lightning and Hydra leaves several hundred thousand objects that live as long as the process.
# With the collector on, Python scanned them over and over while they were being made (full collections: 0.9 s
# of a 4 s launch to the first training step); frozen, no later collection scans them. (The reference cycles
# the imports leave behind are kept: about 8 MB.)
gc.freeze()
if collecting_before:
    gc.enable()

register_configs()
quiet_lightning()


def build_callbacks(cfg: DictConfig, run_dir: Path, module, with_logger: bool, recorder) -> list:
    import lightning.pytorch.callbacks as cb

    from src.training.callbacks import (
        FiniteModelCheckpoint,
        ProgressLines,
        RestoreRandomState,
        SaveOnInterrupt,
        StepProgressBar,
        StopOnDivergence,
        ValidateAtLastStep,
    )
    from src.training.stock_callbacks import build_stock_callbacks

    ckpt_dir = run_dir / "checkpoints"
    callbacks: list = [
        ValidateAtLastStep(),
        RestoreRandomState(),
        StopOnDivergence(cfg.max_loss),
        SaveOnInterrupt(ckpt_dir / "last.ckpt", last_saved_after_validation=cfg.checkpoint.save_last),
        recorder,  # metrics.json
    ]
    # After every validation (and so after the last step, see ValidateAtLastStep):
    if cfg.checkpoint.save_best:  # checkpoints/best.ckpt, by the task's main metric
        callbacks.append(
            FiniteModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best",
                monitor=module.monitor,
                mode=module.monitor_mode,
                save_top_k=1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    if cfg.checkpoint.save_last:
        # checkpoints/last.ckpt: the latest state. Its own callback without a monitor, because Lightning's
        # save_last=True refreshes last.ckpt only when the monitored metric improved.
        callbacks.append(
            FiniteModelCheckpoint(
                dirpath=ckpt_dir,
                filename="last",
                monitor=None,
                save_top_k=1,
                enable_version_counter=False,
            )
        )
    if cfg.checkpoint.every_n_train_steps > 0:
        callbacks.append(
            FiniteModelCheckpoint(
                dirpath=ckpt_dir,
                filename="step-{step}",
                every_n_train_steps=cfg.checkpoint.every_n_train_steps,
                save_top_k=-1,  # keep them all: resume from any of them
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    if cfg.trainer.enable_progress_bar:  # a bar on a terminal; lines in a log file, a cluster job, a pipe
        callbacks.append(StepProgressBar() if sys.stdout.isatty() else ProgressLines(cfg.progress_every_n_steps))
    callbacks += build_stock_callbacks(cfg.callbacks, module.monitor, module.monitor_mode)  # +callbacks.<Name>...
    if with_logger:
        from src.training.tensorboard_logger import StepsAsTheRunCounts

        callbacks.append(StepsAsTheRunCounts())  # TensorBoard's steps as the console's and metrics.json's
        callbacks.append(cb.LearningRateMonitor(logging_interval="step"))
        callbacks += dashboard_callbacks(cfg, module.metric_tags)
    return callbacks


def dashboard_callbacks(cfg: DictConfig, metric_tags: list[str]) -> list:
    """TensorBoard content beyond scalars (src/dashboard): attention maps, head statistics, text, hparams."""
    from src import dashboard
    from src.training.metrics import test_tags

    d = cfg.dashboard
    callbacks = []
    if d.attention_maps:
        callbacks.append(
            dashboard.AttentionMapLogger(every_n_steps=d.attention_every_n_steps, num_examples=d.attention_examples)
        )
    if d.attention_stats:
        callbacks.append(
            dashboard.AttentionStatsLogger(every_n_steps=d.attention_every_n_steps, probe_size=d.probe_size)
        )
    if d.text_samples:
        callbacks.append(dashboard.TextSampleLogger(num_examples=d.text_examples))
    if d.hparams:
        varied, choices = [], {}
        if is_multirun():  # the sweep's varied settings lead the HPARAMS table; a varied group shows its option
            hydra_cfg = HydraConfig.get()
            varied = varied_keys(hydra_cfg.sweep.dir, hydra_cfg.sweeper.get("params"))  # params: Optuna's space
            choices = dict(hydra_cfg.runtime.choices)  # group -> option, e.g. optimizer -> adam_noam
        if cfg.test_after_fit:  # the test columns fill in once the run has been evaluated
            metric_tags = [*metric_tags, *test_tags(metric_tags)]
        callbacks.append(dashboard.HParamsLogger(metric_tags=metric_tags, varied=varied, choices=choices))
    return callbacks


def train(
    cfg: DictConfig,
    run_dir: Path,
    record: RunRecord | None = None,
    launched_at: float | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, float]:
    """Train the configured experiment in `run_dir`; returns the final validation metrics. With a `record`, the
    run's speed goes into it (launch to first step, training steps and tokens per second). `launched_at`: when the
    run began (Unix time), if not when this process started. `callbacks`: more Lightning callbacks for this run,
    after the run's own (the loop benchmark's timer)."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from src.cli.preflight import check_analysis_target, check_training_left
    from src.data import build_datamodule
    from src.training.bleu import has_references, score_split
    from src.training.callbacks import TrainingSpeed
    from src.training.checkpoint import check_resumable, numeric_settings, read_checkpoint, resolve_resume_checkpoint
    from src.training.loggers import build_loggers
    from src.training.metrics import split_sizes
    from src.training.metrics_file import RecordValidations
    from src.training.module import TransformerLitModule
    from src.training.processes import adopt_launcher
    from src.training.report import print_run_start
    from src.training.stock_callbacks import why_training_stopped

    validate_config(cfg)  # before any data or model is built
    placeholder = model_config_for(cfg)  # the vocabulary sizes are placeholders: the ablation needs only the layout
    warn_if_every_head_ablated(check_ablation(cfg.ablate, placeholder, training=True), placeholder)
    warn_unread_settings(cfg)  # legal settings the chosen options do not read: one warning each
    warn_if_warmup_outlasts_training(cfg)
    if cfg.model.pretrained:  # a mask given beside it that is not the one it was trained with
        from src.pretrained.run_config import warn_if_mask_replaced

        warn_if_mask_replaced(cfg, placeholder)
    check_analysis_target(run_dir, cfg.analyze_after_fit)  # a sweep's job is checked here, a single run also earlier
    ckpt_path = resolve_resume_checkpoint(cfg.ckpt_path, run_dir) if cfg.ckpt_path is not None else None
    checkpoint = read_checkpoint(str(ckpt_path), "ckpt_path") if ckpt_path is not None else None
    if checkpoint is not None:  # checked before Hydra wrote anything (src/cli/preflight.py); again, as it is read here
        check_training_left(checkpoint, ckpt_path, cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    absolute_task_paths(cfg.task)
    tokenizer = run_tokenizer(cfg.model.pretrained, run_dir) if cfg.model.pretrained else None
    datamodule = build_datamodule(
        cfg.task,
        cfg.batch_size,
        cfg.seed,
        run_dir,
        num_workers=cfg.num_workers,
        bucket_by_length=cfg.bucket_by_length,
        tokenizer=tokenizer,
    )
    model_cfg = model_config_for(cfg, datamodule.src_vocab_size, datamodule.tgt_vocab_size, datamodule.num_classes)
    longest = max(datamodule.max_src_len, datamodule.max_tgt_len)
    if cfg.model.pretrained:  # its positions are fixed: the task must fit them
        from src.pretrained.fit import check_length

        check_length(f"model.pretrained={cfg.model.pretrained}", model_cfg, longest)
    if model_cfg.max_len < longest:
        raise ConfigError(
            f"model.max_len={model_cfg.max_len} is shorter than the task's longest sequence ({longest} tokens): "
            f"set model.max_len={longest} or more (or lower task.max_len)"
        )
    model_cfg.validate()  # again, now with the real vocabulary sizes
    if cfg.model.pretrained:  # the config printed, saved with the checkpoints and in .hydra/, says what the model is
        from src.pretrained.run_config import hydra_saved_config, record_pretrained_settings

        record_pretrained_settings(cfg, model_cfg, hydra_saved_config() if is_global_zero() else None)

    config = to_plain(cfg)
    numerics = numeric_settings(config)
    if record is not None:  # what changes the numbers, as it trains here: precision `auto` resolved, threads, ...
        record.update(numerics=numerics)
    if checkpoint is not None:
        check_resumable(checkpoint, model_cfg, cfg.task.name, config=config, numerics=numerics)
        del checkpoint  # Lightning reads it again, with the loop and data-loader state
    if ckpt_path is not None and ckpt_path.parent.name == "checkpoints" and ckpt_path.parent.parent != run_dir:
        print_warning(
            f"resuming {ckpt_path} into a new directory {run_dir}, so its curves continue there: to continue "
            f"the run in its own directory, add {shell_override('hydra.run.dir', ckpt_path.parent.parent)}"
        )
    if ckpt_path is not None and ckpt_path.resolve().parent == (run_dir / "checkpoints").resolve():
        quiet_resume_in_place(run_dir / "checkpoints")  # its checkpoints/ holds what it saved: as it should

    module = TransformerLitModule(config, asdict(model_cfg), datamodule.kind, str(run_dir), numerics)
    if cfg.model.pretrained and ckpt_path is None:  # a resume continues from its checkpoint's weights instead
        start_from_pretrained(module.model, cfg.model.pretrained, datamodule)
    print_run_start(cfg, model_cfg, module, datamodule, run_dir)

    recorder = RecordValidations(run_dir, module.monitor, module.monitor_mode, objective=objective_of(cfg))
    speed = TrainingSpeed(launched_at=launched_at)
    loggers = build_loggers(cfg.logger, run_dir, run_name=run_dir.name)
    with_logger = bool(loggers)  # TensorBoard is then the first (the dashboards write to it)
    logger: Any = loggers or False
    try:
        trainer = L.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            logger=logger,
            callbacks=[*build_callbacks(cfg, run_dir, module, with_logger, recorder), speed, *callbacks],
            default_root_dir=str(run_dir),
        )
    except (MisconfigurationException, ValueError) as error:  # Lightning's own checks of trainer.*
        first_line = str(error).strip().splitlines()[0]
        raise ConfigError(f"trainer settings rejected by Lightning: {first_line}") from None
    checkpoints = run_dir / "checkpoints"
    # strategy=ddp (or auto with several devices): the extra ranks are started as this job's own command and
    # watched; a rank that dies ends the run as failed, with its reason (src/training/processes.py)
    ranks = adopt_launcher(
        trainer,
        run_dir,
        on_failure=lambda reason: record_failure(record, run_dir, reason),
        on_interrupt=lambda name: record_stuck_interrupt(record, run_dir, name),
    )
    try:
        # weights_only=True: Lightning reads the checkpoint again for the loop state; nothing in it may run code.
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)

        if record is not None:
            record.update(speed=speed.summary())
        stopped = why_training_stopped(trainer, cfg.trainer, recorder.content["history"])
        if stopped is not None and trainer.is_global_zero:  # ended before max_steps: say why, here and in run.json
            print_line(stopped["message"])
            if record is not None:
                record.update(stopped=stopped)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        bleu_notes: dict[str, str] = {}
        if cfg.test_after_fit:  # the checkpoint ckpt=<run> stands for, on the test splits: test/* next to val/*
            chosen = best_checkpoint_of(run_dir) or checkpoints / "last.ckpt"
            # verbose=False: the metrics are printed once, labelled, in the summary below (not also as Lightning's
            # table of bare numbers)
            tested = trainer.test(
                module, datamodule=datamodule, ckpt_path=str(chosen), weights_only=True, verbose=False
            )
            for per_loader in tested:
                metrics.update({k: float(v) for k, v in per_loader.items()})
            if has_references(datamodule, "test") and trainer.is_global_zero:
                # The publishable figure: sacrebleu on the raw references, decoded as decode.* says (e.g. beam),
                # printed in the summary with what it is (its sentences, decoding and signature).
                bleu = score_split(module, datamodule, "test", cfg.decode, batch_size=cfg.batch_size)
                metrics.update(bleu.metrics())
                bleu_notes = bleu.notes()
    except BaseException as error:
        interrupted = interrupted_outside_the_steps(error, trainer, checkpoints / "last.ckpt")
        failure = end_ranks(ranks, failed_at=time.time())
        if interrupted is not None:
            raise interrupted from None
        if failure is not None:  # this rank failed because another one did
            raise RankFailed(failure) from error
        if (failure := spawned_rank_failure(error)) is not None:  # strategy=ddp_spawn: this process only waited
            raise RankFailed(failure) from None
        raise
    if (failure := end_ranks(ranks, failed_at=None)) is not None:
        raise RankFailed(failure)
    if trainer.is_global_zero:
        recorder.add_final(metrics)
        print_run_end(
            run_dir,
            metrics,
            module.monitor,
            with_logger,
            multirun=is_multirun(),
            speed=speed.summary(),
            notes=bleu_notes,
            kind=datamodule.kind,
            examples=split_sizes(datamodule),
        )
    return metrics


def interrupted_outside_the_steps(error: BaseException, trainer, last: Path) -> TrainingInterrupted | None:
    """SIGTERM or Ctrl-C outside the training steps (start-up, sanity check, test), which SaveOnInterrupt does not
    see: Lightning's SIGTERM handler stops its loop with a SystemExit of status 0, and after Ctrl-C Lightning stops
    the other ranks and exits with status 1. An interrupt, not a failure: what training saved last (`last`) is what
    there is to resume from, at the step it holds (under ddp_spawn the ranks trained in other processes, and this
    one's trainer never left step 0)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from src.training.checkpoint import read_checkpoint

    if isinstance(error, SIGTERMException):
        name = "SIGTERM"
    elif isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt):
        name = "SIGINT"
    else:
        return None
    if not last.is_file():
        return TrainingInterrupted(name, trainer.global_step, None)
    step = int(read_checkpoint(str(last), "ckpt_path").get("global_step", trainer.global_step))
    return TrainingInterrupted(name, step, last)


def interrupted_before_the_steps(run_dir: Path) -> TrainingInterrupted:
    """Ctrl-C while the run builds its data or its model, before Lightning's loop (whose interrupts SaveOnInterrupt
    turns into TrainingInterrupted): an interrupt, not a crash. What there is to resume from is what an earlier
    session of this run saved, if any (a resumed run's newest checkpoint)."""
    from src.training.checkpoint import read_checkpoint

    saved = newest_checkpoint(run_dir)
    step = int(read_checkpoint(str(saved), "ckpt_path").get("global_step", 0)) if saved is not None else 0
    return TrainingInterrupted("SIGINT", step, saved)


def spawned_rank_failure(error: BaseException) -> str | None:
    """Under strategy=ddp_spawn every rank is a process forked from this one, which waits for them: one that
    raised or was killed ends the wait with torch's error, here turned into the run's one-line reason."""
    import torch.multiprocessing as mp

    if isinstance(error, mp.ProcessExitedException):
        how = f"killed by {error.signal_name}" if error.signal_name else f"exited with status {error.exit_code}"
        return f"rank {error.error_index} (PID {error.error_pid}) failed: {how}"
    if isinstance(error, mp.ProcessRaisedException):
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return f"rank {error.error_index} (PID {error.error_pid}) failed: {lines[-1] if lines else 'an error'}"
    return None


def end_ranks(ranks, failed_at: float | None) -> str | None:
    """The first rank is done with training (`failed_at`: when it failed with an error of its own): the failure of
    an extra rank it started that ended the run, if any (None for a run of one process)."""
    return ranks.finish(failed_at) if ranks is not None else None


def record_failure(record: RunRecord | None, run_dir: Path, reason: str) -> None:
    """Called from the thread that watches the extra ranks, as soon as one dies: run.json says so at once (the
    first rank may be stuck in a collective and be killed without another word)."""
    if record is not None:
        record.end("failed", error=reason)
    (run_dir / "error.txt").write_text(f"{reason}\n")


def record_stuck_interrupt(record: RunRecord | None, run_dir: Path, name: str) -> None:
    """Called from the thread that watches the extra ranks when Ctrl-C or SIGTERM stopped them while the first rank
    could not stop by itself (waiting for them to join): the run ends interrupted, and says how to go on."""
    saved = newest_checkpoint(run_dir)
    command = resume_command(run_dir) if saved is not None else None
    if record is not None:
        record.end("interrupted", error=f"{name} while the ranks were starting", checkpoint=saved, resume=command)
    go_on = f"resume with: {command}" if command else "nothing was saved: run it again"
    print_error(f"interrupted by {name} while the ranks were starting; {go_on}")


def start_from_pretrained(model, pretrained: str, datamodule) -> None:
    """Load the pretrained weights into our model; a classifier's head is matched to the task's labels by name
    (src/pretrained/fit.py), and replaced by a new one, with a warning, where the checkpoint has none for them."""
    from src.model import ConfigError as HeadMismatch
    from src.pretrained import label_names_of, load_weights_into, pretrained_config
    from src.pretrained.fit import align_head

    name = f"model.pretrained={pretrained}"
    new_parts = load_weights_into(model, pretrained)
    new_head = "head" in new_parts
    if not new_head and not task_kind(datamodule.kind).predicts_tokens:  # a classifier's head, labels by name
        _, _, hf_config = pretrained_config(pretrained)
        try:
            align_head(model, label_names_of(hf_config, model.cfg.num_classes), datamodule.label_names, name)
        except HeadMismatch:
            model.head[1].reset_parameters()  # names of another label set: start the task's head anew
            new_head = True
    if new_head:
        print_warning(
            f"{name} has no classification head for the task's labels {datamodule.label_names}"
            + (" and no pooler (a masked-LM checkpoint)" if "pooling" in new_parts else "")
            + f": a new {'pooler and head start' if 'pooling' in new_parts else 'head starts'} from random weights"
        )


def run_tokenizer(pretrained: str, run_dir: Path):
    """A pretrained model's tokenizer, saved with the run (run_dir/pretrained_tokenizer/) so that eval and predict
    read text as training did without the hub; a resumed run reads its own copy. (The model's own was loaded, and
    so checked, before Hydra wrote the run directory: src/cli/preflight.py.)"""
    from src.data.pretrained_tokenizer import SAVED_DIR, PretrainedTokenizer, model_tokenizer
    from src.model.tokens import SpecialIds
    from src.pretrained import pretrained_config

    saved = run_dir / SAVED_DIR
    if saved.is_dir():
        cfg, _, _ = pretrained_config(pretrained)
        specials = SpecialIds(pad=cfg.pad_id, bos=cfg.bos_id, eos=cfg.eos_id, stops=tuple(cfg.stop_ids))
        return PretrainedTokenizer.load(saved, specials, max(cfg.src_vocab_size, cfg.tgt_vocab_size), pretrained)
    tokenizer = model_tokenizer(pretrained)
    if is_global_zero():
        tokenizer.save(saved)
    return tokenizer


def is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # Hydra not initialised (called from Python)
        return False


def threads_for_parallel_jobs() -> int:
    """torch_threads=0 in a sweep: the cores shared out between jobs a launcher runs side by side (joblib; see
    src/cli/preflight.py threads_for_jobs); 0 (torch's default) for a single run."""
    from src.cli.preflight import threads_for_jobs

    return threads_for_jobs(HydraConfig.get().launcher) if is_multirun() else 0


def resume_command(run_dir: Path) -> str:
    """The command that resumes this run in its own directory from its newest checkpoint."""
    return resume_in_place(list(HydraConfig.get().overrides.task), run_dir, HydraConfig.get())


def interrupt_follow_up(
    run_dir: Path, interrupt: TrainingInterrupted, multirun: bool, evaluate: str | None = None
) -> tuple[str | None, str]:
    """After an interrupt: (the command run.json keeps as `resume`, what the interrupt's line says after the step
    it saved). A single run resumes in place. A grid sweep's job goes on with its sweep: the sweep's own command
    with hydra.sweep.dir=<the sweep> ckpt_path=last resumes it in place, keeps the jobs that finished and runs those
    that did not start (src/sweep/resume.py); the job's own command, which resumes it alone, comes after. A trial of
    the project's Optuna search goes on through the search (src/study.py): the search's own command with
    hydra.sweep.dir=<the sweep> ckpt_path=last, which its sweeper recorded in study.yaml; with its study in memory
    the search cannot go on, and the line says so. Under SLURM a requeued job goes on by itself.

    `evaluate` (evaluate_instead): the interrupt came after the last step, so there is nothing to resume, only the
    final metrics to measure with src.eval; a grid sweep's own command still goes on with its other jobs (it keeps
    this one)."""
    from src.cli.preflight import resumes_in_place
    from src.study import SWEEPER
    from src.study import read_record as read_study_record
    from src.sweep.resume import resume_command as sweep_resume_command

    if evaluate is not None:
        hydra_cfg = HydraConfig.get() if multirun else None
        grid = hydra_cfg is not None and resumes_in_place(hydra_cfg.sweeper)
        whole = sweep_resume_command(Path(str(hydra_cfg.sweep.dir))) if hydra_cfg is not None and grid else None
        if whole is None:
            return None, evaluate
        # run.json keeps no resume: this job has nothing to resume (the sweep's command would keep it as it is)
        return None, f"{evaluate}; the sweep's other jobs go on (this one is kept as it is) with: {whole}"
    command = resume_command(run_dir)
    go_on = f"resume with: {command}" if interrupt.checkpoint else "run it again in a new directory"
    if slurm_job() is not None:  # SIGTERM is also how SLURM requeues a job: it then continues by itself
        return command, f"{go_on}; if SLURM requeued job {slurm_job()}, it resumes from there by itself"
    if not multirun:
        return command, go_on
    hydra_cfg = HydraConfig.get()
    if str(hydra_cfg.sweeper.get("_target_", "")) != SWEEPER:
        sweep = Path(str(hydra_cfg.sweep.dir))
        whole = sweep_resume_command(sweep) if resumes_in_place(hydra_cfg.sweeper) else None
        if whole is None:  # a sweeper that does not resume a sweep in place: the job alone, and the report
            report = sweep / "report.md"
            return command, (
                f"{go_on}; the sweep stops here: its report ({report}) lists the jobs that did not start, with the "
                "command that runs each"
            )
        how = "this job from the step saved" if interrupt.checkpoint else "this job from the start"
        alone = f"; this job alone resumes with: {command}" if interrupt.checkpoint else ""
        return whole, f"resume the sweep ({how}; the finished jobs kept, the others run) with: {whole}{alone}"
    if hydra_cfg.sweeper.get("storage"):
        search = (read_study_record(Path(hydra_cfg.sweep.dir)) or {}).get("resume")
        if not search:  # a study.yaml that records no command (another version's): the job alone
            return command, go_on
        how = "going on from the step saved" if interrupt.checkpoint else "starting again"
        return search, f"the search stops here; resume it, this trial {how} as a trial of the study, with: {search}"
    # the job's own command without the search (hparams_search= would only warn that a sweeper needs -m)
    alone_command = resume_in_place(
        [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith("hparams_search=")],
        run_dir,
        HydraConfig.get(),
    )
    alone = f"this job's training alone resumes with: {alone_command}" if interrupt.checkpoint else "nothing to resume"
    return alone_command, (
        "the search stops here and cannot be continued, its study being in memory (give "
        f"hydra.sweeper.storage=sqlite:///<file>.db to a search that may need to go on); {alone}"
    )


def evaluate_instead(interrupt: TrainingInterrupted, trainer: DictConfig) -> str | None:
    """What an interrupt that came once training had ended (Lightning's last callbacks, the test split, the end of
    the run) leaves to do, when the checkpoint it saved holds every step the trainer asked for: resuming would
    train nothing (and is refused), so the way on is to evaluate that checkpoint. None while steps are left."""
    from src.cli.preflight import finished_by
    from src.training.checkpoint import read_checkpoint

    if interrupt.checkpoint is None:
        return None
    finished = finished_by(read_checkpoint(str(interrupt.checkpoint), "ckpt_path"), trainer)
    if finished is None:
        return None
    setting, reached = finished
    run_dir = Path(interrupt.checkpoint).parent.parent  # src.eval reads a run's best checkpoint, as its test did
    return (
        f"training had ended ({reached}, all that trainer.{setting} asks for) and the run's final metrics are not "
        f"recorded: evaluate it with {module_command('src.eval', shell_override('ckpt', run_dir))}"
    )


def job_command(run_dir: Path) -> str:
    """A sweep job's own command: what runs this one job, in its directory (its process was started by the sweep's
    command, or by a worker of a launcher: joblib's, submitit's, whose command line says nothing of the job)."""
    keep = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith("hydra.")]
    return command_line(argv=[*config_arguments(HydraConfig.get()), *keep, f"hydra.run.dir={hydra_value(run_dir)}"])


FAILED_JOBS: list[str] = []  # sweep jobs that failed in this process (the basic launcher runs them all here)
FAILED_ANALYSES: list[str] = []  # sweep jobs that trained, but whose analyze_after_fit failed, in this process
EXIT_FAILED = 1  # the run did not do its job (diverged, crashed)
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143, "SIGUSR1": 138, "SIGUSR2": 140}  # the shell's: 128 + its number


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra's entry point: one run, or one job of a sweep. Whatever happens, run.json says how it ended."""
    launched_at = job_launch_time()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = is_multirun()
    job = f"job {HydraConfig.get().job.num} ({run_dir.name})" if multirun else ""
    threads = cfg.torch_threads or threads_for_parallel_jobs()
    if threads > 0:  # before the record notes the thread count (a negative one is refused later)
        torch.set_num_threads(threads)
    earlier = read_record(run_dir)
    note = None
    if requeued(earlier):  # SLURM started this job again (preemption, a requeue): it continues where it stopped
        assert earlier is not None
        if earlier.get("status") == "completed":  # every rank: nothing left to train
            print_line(f"{run_dir} completed before SLURM started its job again: nothing left to train")
            return earlier.get("metrics", {}).get(objective_of(cfg))
        note = continue_requeued_run(cfg, run_dir)
    if process_rank() > 0:  # an extra rank of a multi-process run: it trains its share, the first rank records
        return train_as_extra_rank(cfg, run_dir)
    record = RunRecord(run_dir)
    if multirun:  # what ran this job, and the command the process itself was started with
        record.data.update(command=job_command(run_dir), process_command=record.data["command"])
    record.update(**({"requeued": note} if note else {}))
    announce(run_dir, record.data["session"])  # the ranks it starts belong to this run (src/training/processes.py)
    try:
        return record_the_run(cfg, run_dir, record, launched_at, multirun, job)
    finally:
        withdraw()
        end_process_group()


@contextlib.contextmanager
def ended_if_still_running(record: RunRecord):
    """Every ending below records itself; should recording one fail in turn (an error while an interrupt's follow-up
    is worked out), the run is still not left `running` under a process that lives on (a sweep's joblib worker
    takes its next job), which a later command would take for a run still training (src/provenance.py)."""
    try:
        yield
    finally:
        if record.data.get("status") == "running":
            record.end("failed", error="an error while recording how the run ended (its traceback was printed)")


def record_the_run(
    cfg: DictConfig, run_dir: Path, record: RunRecord, launched_at: float | None, multirun: bool, job: str
) -> float | None:
    """Train, and say in run.json (and in one line) how it ended: the first (or only) rank of a run."""
    forget_earlier_error(run_dir)  # a resumed run: error.txt belongs to the status run.json has now
    with logged_to(run_dir / "run.log"), ended_if_still_running(record):
        try:
            try:
                metrics = train(cfg, run_dir, record, launched_at=launched_at)
            except KeyboardInterrupt:  # Ctrl-C before Lightning's loop (the data or the model being built)
                raise interrupted_before_the_steps(run_dir) from None
        except (*USER_ERRORS, TrainingDiverged, RankFailed) as error:
            status = "diverged" if isinstance(error, TrainingDiverged) else "failed"
            record.end(status, error=str(error))
            (run_dir / "error.txt").write_text(f"{error}\n")
            message = str(error)
            if isinstance(error, RankFailed) and newest_checkpoint(run_dir) is not None:  # the steps saved are kept
                command = resume_command(run_dir)
                record.update(resume=command)
                message += f"; resume from the last checkpoint with: {command}"
            if multirun and cfg.sweep_catch_errors:  # one bad job must not end the sweep: report it, go on
                print_error(f"{job}: {message}")
                FAILED_JOBS.append(job)
                return None
            print_error(message)
            sys.exit(EXIT_USER_ERROR if isinstance(error, USER_ERRORS) else EXIT_FAILED)
        except TrainingInterrupted as interrupt:
            ctrl_c_ignored_to_the_end()  # the run's end (and a sweep's report) written undisturbed
            evaluate = evaluate_instead(interrupt, cfg.trainer)
            command, go_on = interrupt_follow_up(run_dir, interrupt, multirun, evaluate)
            reason = str(interrupt) if evaluate is None else f"{interrupt}; {evaluate}"
            record.end("interrupted", error=reason, checkpoint=str(interrupt.checkpoint), resume=command)
            if interrupt.signal_name not in ("SIGINT", "SIGTERM"):  # SLURM's warning before the time limit
                hand_over_to_submitit(interrupt)
            saved = (
                f"step {interrupt.step} saved in {interrupt.checkpoint}" if interrupt.checkpoint else "nothing saved"
            )
            print_error(f"interrupted by {interrupt.signal_name} ({saved}); {go_on}")
            sys.exit(EXIT_SIGNAL[interrupt.signal_name])  # a sweep stops too: the user or the scheduler asked
        except BaseException as error:  # a crash (or a second Ctrl-C): recorded, then the usual traceback
            trace = traceback.format_exc()
            record.end("failed", error=f"{type(error).__name__}: {error}".strip())
            (run_dir / "error.txt").write_text(trace)
            if multirun and cfg.sweep_catch_errors and isinstance(error, Exception):
                print_error(f"{job} failed; traceback in {run_dir / 'error.txt'}")
                FAILED_JOBS.append(job)
                return None
            raise
        record.end("completed", metrics=metrics)
        if cfg.analyze_after_fit and is_global_zero():
            failure = analyze_after_fit(cfg, run_dir, record, multirun)
            if failure is not None:  # the trained run stands (completed); the command still says it fell short
                if multirun and cfg.sweep_catch_errors:
                    print_error(f"{job}: {failure}")
                    FAILED_ANALYSES.append(job)
                else:
                    print_error(failure)
                    sys.exit(EXIT_FAILED)
    return metrics.get(objective_of(cfg))


def run_stacked_group(
    configs: list[DictConfig],
    made: list[tuple[DictConfig, Path]],
    group_state: Path,
    resume: bool,
    resume_arguments: list[str],
) -> list[Any]:
    """hydra/launcher=stacked: the jobs of a group (configs that differ only in `seed`, their directories made by
    the launcher) trained together as one stacked model (src/training/stacked.py), from the start or (`resume`)
    from the group's saved training state `group_state`. Each member's run.json says how it ended, as a separate
    job's would; returns the members' JobReturns. `resume_arguments`: the command line that resumes the sweep.
    NotStackable when the members' data gave models of different shapes: their directories are then put back as
    the launcher made them, for their jobs to run one after another."""
    from src.training.stacked import NotStackable, StackedMember, train_stacked

    cfgs, run_dirs = [cfg for cfg, _ in made], [run_dir for _, run_dir in made]
    launched_at = job_launch_time()
    threads = cfgs[0].torch_threads or threads_for_parallel_jobs()
    if threads > 0:
        torch.set_num_threads(threads)
    names = ", ".join(run_dir.name for run_dir in run_dirs)
    before = [directory_contents(run_dir) for run_dir in run_dirs]  # before run.log is opened
    records: list[RunRecord] = []

    def started() -> None:
        """The members are built and stack: their run.json say they run, and the group says what it trains."""
        for record, run_dir in zip(records, run_dirs):
            forget_earlier_error(run_dir)
            record.update()
        if resume:
            print_line(f"resuming {len(cfgs)} seeds trained together from {group_state}: {names}")
        else:
            print_line(f"training {len(cfgs)} seeds together as one stacked model: {names}")

    refused: NotStackable | None = None
    with logged_to(*(run_dir / "run.log" for run_dir in run_dirs)):
        try:
            for member, (config, cfg) in enumerate(zip(configs, cfgs)):
                records.append(stacked_member_record(config, cfg, run_dirs, member, group_state))
            finals, outputs, speed = train_stacked(
                [StackedMember(cfg, run_dir) for cfg, run_dir in zip(cfgs, run_dirs)],
                objective_of(cfgs[0]),
                group_state,
                resume=resume,
                launched_at=launched_at,
                dashboards=lambda cfg, module: dashboard_callbacks(cfg, module.metric_tags),
                started=started,
            )
        except NotStackable as error:
            refused = error
        except BaseException as error:
            for member in range(len(records), len(cfgs)):  # stopped while they were being made
                records.append(stacked_member_record(configs[member], cfgs[member], run_dirs, member, group_state))
            return end_group_early(error, configs, cfgs, run_dirs, records, group_state, resume_arguments)
        else:
            return end_group(configs, cfgs, run_dirs, records, finals, outputs, speed)
    for run_dir, contents in zip(run_dirs, before):  # nothing of the attempt is left for the separate jobs to find
        put_back(run_dir, contents)
    raise refused


def stacked_member_record(
    config: DictConfig, cfg: DictConfig, run_dirs: list[Path], member: int, group_state: Path
) -> RunRecord:
    """The run.json of member `member` as a separate job's begins (its own command, and the process's), with its
    group; kept in memory until the group is known to stack (written then, or when the group ends before)."""
    HydraConfig.instance().set_config(config)  # the command reads the job's own overrides
    run_dir = run_dirs[member]
    record = RunRecord(run_dir)
    record.data.update(command=stacked_member_command(run_dir, cfg), process_command=record.data["command"])
    members = [str(d) for d in run_dirs]
    record.data.update(stacked={"members": members, "member": member, "group_state": str(group_state)})
    return record


def stacked_member_command(run_dir: Path, cfg: DictConfig) -> str:
    """A member's own command, as job_command's: what runs this one job, in its directory. A member of a resumed
    sweep that starts over (it saved nothing to resume from: the launcher unset its ckpt_path) does what that
    command does without the sweep's ckpt_path=last, as a member of a new sweep."""

    def kept(override: str) -> bool:
        key = override.lstrip("+~")
        return not key.startswith("hydra.") and (cfg.ckpt_path is not None or not key.startswith("ckpt_path="))

    keep = [o for o in HydraConfig.get().overrides.task if kept(o)]
    return command_line(argv=[*config_arguments(HydraConfig.get()), *keep, f"hydra.run.dir={hydra_value(run_dir)}"])


def forget_earlier_error(run_dir: Path) -> None:
    """A run (or a stacked group's member) trains again: the error.txt of an earlier attempt goes (its reason stays
    in run.json's `previous`), so that error.txt always belongs to the status run.json has now."""
    (run_dir / "error.txt").unlink(missing_ok=True)


def directory_contents(run_dir: Path) -> dict[str, int]:
    """The names in a member's directory, each with its size (run.log grows as a session appends to it)."""
    return {path.name: path.stat().st_size for path in run_dir.iterdir()} if run_dir.is_dir() else {}


def put_back(run_dir: Path, contents: dict[str, int]) -> None:
    """A member's directory as `contents` (directory_contents) says it was: what a group's attempt made there
    removed (its data's vocabularies, its run.log), and run.log cut back to where the attempt began to write."""
    import shutil

    for path in run_dir.iterdir():
        if path.name not in contents:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        elif path.name == "run.log" and path.stat().st_size > contents[path.name]:
            with open(path, "r+b") as file:
                file.truncate(contents[path.name])


def end_group(
    configs: list[DictConfig],
    cfgs: list[DictConfig],
    run_dirs: list[Path],
    records: list[RunRecord],
    finals: list[dict[str, float]],
    outputs: list[Any],
    speed: dict[str, Any],
) -> list[Any]:
    """A stacked group trained to its end: each member's run.json and lines as a separate job's, diverged or
    completed (then analysed with analyze_after_fit). Returns the members' JobReturns."""
    from src.sweep.stacked import job_return

    values: list[Any] = [None] * len(cfgs)
    for member, (cfg, run_dir, record, final, output) in enumerate(zip(cfgs, run_dirs, records, finals, outputs)):
        record.update(numerics=output.module.hparams["numerics"])  # as trained here (precision auto resolved)
        if output.diverged_at is not None:
            error = TrainingDiverged(output.diverged_at, output.diverged_loss, cfg.max_loss)
            record.end("diverged", error=str(error), speed=speed)
            (run_dir / "error.txt").write_text(f"{error}\n")
            print_error(f"job {run_dir.name}: {error}")
            continue  # as a diverged sweep job: reported, and the sweep goes on (its value None)
        if output.stopped is not None:  # ended before max_steps: said here and in run.json, as a solo run
            print_line(f"{run_dir.name}: {output.stopped['message']}")
            record.update(stopped=output.stopped)
        record.end("completed", metrics=final, speed=speed)
        # what a separate job prints when it ends: its metrics, files and the commands to go on with
        module = output.module
        print_run_end(run_dir, final, module.monitor, bool(output.loggers), True, speed, kind=module.kind)
        values[member] = final.get(objective_of(cfg))
        if cfg.analyze_after_fit and is_global_zero():
            HydraConfig.instance().set_config(configs[member])
            failure = analyze_after_fit(cfg, run_dir, record, True)
            if failure is not None:
                print_error(f"job {run_dir.name}: {failure}")
                FAILED_ANALYSES.append(run_dir.name)
    return [job_return(c, cfg, v) for c, cfg, v in zip(configs, cfgs, values)]


def end_group_early(
    error: BaseException,
    configs: list[DictConfig],
    cfgs: list[DictConfig],
    run_dirs: list[Path],
    records: list,
    group_state: Path,
    resume_arguments: list[str],
) -> list[Any]:
    """A stacked group that stopped before its end: interrupted (Ctrl-C, SIGTERM: exit 130/143, each member's
    weights and the group's training state kept, the command that resumes it printed), refused or failed (every
    member records why). Returns the JobReturns when the sweep goes on."""
    from src.sweep.stacked import job_return

    names = ", ".join(run_dir.name for run_dir in run_dirs)
    in_a_step = isinstance(error, TrainingInterrupted)  # else outside the steps: while built, started, validated
    interrupt = error if isinstance(error, TrainingInterrupted) else interrupted_before_a_step(error, group_state)
    if interrupt is not None:
        ctrl_c_ignored_to_the_end()  # every member's end (and the sweep's report) written undisturbed
        # the group's newest saved state: this step's, or an earlier validation's (a resumed group interrupted
        # before its first step keeps the state it resumed from); without one the resumed sweep starts this group
        # over, and keeps the groups that finished
        saved = group_state.is_file()
        command = command_line(argv=resume_arguments)
        from src.training.checkpoint import numeric_settings

        if in_a_step:
            at = f" at step {interrupt.step}, which was saved" if interrupt.checkpoint else f" at step {interrupt.step}"
        elif saved:
            at = f"; the group's training state saved last is at step {interrupt.step}"
        else:
            at = " before the group saved any training state"
        checkpoints = []
        for record, run_dir, cfg in zip(records, run_dirs, cfgs):
            last = run_dir / "checkpoints" / "last.ckpt"
            checkpoint = str(last) if last.exists() else None
            checkpoints.append(checkpoint)
            numerics = numeric_settings(to_plain(cfg))  # as it trained (train_stacked settled precision auto in cfg)
            reason = str(interrupt) if in_a_step else f"{interrupt.signal_name}{at}"
            forget_earlier_error(run_dir)  # an interrupted run has none, as a separate job interrupted has none
            record.end("interrupted", error=reason, checkpoint=checkpoint, resume=command, numerics=numerics)
        weights = (
            f"each member's weights at its last saved step are in its checkpoints/last.ckpt ({names}), for src.eval, "
            "src.predict and src.analyze"
            if any(checkpoints)
            else f"its members: {names}"
        )
        go_on = "this group from its saved state" if saved else "this group starts from the beginning"
        print_error(
            f"interrupted by {interrupt.signal_name}{at}; {weights}; resume the sweep ({go_on}) with: {command}"
        )
        sys.exit(EXIT_SIGNAL[interrupt.signal_name])
    if isinstance(error, (*USER_ERRORS, TrainingDiverged, RankFailed)):
        for record, run_dir in zip(records, run_dirs):
            record.end("failed", error=str(error))
            (run_dir / "error.txt").write_text(f"{error}\n")
        if not cfgs[0].sweep_catch_errors:
            print_error(str(error))
            sys.exit(EXIT_USER_ERROR if isinstance(error, USER_ERRORS) else EXIT_FAILED)
        print_error(f"jobs {names}: {error}")
        return [job_return(c, cfg, None) for c, cfg in zip(configs, cfgs)]
    trace = "".join(traceback.format_exception(error))  # a crash: recorded in every member
    for record, run_dir in zip(records, run_dirs):
        record.end("failed", error=f"{type(error).__name__}: {error}".strip())
        (run_dir / "error.txt").write_text(trace)
    if not (cfgs[0].sweep_catch_errors and isinstance(error, Exception)):
        raise error
    print_error(f"jobs {names} failed; traceback in {run_dirs[0] / 'error.txt'}")
    return [job_return(c, cfg, None) for c, cfg in zip(configs, cfgs)]


def interrupted_before_a_step(error: BaseException, group_state: Path) -> TrainingInterrupted | None:
    """Ctrl-C or SIGTERM outside the steps the group's interrupt callback sees: while the group is built (Ctrl-C
    as a KeyboardInterrupt: Lightning is not running yet), starts up or validates (Lightning's own ways of
    stopping). What there is to resume from is the group's newest saved state, at its step (none: step 0)."""
    from types import SimpleNamespace

    if isinstance(error, KeyboardInterrupt):
        name = "SIGINT"
    else:
        # a group keeps no checkpoint of its own beside its state: `last` is none
        found = interrupted_outside_the_steps(error, SimpleNamespace(global_step=0), Path("/nonexistent/last.ckpt"))
        if found is None:
            return None
        name = found.signal_name
    if not group_state.is_file():
        return TrainingInterrupted(name, 0, None)
    try:  # mmap: the step is read, not the weights
        step = torch.load(group_state, map_location="cpu", weights_only=True, mmap=True).get("global_step", 0)
    except Exception:  # an unreadable state: the resume says so, in its own line
        step = 0
    return TrainingInterrupted(name, int(step), group_state)


def hand_over_to_submitit(interrupt: TrainingInterrupted) -> None:
    """The step is saved: submitit's own handler of the signal (back in place now that training has stopped)
    requeues the job, and exits; the job, started again, resumes from the saved step."""
    saved = f"step {interrupt.step} saved in {interrupt.checkpoint}" if interrupt.checkpoint else "nothing saved"
    print_line(f"{interrupt.signal_name} from SLURM before the job's time limit ({saved}): submitit requeues the job")
    signal.raise_signal(getattr(signal, interrupt.signal_name))


def train_as_extra_rank(cfg: DictConfig, run_dir: Path) -> float | None:
    """An extra rank of a multi-process run (strategy=ddp's ranks, a SLURM job's tasks): it trains its share of each
    batch and writes none of the run's files. When it fails, its reason goes to its own error file, which the
    first rank reads into run.json (src/training/processes.py); an interrupt stops every rank at the same step,
    and the first one saves it."""
    quiet_extra_rank()
    rank = process_rank()
    try:
        metrics = train(cfg, run_dir)
    except TrainingInterrupted as interrupt:
        sys.exit(EXIT_SIGNAL[interrupt.signal_name])
    except BaseException as error:
        if isinstance(error, SystemExit) and error.code in (None, 0):
            raise
        reason = (
            str(error) if isinstance(error, (*USER_ERRORS, TrainingDiverged)) else f"{type(error).__name__}: {error}"
        )
        (run_dir / RANK_ERROR.format(rank=rank)).write_text(f"{traceback.format_exc()}\n{reason.strip()}\n")
        print_error(f"rank {rank}: {reason.strip()}")
        sys.exit(EXIT_FAILED)
    return metrics.get(objective_of(cfg))


def continue_requeued_run(cfg: DictConfig, run_dir: Path) -> str:
    """A SLURM job started again after a requeue resumes from its newest checkpoint, as `ckpt_path=last` would
    (nothing saved yet: it starts over, in its own directory). Returns what it did, for run.json."""
    newest = newest_checkpoint(run_dir)
    again = f"SLURM started job {slurm_job()} again (restart {slurm_restarts()})"
    if newest is None:
        note = f"{again}: no checkpoint was saved, so it starts over in {run_dir}"
    else:
        if cfg.ckpt_path is None:
            with open_dict(cfg):
                cfg.ckpt_path = "last"
        note = f"{again}: resuming from {newest}"
    print_line(note)
    return note


def end_process_group() -> None:
    """A multi-process job is over: its process group goes with it, so the next job of a sweep in this process
    starts its own."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class AnalysisInterrupted(Exception):
    """SIGTERM while a finished run is being analysed (Ctrl-C arrives as KeyboardInterrupt)."""


@contextmanager
def signals_interrupt_the_analysis() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the analysis with an exception, so the run can say what it kept. After training
    SIGTERM would otherwise end the process outright (or, under Lightning's handler, quietly with status 0)."""
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def on_sigterm(signum, frame):
        raise AnalysisInterrupted("SIGTERM")

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def analyze_after_fit(cfg: DictConfig, run_dir: Path, record: RunRecord, multirun: bool) -> str | None:
    """analyze_after_fit=true: the best checkpoint (last without one) analysed as `python -m src.analyze
    ckpt=<run>` would, with the run's analysis.* settings, its device and threads, into <run>/analysis/ and the
    run's TensorBoard. The run is trained and recorded as completed before this starts, so a failure or an
    interrupt here loses nothing but the analysis: run.json's `analysis` says what became of it, a partial
    analysis/ is removed (this run made it), and the one line printed says how to analyse the run later. Returns
    None when the analysis was written, else that line; an interrupt exits (130 / 143), as one during training."""
    import shutil

    chosen = best_checkpoint_of(run_dir) or run_dir / "checkpoints" / "last.ckpt"  # what ckpt=<run> stands for
    out = run_dir / ANALYSIS_DIR
    # printed, and kept in run.json's `analysis`, whose commands are this machine's as its `resume` is (module_command)
    rerun = module_command("src.analyze", shell_override("ckpt", run_dir))
    record.update(analysis="running")
    try:
        with signals_interrupt_the_analysis():
            analyze_checkpoint(
                Target(chosen, run_dir, out),
                cfg.analysis,
                device_for(cfg.trainer.accelerator),
                command="src.run",
                log=print_line,
                verbose=False,
            )
    except (KeyboardInterrupt, AnalysisInterrupted) as interrupt:
        name = "SIGINT" if isinstance(interrupt, KeyboardInterrupt) else "SIGTERM"
        shutil.rmtree(out, ignore_errors=True)
        record.update(analysis=f"interrupted by {name}: analyse it with {rerun}")
        stopped = "; the sweep stops here" if multirun else ""
        print_error(
            f"interrupted by {name} during the analysis after training: the trained run is kept (completed, "
            f"checkpoints in {run_dir / 'checkpoints'}); analyse it with {rerun}{stopped}"
        )
        sys.exit(EXIT_SIGNAL[name])
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [""])[0]
        reason = f"{type(error).__name__}: {first_line}" if not isinstance(error, USER_ERRORS) else first_line
        shutil.rmtree(out, ignore_errors=True)
        where = ""
        if not isinstance(error, USER_ERRORS):  # a crash: its traceback is kept beside the run
            with open(run_dir / "analysis_error.txt", "a") as file:
                file.write(traceback.format_exc())
            where = f" (traceback in {run_dir / 'analysis_error.txt'})"
        record.update(analysis=f"failed: {reason}")
        return (
            f"the analysis after training failed: {reason}{where}; the trained run is kept (completed): analyse it "
            f"with {rerun}"
        )
    record.update(analysis="completed")
    return None


def is_global_zero() -> bool:
    """Whether this process is the run's first (or only) one: under strategy=ddp Lightning starts the other ranks
    as copies of this command, which must not analyse the run again."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


JOBS_STARTED: list[float] = []  # when each job this process ran began (a sweep runs its jobs one after another)


def job_launch_time() -> float | None:
    """When this job was launched: None (the process's start) for the process's first job, else the job's start."""
    JOBS_STARTED.append(time.time())
    return None if len(JOBS_STARTED) == 1 else JOBS_STARTED[-1]


def objective_of(cfg: DictConfig) -> str:
    """What the run returns to a sweeper: `objective=`, or else the task's main metric."""
    from src.data import task_spec

    return cfg.objective or task_spec(cfg.task.name).main_metric[0]


def cli() -> None:
    from src.report import ReportAtSweepEnd
    from src.sweep.lock import release_sweep_lock

    ReportAtSweepEnd.started = ReportAtSweepEnd.last_sweep = None
    FAILED_JOBS.clear()  # what this command's own jobs did: not those of an earlier command in the same process
    FAILED_ANALYSES.clear()
    began = time.time()  # the jobs this command started recorded their start after it (killed_pool_ends_the_sweep)
    try:
        sweep_command(began)
    finally:
        release_sweep_lock()  # taken by the sweep's checks (src/cli/preflight.py), held until its report is written


def sweep_command(began: float) -> None:
    """src.run's command: one run or a sweep, and how the command ends when a sweep's jobs did not all complete."""
    from src.report import ReportAtSweepEnd, report_after_sweeper_error
    from src.sweep.killed_workers import killed_pool_ends_the_sweep, worker_killed

    try:
        run_hydra_command(main)  # src/cli/preflight.py checks the run and sweep directories first
    except SystemExit as exit_:
        if exit_.code in EXIT_SIGNAL.values():  # an interrupted sweep keeps its report: what ran, what did not
            report_after_sweeper_error()
        raise
    except Exception as error:
        how = worker_killed(error)
        if how is not None and ReportAtSweepEnd.started is not None:  # joblib's pool lost a worker: see there
            print_error(killed_pool_ends_the_sweep(ReportAtSweepEnd.started, how, began))
            sys.exit(EXIT_FAILED)
        # The sweeper failed after running jobs (Optuna: "No trials are completed yet" when every trial failed):
        # the jobs are still reported. When none completed, that is the whole story: one line, exit status 1.
        sweep = report_after_sweeper_error()
        if sweep is None or any(run.status == "completed" for run in sweep.runs):
            raise
        jobs = len(sweep.runs) + len(sweep.not_started)  # the jobs it never started count too
        print_error(f"none of the {jobs} sweep jobs completed: see {sweep.directory / 'report.md'} for each reason")
        sys.exit(EXIT_FAILED)
    # A sweep's jobs may have run in other processes (joblib, submitit): their run.json files say how they ended.
    sweep = ReportAtSweepEnd.last_sweep
    failed = [run.directory.name for run in sweep.runs if run.status != "completed"] if sweep else FAILED_JOBS
    unanalysed = [run.directory.name for run in sweep.runs if run.analysis_failed] if sweep else FAILED_ANALYSES
    if failed or unanalysed:
        parts = [f"{len(failed)} sweep job(s) did not complete ({', '.join(failed)})"] if failed else []
        if unanalysed:
            where_to = shell_override("ckpt", sweep.directory) if sweep else "ckpt=<sweep dir>"
            parts.append(
                f"the analysis after training of {len(unanalysed)} sweep job(s) failed ({', '.join(unanalysed)}); "
                f"they are trained and kept: analyse them with {module_command('src.analyze', where_to)}"
            )
        where = f": see {sweep.directory / 'report.md'}" if sweep else ""
        print_error("; ".join(parts) + where)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    cli()
