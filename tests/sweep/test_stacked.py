"""src/sweep/stacked.py: which jobs of a sweep form a stacked group, and which groups cannot be stacked (each
reason is the one line of the launcher's warning)."""

from __future__ import annotations

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


def test_an_interrupted_member_resumes_only_with_the_group_it_was_saved_with(tmp_path):
    """Seeds added on resume (or max_members changed) would group an interrupted member otherwise: its group state
    would be passed over and its work trained again, so the resume is refused in one line."""
    from src.cli.preflight import check_same_groups
    from src.model import ConfigError
    from src.provenance import write_record

    saved = group_state_path(tmp_path, [0, 1, 2])
    saved.parent.mkdir()
    saved.write_bytes(b"state")
    dirs = [tmp_path / f"{n}_seed:{n}" for n in range(4)]
    for run_dir in dirs[:3]:
        members = [str(d) for d in dirs[:3]]
        write_record(run_dir, {"status": "interrupted", "stacked": {"members": members, "group_state": str(saved)}})
    check_same_groups([0, 1, 2], saved, dirs)  # the same group: it resumes
    with pytest.raises(ConfigError, match=r"0_seed:0 was interrupted in a stacked group of 3 .*seeds added or removed"):
        check_same_groups([0, 1, 2, 3], group_state_path(tmp_path, [0, 1, 2, 3]), dirs)


def test_a_copied_sweep_resumes_from_its_own_group_states(tmp_path):
    """run.json holds the path a group state was saved at; in a copy of the sweep (the original still in place) the
    member resumes with the copy's state of the same name, as it would have in the original."""
    import shutil

    from src.cli.preflight import check_same_groups
    from src.model import ConfigError
    from src.provenance import write_record

    original = tmp_path / "sweep"
    saved = group_state_path(original, [0, 1])
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"state")
    dirs = [original / f"{n}_seed:{n}" for n in range(3)]
    for run_dir in dirs[:2]:
        write_record(
            run_dir,
            {"status": "interrupted", "stacked": {"members": [str(d) for d in dirs[:2]], "group_state": str(saved)}},
        )
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    copied = [copy / d.name for d in dirs]
    check_same_groups([0, 1], group_state_path(copy, [0, 1]), copied)  # the same group, in the copy: it resumes
    with pytest.raises(ConfigError, match=rf"its state: {copy}/stacked_groups/jobs-0-1.ckpt\), which this sweep"):
        check_same_groups([0, 1, 2], group_state_path(copy, [0, 1, 2]), copied)


def test_a_resumed_sweep_must_run_every_job_its_directory_holds(tmp_path):
    """Seeds in another order (`seed=1,0` for a sweep started with `seed=0,1`) number the jobs otherwise, and a seed
    left out would be passed over: refused in one line naming the jobs; seeds added at the end resume."""
    from src.cli.preflight import check_no_job_left_out
    from src.model import ConfigError

    for name in ("0_seed:0", "1_seed:1"):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(f"- seed={name[-1]}\n")
    (tmp_path / "stacked_groups").mkdir()  # not a job
    check_no_job_left_out(tmp_path, [tmp_path / n for n in ("0_seed:0", "1_seed:1", "2_seed:2")])  # one added
    with pytest.raises(
        ConfigError,
        match=r"holds 0_seed:0, 1_seed:1, which this sweep would not run \(its jobs: "
        r"0_seed:1, 1_seed:0\): resume with the values the sweep was started with, in their order .* once its "
        r"interrupted groups have finished",
    ):
        check_no_job_left_out(tmp_path, [tmp_path / "0_seed:1", tmp_path / "1_seed:0"])
    with pytest.raises(ConfigError, match=r"holds 1_seed:1, which this sweep would not run \(its jobs: 0_seed:0\)"):
        check_no_job_left_out(tmp_path, [tmp_path / "0_seed:0"])
