"""src/training/report.py: what the commands print besides their results."""

from __future__ import annotations

import warnings

from src.model import ModelWarning, build_model, masks
from src.training.report import show_model_warnings_as_lines
from tests.model.test_transformer import small_config, small_mask


def test_the_model_s_warnings_are_one_warning_line_each_and_others_stay_python_s(capsys, monkeypatch):
    """mask=none's leak is a legal ablation: the model package warns (ModelWarning) and a command says it as one
    `warning:` line, as it says every warning; a warning of anyone else's keeps Python's form."""
    monkeypatch.setattr(masks, "_warned", set())  # said once per process: maybe already, by another test
    passed_on = []
    with warnings.catch_warnings():  # the hooks set here are undone when the block ends
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *rest, **kw: passed_on.append(str(message))  # Python's, standing in
        show_model_warnings_as_lines()
        build_model(small_config(mask=small_mask("none")))
        warnings.warn("another library's", UserWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: mask=none: the decoder has no look-ahead mask"), err
    assert passed_on == ["another library's"]
    assert issubclass(ModelWarning, UserWarning)  # filters written for UserWarning still see it


def test_a_run_of_few_batches_an_epoch_is_logged_every_n_steps_without_lightnings_warning(tmp_path):
    """Lightning warns when an epoch has fewer batches than log_every_n_steps, but counts logging steps across
    epochs: a run of 2 batches an epoch is logged after its 10th and 20th batches all the same, so the warning is not
    said. A process of its own: the warning's filter is the command's, not pytest's."""
    import subprocess
    import sys

    from src.dashboard import read_events
    from tests.conftest import ROOT

    text = tmp_path / "story.txt"
    text.write_text("the cat sat on the mat. " * 12)  # 288 characters: 2 batches of 8 windows of 16
    command = [
        sys.executable, "-m", "src.run", "task=char_lm", f"task.path={text}", "task.block_size=16", "batch_size=8",
        "trainer.max_steps=20", "trainer.val_check_interval=10", "model.d_model=16", "model.d_ff=32",
        "dashboard.attention_maps=false", "torch_threads=1", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "logging interval" not in result.stderr
    assert [step for step, _ in read_events(tmp_path / "run").scalars["train/loss"]] == [10, 20]  # steps 10, 20
