"""The bad-input catalogue: what a hurried or hostile user types, and what each command answers.

Every case runs a real command (src.run, src.eval, src.predict or src.analyze) through its own entry function, in
this process (a subprocess per case would cost ~5 s of imports each), and must:
- exit with a non-zero status, without a traceback;
- print exactly one `error:` line that names the problem and says how to fix it;
- change no file of an earlier run (its directory is hashed before and after the catalogue), and leave no run
  directory of its own (src.run refuses before Hydra writes one).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.conftest import PYTHON, run_in_process

TINY = [
    "model.d_model=16",
    "model.heads=2",
    "model.layers=1",
    "model.d_ff=32",
    "model.dropout=0.0",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
    "optimizer.warmup_steps=2",
    "batch_size=8",
    "dashboard.attention_every_n_steps=2",
    "torch_threads=1",
    "task.train_size=40",
    "task.val_size=8",
    "task.test_size=8",
]
# Words that say how to fix it (every message names the problem first, then the fix).
FIX = re.compile(
    r"\b(use|set|give|choose|check|fix|lower|raise|resume|drop|add|leave|quote|write|keep|delete|need|must|"
    r"remove|replace|make|change|is required|turn|widen|adjust|re-encode|re-export|leave it out|did you mean)\b"
)


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_command(module: str, args: list[str], capsys) -> Result:
    """`python -m <module> <args>` in this process, through the module's own entry function; what it printed,
    whether to the streams it found or to those the tests capture."""
    code, out, err = run_in_process(module, *args)
    captured = capsys.readouterr()
    return Result(code, captured.out + out, captured.err + err)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Data files, good and bad, and checkpoints: one trained run and files shaped like checkpoints."""
    root = tmp_path_factory.mktemp("inputs")
    paths = {}

    def write(name: str, content: str | bytes) -> None:
        paths[name] = root / name
        if isinstance(content, bytes):
            paths[name].write_bytes(content)
        else:
            paths[name].write_text(content, encoding="utf-8")

    write("empty.txt", "")
    write("binary.txt", bytes(range(256)) * 4)
    write("text.txt", "to be or not to be, that is the question.\n" * 40)
    write("no_tabs.tsv", "a good film\na bad film\n" * 10)
    good_rows = "".join(f"great film {i}\t1\nawful film {i}\t0\n" for i in range(20))
    write("stray.tsv", good_rows + "fine film\t11\n")
    write("one_label.tsv", "".join(f"film {i}\t1\n" for i in range(20)))
    write("good.tsv", good_rows)
    write("unknown_label.tsv", "nice film\t2\nbad film\t0\n")
    write("src.txt", "ein haus\nein hund\n")
    write("tgt_short.txt", "a house\n")
    write("notes.ckpt", "not a checkpoint")
    write("digits.txt", "1234\n567\n")
    write("odd_symbol.txt", "1234\n12x4\n")
    (root / "empty_dir").mkdir()
    paths["empty_dir"] = root / "empty_dir"
    # a run that has an analysis already (src.analyze wrote it): analyze_after_fit=true must not write over it
    paths["analysed_run"] = root / "analysed_run"
    (paths["analysed_run"] / "analysis").mkdir(parents=True)
    (paths["analysed_run"] / "run.json").write_text('{"status": "completed"}\n')
    (paths["analysed_run"] / "analysis" / "summary.json").write_text("{}\n")
    return paths


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> Path:
    """A finished run whose files no bad input may change."""
    run_dir = tmp_path_factory.mktemp("earlier") / "run"
    code, _, err = run_in_process("src.run", *TINY, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    return run_dir


@pytest.fixture(scope="module")
def bad_checkpoints(files, earlier_run, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    good = torch.load(earlier_run / "checkpoints" / "last.ckpt", weights_only=True)
    truncated = root / "truncated.ckpt"
    truncated.write_bytes((earlier_run / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    no_config = root / "no_config.ckpt"
    stripped = dict(good, hyper_parameters={k: v for k, v in good["hyper_parameters"].items() if k != "config"})
    torch.save(stripped, no_config)
    from tests.training.test_checkpoint import malicious_checkpoint

    malicious, _ = malicious_checkpoint(root)
    return {"truncated": truncated, "no_config": no_config, "malicious": malicious}


def cases(files, ckpts, earlier: Path) -> list[tuple[str, list[str], str]]:
    """(command, arguments, a word the error line must contain)."""
    last = earlier / "checkpoints" / "last.ckpt"
    # Resuming the earlier run in its own directory: its data settings (the catalogue leaves the task's out there)
    in_place = ["ckpt_path=last", *(o for o in TINY if o.startswith("task."))]
    run = "src.run"
    return [
        # --- config values -----------------------------------------------------------------------------------------
        (run, ["model.heads=3"], "model.heads"),
        (run, ["model.d_model=60", "model.heads=8"], "model.heads"),
        (run, ["mask=window", "mask.window=0"], "mask.window"),
        (run, ["mask=prefix", "mask.prefix_len=-1"], "mask.prefix_len"),
        (run, ["mask=prefix", "mask.prefix_len=300"], "mask.prefix_len"),
        (run, ["model.arch=decoder_only"], "model.arch"),
        (run, ["model.arch=encoder_only"], "model.arch"),
        (run, ["model.max_len=8"], "model.max_len"),
        (run, ["model.pos_encoding=rotary"], "model.pos_encoding"),
        (run, ["model.pos_encoding=rope", "model.d_model=60", "model.heads=4"], "model.pos_encoding"),
        (run, ["model.norm_type=batchnorm"], "model.norm_type"),
        (run, ["model.norm_position=middle"], "model.norm_position"),
        (run, ["model.activation=tanh"], "model.activation"),
        (run, ["model.pooling=cls", "task=classification", f"task.train_path={files['good.tsv']}"], "model.pooling"),
        (run, ["model.token_types=-1"], "model.token_types"),
        (run, [f"model.pretrained={files['empty_dir']}"], "config.json"),
        (run, ["model.pretrained=./no/such/model"], "is not a directory"),
        (run, ["model.dropout=1.5"], "model.dropout"),
        (run, ["model.layers=0"], "model.enc_layers"),
        (run, ["mask.type=diagonal"], "mask"),
        (run, ["optimizer.name=sgd"], "optimizer.name"),
        (run, ["optimizer=adam_noam", "optimizer.warmup_steps=0"], "optimizer.warmup_steps"),
        (run, ["optimizer.lr=0"], "optimizer.lr"),
        (run, ["optimizer.betas=[0.9]"], "optimizer.betas"),
        (run, ["optimizer.betas=[0.9,1.0]"], "beta2=1.0 must be in [0, 1)"),
        (run, ["optimizer.min_lr_ratio=-1"], "optimizer.min_lr_ratio=-1.0 must be in [0, 1]"),
        (run, ["optimizer.min_lr_ratio=2"], "optimizer.min_lr_ratio=2.0 must be in [0, 1]"),
        (run, ["optimizer.eps=0"], "optimizer.eps=0.0 must be > 0"),
        (run, ["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1 must be >= 0"),
        (run, ["task.min_len=5", "task.max_len=3"], "task.min_len"),
        (run, ["task.vocab_size=0"], "task.vocab_size"),
        (run, ["task.train_size=0"], "task.train_size"),
        (run, ["label_smoothing=1.0"], "label_smoothing"),
        (run, ["batch_size=0"], "batch_size"),
        (run, ["seed=-1"], "seed"),
        (run, ["torch_threads=-1"], "torch_threads"),
        (run, ["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val"),
        (run, ["trainer.precision=bogus"], "trainer.precision"),
        (run, ["trainer.val_check_interval=0"], "trainer.val_check_interval"),
        (run, ["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches"),
        (run, ["trainer.limit_val_batches=0"], "trainer.limit_val_batches"),
        (run, ["trainer.max_steps=0"], "trainer.max_steps"),
        (run, ["trainer.max_time=30min"], "trainer.max_time"),
        # what Lightning refused with a traceback, or only once the run directory existed
        (run, ["trainer.accelerator=tpu"], "trainer.accelerator=tpu: this machine has no tpu device"),
        (run, ["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 must be >= 1"),
        (run, ["+trainer.detect_anomaly=yes"], "trainer.detect_anomaly=yes is not what Lightning's Trainer takes"),
        *([] if torch.backends.mps.is_available() else [(run, ["trainer.accelerator=mps"], "no mps device")]),
        (run, ["trainer.strategy=fsdp"], "trainer.strategy=fsdp shards the model over CUDA GPUs"),
        (run, ["trainer.strategy=xla"], "trainer.strategy=xla runs on TPUs only"),
        (run, ["trainer.val_check_interval=0.5"], "trainer.val_check_interval=0.5 is a fraction of an epoch"),
        (run, ["trainer.max_epochs=-2"], "trainer.max_epochs=-2 must be >= 1, or -1"),
        (run, ["trainer.limit_val_batches=1.5"], "trainer.limit_val_batches=1.5"),
        (run, ["trainer.num_sanity_val_steps=-5"], "trainer.num_sanity_val_steps=-5"),
        (run, ["trainer.deterministic=yes"], "trainer.deterministic=yes"),
        (run, ["+trainer.num_nodes=0"], "trainer.num_nodes=0"),
        (run, ["+trainer.profiler=xla"], "trainer.profiler=xla"),
        (run, ["+trainer.barebones=true"], "trainer.barebones=true"),
        (run, ["+trainer.enable_checkpointing=false"], "trainer.enable_checkpointing=false"),
        (run, ["+trainer.min_steps=10"], "trainer.min_steps=10 is more than trainer.max_steps=4"),
        (run, ["+trainer.logger=false"], "logger=<name>"),
        (run, ["+callbacks.EarlyStoping.patience=3"], "callbacks.EarlyStoping"),
        (run, ["+callbacks.EarlyStopping.patients=3"], "patients"),
        (run, ["+callbacks.EarlyStopping=3"], "callbacks.EarlyStopping"),
        (run, ["+callbacks.ModelCheckpoint.every_n_train_steps=3"], "callbacks.ModelCheckpoint"),
        (run, ["logger=comet"], "logger"),
        (run, ["num_workers=-1"], "num_workers"),
        (run, ["dashboard.probe_size=0"], "dashboard.probe_size"),
        (run, ["checkpoint.every_n_train_steps=-1"], "checkpoint.every_n_train_steps"),
        (run, ["decode.top_p=0"], "decode.top_p"),
        (run, ["decode.strategy=nucleus"], "decode.strategy"),
        (run, ["logger.name=comet"], "logger"),
        (run, ["max_loss=0"], "max_loss"),
        (run, ["objective=val/bleu"], "objective=val/bleu"),
        (run, ["objective=test/loss"], "test_after_fit"),
        # analysis.* (read with analyze_after_fit=true; checked either way, before Hydra writes anything)
        (run, ["analyze_after_fit=true", "analysis.split=train"], "analysis.split='train' is not known"),
        (run, ["analysis.split=train"], "analysis.split"),
        (run, ["analyze_after_fit=true", "analysis.prune_step=0"], "analysis.prune_step=0.0 must be in (0, 1]"),
        (run, ["analyze_after_fit=true", "analysis.prune_step=1.5"], "analysis.prune_step"),
        (run, ["analyze_after_fit=true", "analysis.tolerance=-0.1"], "analysis.tolerance=-0.1 must be >= 0"),
        (run, ["analyze_after_fit=true", "analysis.tolerance=2"], "analysis.tolerance=2.0 must be below 1"),
        (run, ["analyze_after_fit=true", "analysis.max_examples=0"], "analysis.max_examples=0 must be >= 1"),
        (run, ["analyze_after_fit=true", "analysis.rows_per_batch=0"], "analysis.rows_per_batch"),
        (run, ["analysis.prune_stp=0.5"], "did you mean analysis.prune_step"),
        (run, ["analyze_after_fit=perhaps"], "analyze_after_fit"),
        (
            run,
            [f"hydra.run.dir={files['analysed_run']}", "ckpt_path=last", "analyze_after_fit=true"],
            "analyze_after_fit=true would overwrite",
        ),
        # ablate.*: checked against the model the run would build, before Hydra writes anything
        (run, ["ablate.heads=[crosss:0:1]"], "site 'crosss' is not known"),
        (run, ["ablate.heads=[encoder_self:1]"], "layer 1 is out of range"),
        (run, ["ablate.heads=[cross:0:2]"], "head 2 is out of range"),
        (run, ["ablate.sublayers=[decoder_ffn:3]"], "layer 3 is out of range"),
        (run, ["ablate.heads=[cross:first]"], "is not a number or *"),
        (run, ["ablate.heads=[cross:0:1:0]"], "is not site:layer:head"),
        (run, ["ablate.heads=cross:0:1:0"], "is not site:layer:head"),
        (run, ["ablate.heads=[encoder_ffn]"], "encoder_ffn has no heads"),
        (run, ["ablate.method=mean"], "ablate.method=mean needs a trained model"),
        (run, ["ablate.method=median"], "ablate.method"),
        (
            run,
            ["trainer.precision=bf16"],
            "trainer.precision=bf16 is Lightning's short name for bf16-mixed: write trainer.precision=bf16-mixed",
        ),
        (
            run,
            ["+trainer.overfit_batches=1"],
            "trainer.overfit_batches=1 is not supported by this framework's resumable data loaders",
        ),
        (run, ["ablate.reference_examples=0"], "ablate.reference_examples"),
        (run, ["ablate=everything"], "ablate=everything"),
        (run, ["ablate.head=[cross]"], "did you mean ablate.heads"),
        (
            run,
            ["task=char_lm", f"task.path={files['text.txt']}", "ablate=cross"],
            "ablate=cross (conf/ablate/cross.yaml) does not fit this model: ablate.heads: 'cross': this model "
            "(decoder_only) has no cross site",
        ),
        (run, ["task=char_lm", f"task.path={files['text.txt']}", "ablate.heads=[cross:0]"], "has no cross site"),
        *([] if torch.cuda.is_available() else [(run, ["trainer=gpu"], "trainer.accelerator")]),
        # --- the command line: typos, types, unknown options, what Hydra cannot parse ---------------------------------
        (run, ["model.head=8"], "model.head"),
        (run, ["+model.head=8"], "model.head"),
        (run, ["+task.foo=1"], "task.foo"),
        (run, ["model.heads=four"], "model.heads"),
        (run, ["model=huge"], "model=huge"),
        (run, ["task=poetry"], "task=poetry"),
        (run, ["model.heads=[1,"], "parse"),
        (run, ["task.train_size"], "parse"),
        (run, ["text=ein Hund läuft"], "parse"),
        (run, ["mask=standard", "mask.window=3"], "mask.window"),
        # a sweep without -m; a setting of another option of its group (also in a sweep); a close typo; `+` on a key
        # that exists; `~` on a setting the run needs; values Hydra cannot put into a setting
        (run, ["model.heads=2,4"], "add -m"),
        (run, ["model=tiny,small"], "add -m"),
        (run, ["seed=range(3)"], "add -m"),
        (run, ["mask=causal", "mask.window=3"], "mask.window belongs to mask=window, not to mask=causal"),
        (run, ["mask=causal,window", "mask.window=3", "-m"], "not to mask=causal, so it cannot be combined"),
        (run, ["experiment=mask_leak", "mask.window=3", "-m"], "experiment=mask_leak sweeps mask"),
        (run, ["task=reverse,char_lm", "task.vocab_size=5", "-m"], "not to task=char_lm"),
        (run, ["task=classification,translation", "task.lowercase=true", "-m"], "++task.lowercase=true"),
        (run, ["task=reverse", "task.tokenizer=bpe"], "belongs to task=classification"),
        (run, ["+task.tokenizer=bpe"], "belongs to task=classification"),
        (run, ["hydra.launcher.n_jobs=2"], "hydra/launcher=joblib"),
        (run, ["model.haeds=2"], "did you mean model.heads=2"),
        (run, ["+model.haeds=2"], "did you mean model.heads"),
        (run, ["mask=causal", "mask.windw=3"], "did you mean mask.window=3"),
        (run, ["masks=window"], "did you mean mask=window"),
        (run, ["+model.heads=2"], "drop the +"),
        (run, ["+model=tiny"], "drop the +"),
        (run, ["~model.heads"], "~model.heads"),
        (run, ["~task"], "~task"),
        (run, ["~seed"], "~seed"),
        (run, ["~callbacks.EarlyStoping"], "callbacks.EarlyStoping"),
        (run, ["model.heads=null"], "cannot be null"),
        (run, ["optimizer.betas=abc"], "optimizer.betas=[0.9,0.98]"),
        (run, ["model.heads.x=3"], "model.heads is one value"),
        (run, ["model="], "choose one of base, small, tiny"),
        (run, ["hydra.run.dir=a,b", "-m"], "Hydra's own"),
        (run, ["-m", "model.heads=1,2"], "write the flags before every override"),  # after the TINY overrides
        (run, ["--multirnu"], "--help"),
        (run, [f"hydra.run.dir={earlier}"], "already holds a run"),
        # --- data files ----------------------------------------------------------------------------------------------
        (run, ["task=char_lm"], "task.path"),
        (run, ["task=char_lm", "task.path=/nonexistent/input.txt"], "task.path"),
        (run, ["task=char_lm", f"task.path={files['empty.txt']}"], "empty.txt"),
        (run, ["task=char_lm", f"task.path={files['binary.txt']}"], "binary.txt"),
        (run, ["task=char_lm", f"task.path={files['text.txt']}", "task.block_size=1"], "task.block_size"),
        (run, ["task=classification", f"task.train_path={files['no_tabs.tsv']}"], "no_tabs.tsv"),
        (run, ["task=classification", f"task.train_path={files['stray.tsv']}"], "'11'"),
        (run, ["task=classification", f"task.train_path={files['one_label.tsv']}"], "one label"),
        (
            run,
            [
                "task=classification",
                f"task.train_path={files['good.tsv']}",
                f"task.val_path={files['unknown_label.tsv']}",
            ],
            "unknown_label.tsv",
        ),
        (
            run,
            ["task=classification", f"task.train_path={files['good.tsv']}", "task.tokenizer=chars"],
            "task.tokenizer",
        ),
        (run, ["task=translation", *translation(files, tgt="tgt_short.txt")], "line counts"),
        (run, ["task=translation", *translation(files, tgt="missing.txt")], "task.train_tgt"),
        (run, ["task=multi30k", "task.src_lang=fr"], "task.src_lang"),
        # --- checkpoints -------------------------------------------------------------------------------------------
        (run, ["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path"),
        (run, [f"ckpt_path={files['notes.ckpt']}"], "ckpt_path"),
        (run, [f"ckpt_path={ckpts['truncated']}"], "ckpt_path"),
        (run, [f"ckpt_path={ckpts['malicious']}"], "refused"),
        (run, [f"ckpt_path={ckpts['no_config']}"], "not a checkpoint written by src.run"),
        # resuming with a setting that changes the numbers (and more steps to train, so that there is work left)
        (run, [f"ckpt_path={last}", "model.heads=4", "trainer.max_steps=8"], "heads"),
        (run, [f"ckpt_path={last}", "seed=3", "trainer.max_steps=8"], "seed"),
        (run, [f"ckpt_path={last}", "torch_threads=2", "trainer.max_steps=8"], "torch_threads"),
        (run, [f"ckpt_path={last}"], "would train nothing"),  # it has trained its trainer.max_steps=4 already
        # the same, resumed in place: refused before Hydra writes, so the earlier run's files stay as they were
        (run, [f"hydra.run.dir={earlier}", *in_place, "trainer.max_steps=8", "torch_threads=2"], "threads"),
        (run, [f"hydra.run.dir={earlier}", *in_place, "trainer.max_steps=8", "seed=3"], "seed"),
        (run, [f"hydra.run.dir={earlier}", *in_place, "trainer.max_steps=8", "model.heads=4"], "heads"),
        (run, [f"hydra.run.dir={earlier}", "ckpt_path=last"], "would train nothing"),
        (run, ["seed=0,1", f"hydra.sweep.dir={earlier}", "-m"], "holds a single run"),
        # limits that train nothing, an optimising sweeper without trials, early stopping on no metric
        (run, ["+trainer.max_step=5"], "did you mean trainer.max_steps"),
        (run, ["trainer.max_steps=0"], "trains nothing"),
        (run, ["trainer.max_epochs=0"], "trains nothing"),
        (run, ["trainer.max_time=00:00:00:00"], "trainer.max_time"),
        (run, ["+trainer.limit_train_batches=0"], "trains nothing"),
        (run, ["+callbacks.EarlyStopping.monitor=val/losss"], "callbacks.EarlyStopping.monitor"),
        (run, ["+callbacks.EarlyStopping.mode=maximum"], "callbacks.EarlyStopping.mode"),
        (
            run,
            ["hparams_search=lr_warmup_dropout_size", "hydra.sweeper.n_trials=0", f"hydra.sweep.dir={earlier}x", "-m"],
            "hydra.sweeper.n_trials",
        ),
        (run, ["ckpt_path=last"], "ckpt_path=last resumes the run in hydra.run.dir"),
        (run, [f"ckpt_path={files['empty_dir']}"], "no checkpoints"),
        # --- eval and predict ----------------------------------------------------------------------------------------
        ("src.eval", [], "ckpt is required"),
        ("src.eval", ["ckpt="], "ckpt is empty"),
        ("src.predict", ["ckpt=", "text=1"], "ckpt is empty"),
        ("src.predict", ["ckpt=hf:", "text=1"], "names no model"),
        ("src.predict", [f"ckpt={last}", "text=1", "decode.no_repeat_ngram_size=-1"], "no_repeat_ngram_size"),
        ("src.predict", [f"ckpt={last}", "text=1", "decode.strategy=beam", "decode.no_repeat_ngram_size=2"], "beam"),
        ("src.predict", [f"ckpt=hf:{files['empty_dir']}", "text=1"], "config.json"),
        ("src.predict", [f"ckpt={last}", "text=1", "task=sort"], "task= is for ckpt=hf:"),
        ("src.eval", [f"ckpt={last}", "task=sort"], "task= is for ckpt=hf:"),
        ("src.eval", [f"ckpt={files['empty_dir']}"], "directory"),
        ("src.eval", [f"ckpt={last}", "split=train"], "split"),
        ("src.eval", [f"ckpt={last}", "batch_size=0"], "batch_size"),
        ("src.eval", [f"ckpt={last}", "torch_threads=-2"], "torch_threads"),
        ("src.eval", [f"ckpt={ckpts['malicious']}"], "refused"),
        ("src.eval", [f"ckpt={ckpts['truncated']}"], "ckpt"),
        ("src.eval", ["ckpt"], "parse"),
        ("src.eval", [f"ckpt={last}", "batch_sise=3"], "did you mean batch_size=3"),
        ("src.eval", [f"ckpt={last}", "foo=3"], f"{PYTHON} -m src.eval --cfg job"),
        ("src.eval", [f"ckpt={last}", "decode=beam"], "decode.strategy"),
        ("src.eval", [f"ckpt={last}", "~ckpt"], "~ckpt"),
        ("src.predict", [f"ckpt={last}", "text=1234", "decode.strategy=greedy,beam"], "runs no sweeps"),
        ("src.predict", [f"ckpt={last}", "+ckpt=y"], "drop the +"),
        ("src.predict", [f"ckpt={last}", "decode.beam_sise=3"], "did you mean decode.beam_size=3"),
        ("src.predict", [f"ckpt={last}", "~decode.beam_size"], "~decode.beam_size"),
        ("src.predict", [f"ckpt={last}"], "text is required"),
        ("src.predict", [f"ckpt={last}", "text=1234", "decode.beam_size=0"], "decode.beam_size"),
        ("src.predict", [f"ckpt={last}", "text=1234", "num_samples=0"], "num_samples"),
        ("src.predict", [f"ckpt={last}", "text=12x4"], "'x'"),
        ("src.predict", [f"ckpt={last}", "text=1234", "seed=-5"], "seed"),
        ("src.predict", [f"ckpt={ckpts['no_config']}", "text=1234"], "not a checkpoint written by src.run"),
        ("src.predict", [f"ckpt={last}", "text=1234", "decode.strategy=nucleus"], "decode.strategy"),
        ("src.predict", [f"ckpt={last}", "text=1234", f"input={files['digits.txt']}"], "exactly one"),
        ("src.predict", [f"ckpt={last}", "input=/nonexistent/lines.txt"], "file not found"),
        ("src.predict", [f"ckpt={last}", f"input={files['binary.txt']}"], "not valid UTF-8"),
        ("src.predict", [f"ckpt={last}", f"input={files['empty.txt']}"], "is empty"),
        ("src.predict", [f"ckpt={last}", f"input={files['odd_symbol.txt']}"], "odd_symbol.txt:2"),
        ("src.predict", [f"ckpt={last}", f"input={files['digits.txt']}", f"output={files['text.txt']}"], "exists"),
        ("src.predict", [f"ckpt={last}", f"input={files['digits.txt']}", "output=/nonexistent/out.txt"], "folder"),
        ("src.predict", [f"ckpt={last}", "text=1234", "output=out.txt"], "needs input"),
        ("src.predict", [f"ckpt={last}", f"input={files['digits.txt']}", "batch_size=0"], "batch_size"),
        (
            "src.predict",
            [f"ckpt={last}", f"input={files['digits.txt']}", "decode.strategy=sample", "num_samples=3"],
            "num_samples",
        ),
        ("src.eval", [f"ckpt={last}", "decode.strategy=sample"], "decode.strategy=sample"),
        # the accelerator: the one check src.analyze makes too, said the same way
        ("src.eval", [f"ckpt={last}", "accelerator=tpu"], "accelerator='tpu' is not known: choose cpu, gpu"),
        ("src.eval", [f"ckpt={last}", "accelerator=foo"], "accelerator='foo' is not known: choose cpu, gpu"),
        *([] if torch.cuda.is_available() else [("src.eval", [f"ckpt={last}", "accelerator=gpu"], "no CUDA GPU")]),
        *([] if torch.backends.mps.is_available() else [("src.eval", [f"ckpt={last}", "accelerator=mps"], "MPS")]),
        ("src.analyze", [f"ckpt={last}", "accelerator=tpu"], "accelerator='tpu' is not known: choose cpu, gpu"),
        ("src.predict", [f"ckpt={last}", "text=1", "accelerator=gpu"], "which runs on the CPU"),
        # a suggestion names only what works; a bare path is a forgotten ckpt=
        ("src.eval", [f"ckpt={last}", "seed=x"], f"{PYTHON} -m src.run would refuse seed=x too"),
        ("src.eval", [str(earlier)], f"{PYTHON} -m src.eval ckpt={earlier}"),
        # the head analysis's settings, and where it would write
        ("src.analyze", [f"ckpt={last}", "tolerance=2"], "tolerance=2.0 must be below 1"),
        ("src.analyze", [f"ckpt={earlier}", f"out={earlier}"], "is the analysed run's own directory"),
        ("src.eval", [f"ckpt={last}", "decode.beam_size=0"], "decode.beam_size"),
        # ablate.*: checked against the checkpoint's model, before its data are loaded
        ("src.eval", [f"ckpt={last}", "ablate.heads=[crosss]"], "site 'crosss' is not known"),
        ("src.eval", [f"ckpt={last}", "ablate.heads=[decoder_self:1]"], "layer 1 is out of range"),
        ("src.eval", [f"ckpt={last}", "ablate.heads=[cross:0:2]"], "head 2 is out of range"),
        ("src.eval", [f"ckpt={last}", "ablate.heads=[cross:0:1:1]"], "is not site:layer:head"),
        ("src.eval", [f"ckpt={last}", "ablate.method=median"], "ablate.method"),
        ("src.eval", [f"ckpt={last}", "ablate.method=mean", "ablate.reference_examples=0"], "reference_examples"),
        ("src.eval", [f"ckpt={last}", "ablate=everything"], "ablate=everything"),
        ("src.predict", [f"ckpt={last}", "text=1234", "ablate.heads=[crosss]"], "site 'crosss' is not known"),
        ("src.predict", [f"ckpt={last}", "text=1234", "ablate.sublayers=[encoder_ffn:1]"], "layer 1 is out of range"),
        ("src.predict", [f"ckpt={last}", "text=1234", "ablate.heads=[encoder_self:0:2]"], "head 2 is out of range"),
        ("src.predict", [f"ckpt={last}", "text=1234", "ablate.heads=[cross:x]"], "is not a number or *"),
        ("src.predict", [f"ckpt={last}", "text=1234", "ablate.method=median"], "ablate.method"),
        ("src.predict", [f"ckpt={last}", "text=1234", "ablate.heads=[encoder_ffn]"], "encoder_ffn has no heads"),
    ]


def translation(files, tgt: str) -> list[str]:
    tgt_path = files[tgt] if tgt in files else files["src.txt"].parent / tgt
    return [
        f"task.train_src={files['src.txt']}",
        f"task.train_tgt={tgt_path}",
        *(f"task.{split}_{side}={files['src.txt']}" for split in ("val", "test") for side in ("src", "tgt")),
    ]


@pytest.mark.slow  # tens of seconds: handed out with the end-to-end files, first
def test_every_bad_input_is_one_line_with_the_fix_and_no_earlier_run_changes(
    files, earlier_run, bad_checkpoints, capsys, tmp_path
):
    catalogue = cases(files, bad_checkpoints, earlier_run)
    assert len(catalogue) >= 60
    before = snapshot(earlier_run)
    failures = []
    for number, (module, args, word) in enumerate(catalogue):
        extra = [*TINY, f"hydra.run.dir={tmp_path / f'case{number}'}"] if module == "src.run" else []
        if any(a.startswith("hydra.run.dir=") for a in args) or any(a.startswith("task=") for a in args):
            extra = [a for a in extra if not a.startswith("task.")]  # the synthetic sizes do not fit other tasks
        if any(a.startswith("hydra.run.dir=") for a in args):
            extra = [a for a in extra if not a.startswith("hydra.run.dir=")]
        result = run_command(module, [*extra, *args], capsys)
        errors = [line for line in result.err.splitlines() if line.startswith("error:")]
        problem = None
        if result.code == 0:
            problem = "exit status 0"
        elif "Traceback" in result.err + result.out:
            problem = "a traceback"
        elif len(errors) != 1:
            problem = f"{len(errors)} error lines"
        elif word not in errors[0]:
            problem = f"the error does not name {word!r}"
        elif not FIX.search(errors[0].removeprefix("error:")):
            problem = "the error gives no fix"
        elif (tmp_path / f"case{number}").exists():
            problem = "the run directory was written before the refusal"
        if problem:
            failures.append(
                f"{module} {' '.join(args)}: {problem}\n    {(errors or result.err.splitlines() or [''])[-1]}"
            )
    assert not failures, f"{len(failures)} of {len(catalogue)} cases:\n" + "\n".join(failures)
    assert snapshot(earlier_run) == before, "an earlier run's files changed"


def test_legal_but_surprising_input_gets_one_warning_line(earlier_run, capsys, tmp_path):
    """Text longer than the model reads is cut (with a word), and resuming another run's directory into a new one
    says how to continue in place."""
    last = earlier_run / "checkpoints" / "last.ckpt"
    result = run_command("src.predict", [f"ckpt={last}", "text=" + "1234567890" * 3], capsys)
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert result.code == 0 and len(warnings) == 1, result.err
    assert "text is 30 tokens and the model reads at most 20: only the first 20 are used" in warnings[0]

    before = snapshot(earlier_run)
    resumed = tmp_path / "resumed"
    longer = [o for o in TINY if not o.startswith("trainer.max_steps=")] + ["trainer.max_steps=6"]
    args = [*longer, f"ckpt_path={earlier_run}", f"hydra.run.dir={resumed}"]
    result = run_command("src.run", args, capsys)
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert result.code == 0 and len(warnings) == 1, result.err
    assert f"add hydra.run.dir={earlier_run}" in warnings[0]
    assert snapshot(earlier_run) == before
    assert (resumed / "checkpoints" / "last.ckpt").is_file()


def test_a_logger_setting_the_chosen_logger_does_not_read_gets_one_warning(tmp_path, capsys):
    args = [*TINY, "logger.project=mine", f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_command("src.run", args, capsys)
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert result.code == 0 and len(warnings) == 1, result.err
    assert "logger.project=mine has no effect with logger=tensorboard" in warnings[0]


def test_analysis_settings_without_analyze_after_fit_get_one_warning(tmp_path, capsys):
    """analysis.* is read only with analyze_after_fit=true: given without it, the run trains and says, once, that
    nothing reads them (and writes no analysis)."""
    args = [*TINY, "analysis.prune_step=0.5", "analysis.split=test", f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_command("src.run", args, capsys)
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert result.code == 0 and len(warnings) == 1, result.err
    assert "analysis.split=test, analysis.prune_step=0.5 have no effect without analyze_after_fit=true" in warnings[0]
    assert not (tmp_path / "run" / "analysis").exists()


def test_training_with_every_attention_head_off_gets_one_warning(tmp_path, capsys):
    """Legal (a baseline with no attention at all), but no position can read another: said once, and the run
    trains with the heads off."""
    every_head = ["ablate.heads=[encoder_self,decoder_self]", "ablate.sublayers=[cross]"]
    result = run_command("src.run", [*TINY, *every_head, f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert result.code == 0 and len(warnings) == 1, result.err
    assert "switches off every attention head of the model (all 6, in encoder_self, decoder_self, cross)" in warnings[0]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_settings_the_chosen_options_do_not_read_get_one_warning_each(tmp_path, capsys):
    """The issue's example, min_lr_ratio beside adam_noam's endless schedule, and a sweep's own setting in a single
    run, typed at its default (typed is given): the run trains, and says once for each that nothing reads it."""
    unread = ["optimizer=adam_noam", "optimizer.min_lr_ratio=0.1", "sweep_catch_errors=true"]
    result = run_command("src.run", [*TINY, *unread, f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert result.code == 0 and warnings == [
        "warning: optimizer.min_lr_ratio=0.1 has no effect with optimizer=adam_noam (its schedule has no end): only "
        "adamw_cosine reads it",
        "warning: sweep_catch_errors=true has no effect in a single run: only a sweep (-m) reads it",
    ], result.err
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
