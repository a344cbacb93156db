"""src.eval (and src.predict, src.analyze) speak one language (issue 24, items 2 and 3), on tiny runs trained here:

- `ckpt=<run directory>` is read the same way by every command: its best checkpoint, said in one line on stderr
  (`using <run>/checkpoints/best.ckpt (the best val/..., <value> at step <n>)`), a warning when the run did not
  complete, and one `error:` line with the fix for what names no checkpoint;
- a translation model's evaluation prints one BLEU per split, sacreBLEU on the raw references, each line saying
  which BLEU, split, sentence count, decoding and signature; the run's own summary and metrics.json keep training's
  quick val/bleu for validation only, and src.analyze scores (and names) the same sacreBLEU that src.eval prints.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

from src.training.checkpoint import read_checkpoint
from tests.conftest import PYTHON, run_in_process
from tests.e2e.conftest import SMALL_SYNTHETIC, TINY, parallel_lines

BEAM = ["decode.strategy=beam", "decode.beam_size=3"]


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reverse") / "run"
    code, _, err = run_in_process("src.run", "task=reverse", *SMALL_SYNTHETIC, *TINY, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    return run_dir


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, data folder) of a tiny German-English run, trained with test_after_fit (test/sacrebleu)."""
    root = tmp_path_factory.mktemp("translation")
    for split, n, seed in (("train", 120, 0), ("val", 16, 1), ("test", 16, 2)):
        src, tgt = parallel_lines(n, seed)
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(tgt) + "\n")
    files = [
        f"task.{split}_{side}={root / f'{split}.{lang}'}"
        for split in ("train", "val", "test")
        for side, lang in (("src", "de"), ("tgt", "en"))
    ]
    run_dir = root / "run"
    # Long enough for BLEU above 0, so the numbers compared below are not all zeros.
    longer = [
        o for o in TINY if not o.startswith(("trainer.max_steps=", "trainer.val_check_interval=", "model.d_model="))
    ]
    args = ["task=translation", *files, "task.vocab_size=120", "task.max_len=16", *longer, "model.d_model=32"]
    args += ["trainer.max_steps=60", "trainer.val_check_interval=30", "test_after_fit=true"]
    code, _, err = run_in_process("src.run", *args, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    return run_dir, root


def best_line(run_dir: Path, monitor: str) -> str:
    """The line a command prints for ckpt=<run_dir>, from the run's own record: best.ckpt's step, and the best
    value of the monitored metric in the run's validation history (metrics.json)."""
    best = run_dir / "checkpoints" / "best.ckpt"
    step = read_checkpoint(str(best))["global_step"]
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    value = max(entry[monitor] for entry in history)
    return f"using {best} (the best {monitor}, {value:.4g} at step {step})"


# --- item 3: the same ckpt= in every command ----------------------------------------------------------------------


def test_eval_and_predict_take_a_run_directory_and_say_which_checkpoint_they_used(reverse_run):
    """The example: `src.eval ckpt=<run directory>` and `src.predict` refused it; now each reads the run's best
    checkpoint, says so in one line, and answers as with that file named."""
    best = reverse_run / "checkpoints" / "best.ckpt"
    said = best_line(reverse_run, "val/exact_match")

    code, out, err = run_in_process("src.eval", f"ckpt={reverse_run}")
    assert code == 0, err
    assert said in err.splitlines()
    assert f"checkpoint: {best}" in out.splitlines()
    _, out_of_file, err_of_file = run_in_process("src.eval", f"ckpt={best}")
    assert out == out_of_file and "using" not in err_of_file  # a file named is itself: nothing to say

    code, out, err = run_in_process("src.predict", f"ckpt={reverse_run}", "text=1234")
    assert code == 0, err
    assert said in err.splitlines() and out.strip()  # stdout: only the prediction
    assert out == run_in_process("src.predict", f"ckpt={best}", "text=1234")[1]

    code, out, err = run_in_process("src.predict", f"ckpt={reverse_run / 'checkpoints'}", "text=1234")
    assert code == 0 and said in err.splitlines(), err

    # The line comes once the model is loaded: a command refused before any work prints its error line alone.
    code, out, err = run_in_process("src.eval", f"ckpt={reverse_run}", "ablate.heads=[cross:9:0]")
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ablate.heads"), err


def test_a_run_that_did_not_complete_is_used_with_a_warning(reverse_run, tmp_path):
    """An interrupted (or failed, diverged) run's best checkpoint is still a trained model: used, and said in a
    warning, whether the run directory or one of its files is named."""
    copy = tmp_path / "interrupted"
    shutil.copytree(reverse_run, copy, ignore=shutil.ignore_patterns("analysis*"))
    record = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))

    code, out, err = run_in_process("src.eval", f"ckpt={copy}")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    expected = best_line(copy, "val/exact_match")
    assert warnings == [f"warning: {copy} was interrupted (see its run.json): {expected}"]

    code, out, err = run_in_process("src.predict", f"ckpt={copy / 'checkpoints' / 'last.ckpt'}", "text=1234")
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        f"warning: {copy} was interrupted (see its run.json): using last.ckpt all the same"
    ]


def sweep_of(run: Path, root: Path) -> Path:
    """A sweep directory of two jobs (the run copied, marked as Hydra marks multirun jobs); job 0 failed."""
    sweep = root / "sweep"
    for job, status in (("0_seed:0", "failed"), ("1_seed:1", "completed")):
        shutil.copytree(
            run, sweep / job, ignore=shutil.ignore_patterns("analysis*", "checkpoints" if job[0] == "0" else "x")
        )
        (sweep / job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: RunMode.MULTIRUN\n")
        record = json.loads((sweep / job / "run.json").read_text())
        (sweep / job / "run.json").write_text(json.dumps({**record, "status": status, "error": "bad line 3"}))
    return sweep


@pytest.mark.parametrize("command", ["src.eval", "src.predict"])
def test_what_names_no_checkpoint_is_refused_in_one_line_with_the_fix(reverse_run, tmp_path, command):
    """A sweep directory (eval and predict read one model), a failed run that saved no checkpoint, a mistyped
    path: one `error:` line each, before any work, and nothing on stdout."""
    sweep = sweep_of(reverse_run, tmp_path)
    typo = reverse_run.parent / (reverse_run.name[:-1] + "x")  # run -> rux
    cases = [
        (sweep, f"is a sweep directory: give one of its runs, e.g. ckpt={sweep / '1_seed:1'} (src.analyze"),
        (sweep / "0_seed:0", "is a run that saved no checkpoint: it failed (bad line 3)"),
        (typo, f"does not exist (looked at {typo}): did you mean ckpt={reverse_run}?"),
    ]
    extra = ["text=1234"] if command == "src.predict" else []
    for ckpt, message in cases:
        code, out, err = run_in_process(command, f"ckpt={ckpt}", *extra)
        lines = err.strip().splitlines()
        assert code == 2 and out == "", (ckpt, out, err)
        assert len(lines) == 1 and lines[0].startswith(f"error: ckpt={ckpt} ") and message in lines[0], err


@pytest.mark.parametrize("accelerator", ["tpu", "foo", "gpu", "mps"])
def test_eval_refuses_an_accelerator_in_the_line_analyze_says_it_in(reverse_run, tmp_path, accelerator):
    """One check for the commands that read a trained model (src/cli/validation.py device_for): tpu was a traceback
    in src.eval, gpu without a GPU a line without a fix, foo and mps Lightning's sentences."""
    import torch

    if accelerator == "gpu" and torch.cuda.is_available() or accelerator == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"this machine has what accelerator={accelerator} asks for")
    lines = {}
    for command, extra in (("src.eval", []), ("src.analyze", [f"out={tmp_path / 'analysis'}"])):
        code, out, err = run_in_process(command, f"ckpt={reverse_run}", f"accelerator={accelerator}", *extra)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
        lines[command] = errors[0]
    assert lines["src.eval"] == lines["src.analyze"]
    assert lines["src.eval"].startswith(("error: accelerator='", f"error: accelerator={accelerator}: "))
    assert lines["src.eval"].endswith(("use accelerator=cpu", "choose cpu, gpu, mps or auto")), lines["src.eval"]


def test_a_run_directory_given_without_ckpt_is_answered_with_ckpt(reverse_run):
    code, out, err = run_in_process("src.eval", str(reverse_run))
    assert code == 2 and err.strip() == (
        f"error: {reverse_run} is a path given without a setting's name: give it as the checkpoint to read, "
        f"{PYTHON} -m src.eval ckpt={reverse_run}"
    ), err


def test_the_commands_a_run_prints_take_its_directory_and_work(reverse_run, tmp_path):
    """The end of a run names the next commands in one form, `ckpt=<run directory>`, and each works as printed."""
    import shlex

    lines = (reverse_run / "run.log").read_text().splitlines()
    commands = {
        line.split(":")[0]: shlex.split(line.split(":", 1)[1])
        for line in lines
        if line.startswith(("evaluate:", "analyse heads:"))
    }
    assert set(commands) == {"evaluate", "analyse heads"}
    assert [argv[1:] for argv in commands.values()] == [
        ["-m", "src.eval", f"ckpt={reverse_run}"],
        ["-m", "src.analyze", f"ckpt={reverse_run}"],
    ]
    code, out, err = run_in_process("src.eval", *commands["evaluate"][3:])
    assert code == 0 and "test/exact_match" in out, err
    copy = tmp_path / "run"  # analysed in a copy: the run stays as the other tests expect it
    shutil.copytree(reverse_run, copy)
    code, out, err = run_in_process("src.analyze", f"ckpt={copy}", "single_heads=false", "keep_one=false")
    assert code == 0 and (copy / "analysis" / "report.md").is_file(), err
    assert best_line(copy, "val/exact_match") in err.splitlines()


# --- item 2: one metric, one name ---------------------------------------------------------------------------------


def bleu_lines(out: str) -> dict[str, str]:
    """The printed lines whose metric is a BLEU of any kind, by tag."""
    lines = [line.strip() for line in out.splitlines()]
    return {line.split(":", 1)[0]: line for line in lines if re.match(r"[\w/]*bleu[\w]*:", line, re.IGNORECASE)}


@pytest.mark.parametrize(
    "split, decoding, args",
    [("val", "greedy decoding", []), ("test", "beam search (3 beams, length penalty 0.6)", BEAM)],
)
def test_eval_of_a_translation_model_prints_one_bleu_saying_what_it_is(
    translation_run, tmp_path, split, decoding, args
):
    """The example: `src.eval` printed `val/bleu 4.4378` beside `val/sacrebleu 4.2781`. Now the split has one BLEU,
    sacreBLEU of its translations against the raw references (what src.predict translates, scored by sacrebleu
    here), its line saying the split, the sentence count, the decoding and the signature."""
    run_dir, data = translation_run
    code, out, err = run_in_process("src.eval", f"ckpt={run_dir}", f"split={split}", *args)
    assert code == 0, err
    printed = bleu_lines(out)
    assert set(printed) == {f"{split}/sacrebleu", f"{split}/sacrebleu_lowercase"}, out
    cased = printed[f"{split}/sacrebleu"]
    assert f"(sacreBLEU of 16 {split} sentences, {decoding}, against the raw references, cased; signature " in cased
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in cased
    assert (
        f"sacreBLEU of 16 {split} sentences, {decoding}, against the raw references, lowercased)"
        in (printed[f"{split}/sacrebleu_lowercase"])
    )

    hypotheses = tmp_path / "hypotheses.en"
    code, _, err = run_in_process(
        "src.predict", f"ckpt={run_dir}", f"input={data / f'{split}.de'}", f"output={hypotheses}", *args
    )
    assert code == 0, err
    references = (data / f"{split}.en").read_text().splitlines()
    expected = BLEU().corpus_score(hypotheses.read_text().splitlines(), [references]).score
    assert expected > 0.0  # the model translates something: the comparison is between real numbers
    assert float(cased.split(": ")[1].split()[0]) == pytest.approx(expected, abs=1e-4)


def test_a_translation_run_keeps_one_bleu_per_split_and_says_which(translation_run):
    """The run's own record: validation's quick BLEU (val/bleu, which picks best.ckpt) and the test split's
    sacreBLEU, never a second BLEU of the test split; the summary says what val/bleu is."""
    run_dir, _ = translation_run
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    assert sorted(tag for tag in final if "bleu" in tag) == ["test/sacrebleu", "test/sacrebleu_lowercase", "val/bleu"]
    summary = bleu_lines((run_dir / "run.log").read_text())
    assert "training's quick figure" in summary["val/bleu"] and "<- main metric" in summary["val/bleu"]
    assert "test/bleu" not in summary


def test_the_analysis_scores_and_names_the_sacrebleu_src_eval_prints(translation_run, tmp_path):
    """src.analyze's main metric on translation is `sacrebleu`, the number `src.eval split=val
    decode.strategy=greedy` prints as val/sacrebleu (its report says which, summary.json carries the name)."""
    run_dir, _ = translation_run
    code, out, err = run_in_process("src.eval", f"ckpt={run_dir}", "split=val", "decode.strategy=greedy")
    assert code == 0, err
    printed = float(bleu_lines(out)["val/sacrebleu"].split(": ")[1].split()[0])
    analysis = tmp_path / "analysis"
    code, _, err = run_in_process(
        "src.analyze", f"ckpt={run_dir}", f"out={analysis}", "single_heads=false", "keep_one=false", "prune_step=0.5"
    )
    assert code == 0, err
    summary = json.loads((analysis / "summary.json").read_text())
    assert summary["metric"] == "sacrebleu" and summary["figures"]["baseline"] == pytest.approx(printed, abs=1e-4)
    assert summary["metric_description"].startswith("sacreBLEU of greedy translations against the raw reference")
    assert summary["metric_description"] in (analysis / "report.md").read_text()  # the report says which metric
