"""`ablate.*` through the real commands: a run trained without a head records it and its checkpoint keeps it; src.eval
and src.predict ablate on top of a checkpoint without changing it, exactly as zeroing the head's slice of W^O would;
a sweep over ablations reports each as a row; a bad spec stops src.run before it writes a directory."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from .conftest import TINY, check, run_here

pytestmark = pytest.mark.slow

# Four steps, one validation at the end: seconds per run.
FOUR_STEPS = [
    *TINY,
    "task.train_size=64",
    "task.val_size=16",
    "task.test_size=16",
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
]
W_O = "model.encoder.layers.0.self_attn.out_proj.weight"  # encoder layer 0's W^O: (d_model, heads * Dh)


def sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def printed_metrics(result: subprocess.CompletedProcess) -> dict[str, float]:
    """src.eval's `name: value` lines."""
    return {m[1]: float(m[2]) for m in re.finditer(r"^\s*(\S+/\S+): (-?[\d.]+)", result.stdout, re.MULTILINE)}


def ablated_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("ablated:")]


@pytest.fixture(scope="module")
def trained_without_a_head(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ablated") / "run"
    check(run_here("src.run", *FOUR_STEPS, "ablate.heads=[encoder_self:0:1]", f"hydra.run.dir={run_dir}"))
    return run_dir


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("plain") / "run"
    check(run_here("src.run", *FOUR_STEPS, f"hydra.run.dir={run_dir}"))
    return run_dir


def test_a_run_trained_without_a_head_records_it_and_eval_keeps_it(trained_without_a_head):
    run_dir = trained_without_a_head
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert config["ablate"]["heads"] == ["encoder_self:0:1"]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["config"]["ablate"]["heads"] == ["encoder_self:0:1"]
    assert "ablated: encoder_self:0:1; zero ablation" in (run_dir / "run.log").read_text()  # the start-up tree

    result = check(run_here("src.eval", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", "split=val"))
    assert ablated_lines(result.stdout) == ["ablated: encoder_self:0:1; zero ablation (as the checkpoint was trained)"]
    # The checkpoint is scored as it was at its validation: with the head off (one validation, at its last step).
    final = yaml.safe_load((run_dir / "metrics.json").read_text())["final"]
    assert printed_metrics(result)["val/loss"] == pytest.approx(final["val/loss"], abs=1e-4)


def test_eval_ablates_on_top_of_the_checkpoint_without_changing_its_file(trained_without_a_head):
    ckpt = trained_without_a_head / "checkpoints" / "last.ckpt"
    before = sha(ckpt)
    as_trained = printed_metrics(check(run_here("src.eval", f"ckpt={ckpt}")))
    result = check(run_here("src.eval", f"ckpt={ckpt}", "ablate.heads=[cross:0:0]"))
    assert ablated_lines(result.stdout) == [
        "ablated: encoder_self:0:1, cross:0:0; zero ablation (trained without: encoder_self:0:1; zero ablation)"
    ]
    ablated = printed_metrics(result)
    assert ablated.keys() == as_trained.keys() and ablated["test/loss"] != as_trained["test/loss"]
    result = check(run_here("src.eval", f"ckpt={ckpt}", "ablate=cross", "ablate.method=mean"))
    assert ablated_lines(result.stdout)[0].startswith("ablated: encoder_self:0:1, cross:0 (all 2 heads); mean")
    assert printed_metrics(result)["test/loss"] != as_trained["test/loss"]
    assert sha(ckpt) == before


def test_predict_with_a_head_ablated_is_the_checkpoint_with_that_heads_slice_of_w_o_zeroed(plain_run, tmp_path):
    ckpt = plain_run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    weight = checkpoint["state_dict"][W_O]
    dh = weight.shape[1] // 2  # model.heads=2
    weight[:, dh : 2 * dh] = 0.0  # head 1's input columns of W^O
    zeroed = tmp_path / "zeroed.ckpt"  # outside the run: its vocabularies are found through the recorded run_dir
    torch.save(checkpoint, zeroed)
    lines = tmp_path / "lines.txt"
    lines.write_text("1234\n98765\n5\n13579\n2468024680\n")

    def predict(ckpt_path: Path, *args: str) -> tuple[list[str], str]:
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}.txt"
        result = check(run_here("src.predict", f"ckpt={ckpt_path}", f"input={lines}", f"output={out}", *args))
        return out.read_text().splitlines(), result.stderr

    ablated, said = predict(ckpt, "ablate.heads=[encoder_self:0:1]")
    assert ablated_lines(said) == ["ablated: encoder_self:0:1; zero ablation"]
    by_hand, said = predict(zeroed)
    assert not ablated_lines(said)
    assert ablated == by_hand
    plain, _ = predict(ckpt)
    assert plain != ablated, "the head changed no output: the comparison proves nothing"


def test_a_sweep_over_ablations_reports_each_as_a_row(tmp_path):
    sweep = tmp_path / "heads"
    check(
        run_here(
            "src.run", "-m", *FOUR_STEPS, "ablate.heads=[],[encoder_self:0:1]", "seed=0,1", f"hydra.sweep.dir={sweep}"
        )
    )
    report = (sweep / "report.md").read_text()
    assert "| ablate.heads |" in report
    rows = [line for line in report.splitlines() if line.startswith("| `[")]
    assert [row.split(" | ")[0] for row in rows] == ["| `[]`", "| `[encoder_self:0:1]`"]
    assert all("(2)" in row for row in rows)  # the two seeds pooled per configuration
    assert "baseline (`ablate.heads=[]`)" in report

    presets = tmp_path / "presets"
    check(run_here("src.run", "-m", *FOUR_STEPS, "ablate=none,cross", f"hydra.sweep.dir={presets}"))
    report = (presets / "report.md").read_text()
    assert "| ablate |" in report and "| none |" in report and "| cross |" in report
    (cross_job,) = presets.glob("*_ablate:cross")
    assert "ablated: cross:0 (all 2 heads); zero ablation" in (cross_job / "run.log").read_text()


@pytest.mark.parametrize(
    "spec, named",
    [("ablate.heads=[cross:0:7]", "head 7 is out of range"), ("ablate.method=mean", "needs a trained model")],
)
def test_a_bad_ablation_stops_src_run_before_it_writes_a_directory(tmp_path, spec, named):
    run_dir = tmp_path / "run"
    result = run_here("src.run", *FOUR_STEPS, spec, f"hydra.run.dir={run_dir}")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and named in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not run_dir.exists()


REPEATED = (
    "warning: ablate.heads names cross:0:1 more than once (cross:0:1 is given twice): each head is switched off once "
    "however often it is named: name each head once, or check whether another was meant"
)


@pytest.mark.parametrize("command", ["src.run", "src.eval", "src.predict", "src.analyze"])
def test_a_head_named_twice_gets_one_warning_in_every_command(plain_run, tmp_path, command):
    """`ablate.heads=[cross:1:2,cross:1:2]` is legal (the head is switched off once) but may hide a typo for another
    head: each command says so in one warning line, once (src.run checks its settings before and as it runs)."""
    twice = "ablate.heads=[cross:0:1,cross:0:1]"
    args = {
        "src.run": [*FOUR_STEPS, twice, f"hydra.run.dir={tmp_path / 'run'}"],
        "src.eval": [f"ckpt={plain_run}", twice],
        "src.predict": [f"ckpt={plain_run}", "text=1234", twice],
        "src.analyze": [f"ckpt={plain_run}", twice, "single_heads=false", "keep_one=false", f"out={tmp_path / 'a'}"],
    }[command]
    result = check(run_here(command, *args))
    repeated = [line for line in result.stderr.splitlines() if "more than once" in line]
    assert repeated == [REPEATED], result.stderr
