"""Reading checkpoints: nothing in a checkpoint file may run code; `ckpt=` names a checkpoint the same way in every
command (a file, a run directory, its checkpoints/ folder), and what names none is one line with the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from src.model import ConfigError
from src.training.checkpoint import read_checkpoint


class _Payload:
    """What an attacker puts in a checkpoint: unpickling it calls exec, which writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",)


def malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "shared.ckpt"
    # Shaped like one of ours, so only the payload can be the reason it is refused.
    torch.save(
        {"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"model_config": {}, "x": _Payload(marker)}}, path
    )
    return path, marker


def test_the_payload_is_real(tmp_path):
    """The control: an unsafe load does run it (so the next test could fail)."""
    path, marker = malicious_checkpoint(tmp_path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "payload ran"


def test_a_malicious_checkpoint_is_refused_and_never_runs(tmp_path):
    path, marker = malicious_checkpoint(tmp_path)
    with pytest.raises(ConfigError) as error:
        read_checkpoint(str(path))
    message = str(error.value)
    assert "\n" not in message
    assert "refused" in message and "'exec'" in message and "could run code" in message
    assert not marker.exists()


def test_a_missing_or_directory_checkpoint_is_one_line(tmp_path):
    from src.training.checkpoint import check_checkpoint_file

    with pytest.raises(ConfigError, match="ckpt_path=/nonexistent/last.ckpt does not exist"):
        check_checkpoint_file("/nonexistent/last.ckpt", "ckpt_path")
    with pytest.raises(ConfigError, match="is a directory: give a .ckpt file"):
        check_checkpoint_file(str(tmp_path), "ckpt")


def test_checkpoints_from_before_mask_schemes_read_their_mask_settings():
    from src.training.checkpoint import _with_mask_scheme

    old = {"d_model": 16, "mask_type": "window", "window": 3, "prefix_len": 0}
    assert _with_mask_scheme(old) == {"d_model": 16, "mask": {"type": "window", "window": 3}}
    assert _with_mask_scheme({"mask_type": "standard", "window": 4, "prefix_len": 0}) == {"mask": {"type": "standard"}}
    today = {"d_model": 16, "mask": {"type": "prefix", "prefix_len": 2}}
    assert _with_mask_scheme(today) is today


def test_resuming_with_other_heads_or_sublayers_ablated_is_refused():
    """The heads a run trains without are part of the model it trains: a resume must keep them (a checkpoint from
    before ablations trained with none off)."""
    from src.model import ConfigError
    from src.training.checkpoint import check_resumable_settings

    def checkpoint(ablate):
        config = {"task": {"name": "copy"}, "seed": 0}
        if ablate is not None:
            config["ablate"] = ablate
        return {"hyper_parameters": {"config": config}}

    same = {"task": {"name": "copy"}, "seed": 0, "ablate": {"heads": ["cross:0:1"], "sublayers": []}}
    check_resumable_settings(checkpoint({"heads": ["cross:0:1"], "sublayers": []}), "copy", config=same)
    check_resumable_settings(checkpoint(None), "copy", config={**same, "ablate": {"heads": [], "sublayers": []}})
    with pytest.raises(ConfigError, match=r"ablate.heads=\['cross:0:1'\], this run has ablate.heads=\[\]"):
        check_resumable_settings(checkpoint({"heads": ["cross:0:1"]}), "copy", config={**same, "ablate": {}})
    with pytest.raises(ConfigError, match="ablate.heads"):
        check_resumable_settings(checkpoint(None), "copy", config=same)
    with pytest.raises(ConfigError, match="ablate.sublayers"):
        other = {**same, "ablate": {"heads": ["cross:0:1"], "sublayers": ["decoder_ffn:0"]}}
        check_resumable_settings(checkpoint({"heads": ["cross:0:1"]}), "copy", config=other)


# --- ckpt=: one argument, read the same way by every command (locate_checkpoint) ----------------------------------


def fake_run(
    directory: Path, status: str | None = "completed", checkpoints: tuple[str, ...] = ("best", "last")
) -> Path:
    """A run directory as src.run leaves it, as far as locating its checkpoint looks: run.json's status (None: no
    run.json) and checkpoint files (their content is read elsewhere; here only their names and ages count)."""
    import json
    import os

    directory.mkdir(parents=True)
    if status is not None:
        (directory / "run.json").write_text(json.dumps({"status": status, "error": f"the run {status}: see run.log"}))
    for age, name in enumerate(checkpoints):
        (directory / "checkpoints").mkdir(exist_ok=True)
        path = directory / "checkpoints" / f"{name}.ckpt"
        path.write_bytes(b"")
        os.utime(path, (1_000_000 + age, 1_000_000 + age))  # written in the order given: the last is the newest
    return directory


def test_a_run_directory_stands_for_its_best_checkpoint_else_its_newest(tmp_path):
    """The example of issue 24 item 3: `ckpt=<run directory>` names a checkpoint, for src.eval and src.predict as for
    src.analyze; `<run>/checkpoints` names the same one, and a file is itself."""
    from src.training.checkpoint import locate_checkpoint

    run = fake_run(tmp_path / "run")
    assert locate_checkpoint(str(run)) == (run / "checkpoints" / "best.ckpt", run)
    assert locate_checkpoint(str(run / "checkpoints")) == (run / "checkpoints" / "best.ckpt", run)
    assert locate_checkpoint(str(run / "checkpoints" / "last.ckpt")) == (run / "checkpoints" / "last.ckpt", None)
    without_best = fake_run(tmp_path / "no_best", checkpoints=("step-4", "last"))
    assert locate_checkpoint(str(without_best)) == (without_best / "checkpoints" / "last.ckpt", without_best)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: fake_run(root / "x", "failed", checkpoints=()), "is a run that saved no checkpoint: it failed"),
        (lambda root: fake_run(root / "x", "diverged", checkpoints=()), "it diverged (the run diverged: see run.log)"),
        (lambda root: (root / "x").mkdir() or root / "x", "is a directory that is neither a run"),
        (lambda root: root / "rn" / "checkpoints" / "best.ckpt", "did you mean ckpt="),
        (lambda root: root / "nowhere" / "best.ckpt", "does not exist"),
    ],
    ids=["failed", "diverged", "no run", "typo", "missing"],
)
def test_what_names_no_checkpoint_is_one_line_with_the_fix(tmp_path, make, message):
    from src.training.checkpoint import locate_checkpoint

    fake_run(tmp_path / "run")
    with pytest.raises(ConfigError) as error:
        locate_checkpoint(str(make(tmp_path)))
    line = str(error.value)
    assert "\n" not in line and message in line, line
    assert re.search(r"\b(give|did you mean|fix|run it again)\b", line), line


def test_a_typo_is_answered_with_the_path_meant(tmp_path):
    from src.training.checkpoint import locate_checkpoint

    run = fake_run(tmp_path / "2026-01-01" / "12-00-00")
    with pytest.raises(ConfigError, match=re.escape(f"did you mean ckpt={run}?")):
        locate_checkpoint(str(tmp_path / "2026-01-0" / "12-00-00"))


def test_a_sweep_or_a_folder_of_runs_names_one_of_its_runs_that_saved_a_checkpoint(tmp_path):
    """src.eval and src.predict take one run: given a sweep, or a day's folder of runs, the line names a run to give
    instead, one that has a checkpoint (not a failed job); a sweep is also pointed to src.analyze."""
    from src.training.checkpoint import locate_checkpoint

    for folder, sweep in (("sweep", True), ("day", False)):
        fake_run(tmp_path / folder / "0_seed:0", "failed", checkpoints=())
        good = fake_run(tmp_path / folder / "1_seed:1")
        if sweep:
            for job in (tmp_path / folder).iterdir():
                (job / ".hydra").mkdir()
                (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: RunMode.MULTIRUN\n")
        with pytest.raises(ConfigError) as error:
            locate_checkpoint(str(tmp_path / folder))
        line = str(error.value)
        assert f"e.g. ckpt={good}" in line and ("src.analyze" in line) == sweep, line
        assert ("is a sweep directory" if sweep else "is a folder of runs") in line, line


def test_resuming_a_folder_of_runs_names_one_of_them_as_the_other_commands_do(tmp_path):
    from src.training.checkpoint import resolve_resume_checkpoint

    for name in ("12-00-00", "13-00-00"):
        (tmp_path / "day" / name / "checkpoints").mkdir(parents=True)
        torch.save({"global_step": 1}, tmp_path / "day" / name / "checkpoints" / "last.ckpt")
    with pytest.raises(
        ConfigError, match=r"is a folder of runs, not a run: give one of them, e\.g\. ckpt_path=.*12-00-00"
    ):
        resolve_resume_checkpoint(str(tmp_path / "day"), tmp_path / "new")


def test_ckpt_path_last_reads_last_ckpt_when_best_ckpt_was_written_at_the_same_moment(tmp_path):
    import os

    from src.training.checkpoint import newest_checkpoint

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name in ("last.ckpt", "best.ckpt"):  # best written after last, within the same millisecond
        (checkpoints / name).write_bytes(b"")
        os.utime(checkpoints / name, ns=(1_000_000_000_000, 1_000_000_000_000))
    assert newest_checkpoint(tmp_path) == checkpoints / "last.ckpt"
    os.utime(checkpoints / "best.ckpt", ns=(1_000_002_000_000, 1_000_002_000_000))  # a later step's best
    assert newest_checkpoint(tmp_path) == checkpoints / "best.ckpt"
