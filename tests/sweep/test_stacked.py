"""src/sweep/stacked.py: which jobs of a sweep form a stacked group, and which groups cannot be stacked (each
reason is the one line of the launcher's warning)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from src.cli.command_line import CONF_DIR
from src.cli.schema import register_configs
from src.sweep.stacked import (
    group_state_path,
    resume_command,
    resume_plan,
    stack_groups,
    why_not_stacked,
    without_seed,
)


def composed(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return GlobalHydra.instance().hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN)


def test_jobs_that_differ_only_in_seed_form_one_group_in_sweep_order():
    jobs = [
        ["model.heads=1", "seed=0"],
        ["model.heads=1", "seed=1"],
        ["model.heads=2", "seed=0"],
        ["model.heads=2", "seed=1"],
        ["model.heads=1", "+seed=2"],
    ]
    assert stack_groups(jobs) == [[0, 1, 4], [2, 3]]
    assert without_seed(["seed=3", "task=sort", "seeds_note=x"]) == ("task=sort", "seeds_note=x")
    assert stack_groups([["task=sort"], ["task=reverse"]]) == [[0], [1]]  # no seed axis: nothing to stack


def test_the_default_experiment_can_be_stacked_on_a_cpu_and_on_one_gpu():
    assert why_not_stacked(composed()) is None
    assert why_not_stacked(composed("trainer=gpu")) is None
    assert why_not_stacked(composed("ckpt_path=last")) is None  # a stacked sweep resumed in its own directory
    assert why_not_stacked(composed("checkpoint.every_n_train_steps=10")) is None
    assert why_not_stacked(composed("+trainer.gradient_clip_algorithm=Norm")) is None  # Lightning reads any case


@pytest.mark.parametrize(
    "override, reason",
    [
        ("trainer.devices=2", "trainer.devices=2 (a stacked group trains on one device)"),
        ("trainer.strategy=ddp", "trainer.strategy=ddp (a stacked group trains in one process)"),
        ("compile=true", "compile=true"),
        ("trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches is not 1"),
        ("+trainer.gradient_clip_algorithm=value", "trainer.gradient_clip_algorithm=value (members clip by norm)"),
        ("+callbacks.StochasticWeightAveraging.swa_lrs=0.01", "callbacks.StochasticWeightAveraging (a stacked group"),
        ("ckpt_path=outputs/x", "ckpt_path=outputs/x (a stacked group resumes only its own state"),
    ],
)
def test_a_group_that_cannot_be_stacked_is_named_with_its_reason(override, reason):
    assert why_not_stacked(composed(override)).startswith(reason)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "true"])
def test_max_members_must_be_a_number_of_seeds(value):
    from src.cli.preflight import check_stacked_launcher
    from src.model import ConfigError

    config = composed("hydra/launcher=stacked", f"hydra.launcher.max_members={value}")
    with pytest.raises(ConfigError, match=r"hydra.launcher.max_members=.* must be a number of seeds, 1 or more"):
        check_stacked_launcher(config.hydra.launcher)
    check_stacked_launcher(composed("hydra/launcher=stacked", "hydra.launcher.max_members=2").hydra.launcher)


def member_dirs(tmp_path, statuses):
    """Job directories whose run.json says `status` (None: the job never started)."""
    from src.provenance import write_record

    dirs = []
    for number, status in enumerate(statuses):
        run_dir = tmp_path / f"{number}_seed:{number}"
        if status is not None:
            write_record(run_dir, {"status": status})
        dirs.append(run_dir)
    return dirs


def test_a_resumed_group_goes_on_from_its_state_keeps_what_finished_and_starts_the_rest(tmp_path):
    numbers = [0, 1, 2]
    dirs = member_dirs(tmp_path, ["completed", "interrupted", "diverged"])
    whole = group_state_path(tmp_path, numbers)
    whole.parent.mkdir()
    whole.write_bytes(b"state")
    plan = resume_plan(dirs, numbers, tmp_path)  # the group's own state: every member from there
    assert (plan.finished, plan.train, plan.state, plan.resume, plan.note) == ([], [0, 1, 2], whole, True, None)

    whole.unlink()  # no state (killed before its first validation): what finished is kept, the rest starts over
    plan = resume_plan(dirs, numbers, tmp_path)
    assert (plan.finished, plan.train, plan.resume) == ([0, 2], [1], False)
    assert (
        plan.note
        == "1_seed:1 stopped (interrupted) before the group saved its training state: trained again from the start"
    )

    plan = resume_plan(member_dirs(tmp_path / "added", ["completed", "completed", None]), numbers, tmp_path)
    assert (plan.finished, plan.train, plan.resume, plan.note) == ([0, 1], [2], False, None)  # a seed added
    plan = resume_plan(member_dirs(tmp_path / "done", ["completed", "diverged", "completed"]), numbers, tmp_path)
    assert (plan.finished, plan.train) == ([0, 1, 2], [])
    assert group_state_path(tmp_path, [3, 4]) == tmp_path / "stacked_groups" / "jobs-3-4.ckpt"


def test_the_resume_command_is_the_sweeps_own_in_its_directory_with_ckpt_path_last(tmp_path):
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {
            "hydra": {
                "sweep": {"dir": str(tmp_path / "my sweep")},
                "overrides": {
                    "hydra": ["hydra/launcher=stacked", "hydra.launcher.max_members=2", "hydra.mode=MULTIRUN"],
                    "task": ["model.heads=1,2", "seed=0,1,2", "ckpt_path=last"],
                },
            }
        }
    )
    assert resume_command(config) == [
        "-m",
        "hydra/launcher=stacked",
        "hydra.launcher.max_members=2",
        "model.heads=1,2",
        "seed=0,1,2",
        f"hydra.sweep.dir='{tmp_path / 'my sweep'}'",
        "ckpt_path=last",
    ]


def interrupted_together(sweep: Path, members: list[Path]) -> Path:
    """`members` interrupted as one stacked group, whose training state was saved: their run.json, and the state."""
    from src.provenance import write_record

    numbers = [int(member.name.split("_")[0]) for member in members]
    saved = group_state_path(sweep, numbers)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(b"state")
    for member in members:
        group = {"members": [str(m) for m in members], "group_state": str(saved)}
        write_record(member, {"status": "interrupted", "stacked": group})
    return saved


def test_an_interrupted_group_resumes_with_its_own_members_and_a_seed_added_trains_apart(tmp_path):
    """Seeds added on resume (or max_members changed) group an interrupted member with others: its group state
    holds only the members it was saved with, so those resume as that group, and the others (a seed added) train in
    a group of their own, in the order of their numbers."""
    from src.sweep.stacked import resumed_groups

    dirs = [tmp_path / f"{n}_seed:{n}" for n in range(4)]
    interrupted_together(tmp_path, dirs[:3])
    numbers = [0, 1, 2, 3]
    assert resumed_groups([0, 1, 2], dirs, numbers, tmp_path) == [[0, 1, 2]]  # the same group: it resumes
    assert resumed_groups([3, 2, 1, 0], [*dirs[:3], None], numbers, tmp_path) == [[0, 1, 2], [3]]  # seed 3 added
    (tmp_path / "stacked_groups" / "jobs-0-1-2.ckpt").unlink()  # stopped before its first saved state: no group
    assert resumed_groups([0, 1, 2, 3], dirs, numbers, tmp_path) == [[0, 1, 2, 3]]


def test_a_copied_sweep_resumes_from_its_own_group_states(tmp_path):
    """run.json holds the path a group state was saved at; in a copy of the sweep (the original still in place) the
    member resumes with the copy's state of the same name, as it would have in the original, and not at all once
    the copy's state is gone."""
    import shutil

    from src.sweep.stacked import resumed_groups

    original = tmp_path / "sweep"
    dirs = [original / f"{n}_seed:{n}" for n in range(3)]
    interrupted_together(original, dirs[:2])
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    copied = [copy / d.name for d in dirs]
    assert resumed_groups([0, 1, 2], copied, [0, 1, 2], copy) == [[0, 1], [2]]
    (copy / "stacked_groups" / "jobs-0-1.ckpt").unlink()
    assert resumed_groups([0, 1, 2], copied, [0, 1, 2], copy) == [[0, 1, 2]]


def test_a_saved_group_larger_than_max_members_now_is_refused(tmp_path):
    """A group resumes whole from its state: with hydra.launcher.max_members lowered since, refused in one line."""
    from src.cli.preflight import check_group_fits
    from src.model import ConfigError

    dirs = [tmp_path / f"{n}_seed:{n}" for n in range(3)]
    interrupted_together(tmp_path, dirs)
    check_group_fits([0, 1, 2], [0, 1, 2], dirs, tmp_path, None)
    check_group_fits([0, 1, 2], [0, 1, 2], dirs, tmp_path, 3)
    with pytest.raises(
        ConfigError,
        match=r"0_seed:0, 1_seed:1, 2_seed:2 were interrupted in a stacked group of 3 .* resume with "
        r"hydra.launcher.max_members=3, and lower it once that group has finished",
    ):
        check_group_fits([0, 1, 2], [0, 1, 2], dirs, tmp_path, 2)


def test_jobs_are_the_same_by_their_settings_whatever_their_order_and_spelling():
    from src.sweep.runs import settings_key

    assert settings_key(["model.heads=1", "seed=0"]) == settings_key(["seed=0", "model.heads=1", "ckpt_path=last"])
    assert settings_key(["+seed=2", "optimizer.lr=1e-3"]) == settings_key(["seed=2", "optimizer.lr=0.001"])
    assert settings_key(["seed=0"]) != settings_key(["seed=1"])
    assert settings_key(["~seed"]) != settings_key(["seed=null"])


def test_a_resumed_sweep_numbers_new_jobs_after_the_ones_its_directory_holds():
    """Hydra numbers the jobs with the last setting varying fastest: `model.heads=1,2 seed=0,1,2` after
    `model.heads=1,2 seed=0,1` would give model.heads=2 seed=0 the number 3, which model.heads=2 seed=1 has. The jobs
    keep the numbers of their directories; the new ones come after the highest."""
    from src.sweep.runs import job_numbers, settings_key

    def job(heads: int, seed: int) -> frozenset[str]:
        return settings_key([f"model.heads={heads}", f"seed={seed}"])

    held = {job(1, 0): 0, job(1, 1): 1, job(2, 0): 2, job(2, 1): 3}
    assert job_numbers([job(h, s) for h in (1, 2) for s in (0, 1, 2)], held) == [0, 1, 4, 2, 3, 5]
    assert job_numbers([job(h, s) for s in (1, 0) for h in (2, 1)], held) == [3, 1, 2, 0]  # in another order
    assert job_numbers([job(h, s) for h in (1, 2) for s in (0, 1)], {}) == [0, 1, 2, 3]  # a new sweep: Hydra's
    # stopped before its second group: the jobs it never started get the numbers Hydra gives them
    assert job_numbers([job(h, s) for h in (1, 2) for s in (0, 1)], {job(1, 0): 0, job(1, 1): 1}) == [0, 1, 2, 3]
    assert job_numbers([job(2, 0), job(2, 2)], held, first=4) == [2, 4]  # a later batch of the sweeper's jobs


def overrides_file(job: Path, *overrides: str) -> Path:
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return job


def test_a_resumed_sweep_must_run_every_job_its_directory_holds(tmp_path):
    """The jobs are matched to the directories by their settings: seeds in another order and seeds added resume,
    but a directory whose settings no job has (a seed left out, a setting changed) would be passed over: refused in
    one line naming it, and what the command leaves out, or what differs from its nearest job."""
    from src.cli.preflight import check_no_job_left_out
    from src.model import ConfigError

    held = [overrides_file(tmp_path / f"{n}_seed:{n}", f"seed={n}", "model.dropout=0.1") for n in (0, 1)]
    (tmp_path / "stacked_groups").mkdir()  # not a job
    jobs = [[f"seed={n}", "model.dropout=0.1", "ckpt_path=last"] for n in (1, 0, 2)]
    check_no_job_left_out(tmp_path, [held[1], held[0], None], jobs)  # in another order, one added
    with pytest.raises(
        ConfigError,
        match=r"holds 1_seed:1, which this sweep would not run: it leaves out seed=1 \(it gives seed=0\), and a "
        r"resumed sweep runs every job its directory holds: give seed=0,1 \(more values may be added\), or drop "
        r"ckpt_path=last and choose another hydra.sweep.dir for a sweep of fewer jobs$",
    ):
        check_no_job_left_out(tmp_path, [held[0]], jobs[1:2])
    changed = [[f"seed={n}", "model.dropout=0.2"] for n in (0, 1)]
    with pytest.raises(
        ConfigError,
        match=r"holds a sweep run with other settings: its job 0_seed:0 \(and 1 more\) had model.dropout=0.1, "
        r"this one has model.dropout=0.2: resume a sweep with the settings it was started with",
    ):
        check_no_job_left_out(tmp_path, [None, None], changed)
    without = [[f"seed={n}"] for n in (0, 1)]
    with pytest.raises(ConfigError, match=r"had model.dropout=0.1, this one has no model.dropout: resume"):
        check_no_job_left_out(tmp_path, [None, None], without)


def test_a_seed_left_out_of_a_resumed_sweep_is_named_not_paired_with_a_new_job(tmp_path):
    """`model.heads=1,2 seed=0,1,2` stopped in its first group (jobs 0-2), resumed with `seed=0,1`: the refusal
    paired the left-out job 2 (model.heads=1 seed=2) with the new job Hydra now numbers 2 (model.heads=2 seed=0),
    as if model.heads had changed. It names the seed left out and the values to give."""
    from src.cli.preflight import check_no_job_left_out
    from src.model import ConfigError
    from src.sweep.stacked import resumed_jobs

    for number, seed in enumerate((0, 1, 2)):
        overrides_file(tmp_path / f"{number}_model.heads:1+seed:{seed}", "model.heads=1", f"seed={seed}")
    jobs = [[f"model.heads={heads}", f"seed={seed}", "ckpt_path=last"] for heads in (1, 2) for seed in (0, 1)]
    _, held = resumed_jobs(tmp_path, jobs)
    with pytest.raises(ConfigError) as refused:
        check_no_job_left_out(tmp_path, held, jobs)
    assert str(refused.value) == (
        f"hydra.sweep.dir={tmp_path} holds 2_model.heads:1+seed:2, which this sweep would not run: it leaves out "
        "seed=2 (it gives seed=0,1), and a resumed sweep runs every job its directory holds: give seed=0,1,2 (more "
        "values may be added), or drop ckpt_path=last and choose another hydra.sweep.dir for a sweep of fewer jobs"
    )
