"""src/sweep/resume.py and its checks in src/cli/preflight.py: what a grid sweep resumed with ckpt_path=last does
with each job, by what its directory holds, and which directories it refuses to resume (each in one line). The
whole path, from a real interrupt to the finished sweep, is tests/e2e/test_interrupts.py's."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.model import ConfigError
from src.provenance import write_record
from src.sweep.resume import Next, consecutive_runs, resume_arguments, resume_plan, said_of
from tests.conftest import PYTHON, wait_for_state


def job_dir(sweep: Path, number: int, status: str | None, step: int | None = None) -> Path:
    """Job `number` of `seed=0,1,...` (its overrides, as Hydra writes them), whose run.json says `status` (None: it
    has none), with a checkpoint at `step` (None: none)."""
    job = sweep / f"{number}_seed:{number}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- seed={number}\n- ckpt_path=last\n")
    if status is not None:
        write_record(job, {"status": status})
    if step is not None:
        (job / "checkpoints").mkdir()
        hparams = {"config": {}, "model_config": {}, "kind": "seq2seq"}
        torch.save({"global_step": step, "hyper_parameters": hparams, "state_dict": {}}, job / "checkpoints/last.ckpt")
    return job


def twelve_steps(overrides: list[str]):
    return OmegaConf.create({"trainer": {"max_steps": 12}})


def test_a_resumed_grid_sweep_keeps_what_ended_and_goes_on_with_what_was_stopped(tmp_path):
    held = [
        job_dir(tmp_path, 0, "completed", 12),
        job_dir(tmp_path, 1, "failed"),
        job_dir(tmp_path, 2, "diverged", 6),
        job_dir(tmp_path, 3, "interrupted", 6),
        job_dir(tmp_path, 4, "interrupted", 12),  # interrupted while it was tested: every step trained
        job_dir(tmp_path, 5, "running"),  # killed before its first checkpoint
        job_dir(tmp_path, 6, None),  # Hydra made its directory, then the sweep stopped
    ]
    jobs = [[f"seed={n}", "ckpt_path=last"] for n in range(8)]
    plan = resume_plan(tmp_path, jobs, twelve_steps)
    assert [job.next for job in plan] == [
        Next.KEEP,
        Next.KEEP_ENDED,
        Next.KEEP_ENDED,
        Next.RESUME,
        Next.KEEP_TRAINED,
        Next.RESTART,
        Next.RESTART,
        Next.START,
    ]
    assert [job.directory for job in plan] == [*held, None] and [job.number for job in plan] == list(range(8))
    # what the launcher gets: only a job with a checkpoint to resume keeps ckpt_path=last, and a job whose directory
    # exists goes on in it, whatever Hydra would name it now
    assert plan[3].launched == ["seed=3", "ckpt_path=last", "hydra.sweep.subdir=3_seed:3"]
    assert plan[5].launched == ["seed=5", "hydra.sweep.subdir=5_seed:5"]
    assert plan[7].launched == ["seed=7"]
    assert [[job.number for job in batch] for batch in consecutive_runs([j for j in plan if j.runs], None)] == [
        [3],
        [5, 6, 7],
    ]
    assert [[job.number for job in batch] for batch in consecutive_runs([j for j in plan if j.runs], 2)] == [
        [3],
        [5, 6],
        [7],
    ]
    lines = said_of(plan, tmp_path)
    assert lines[:2] == [
        "job 0 has finished: kept as it is, not trained again",
        "job 3 (3_seed:3) goes on from its checkpoints/last.ckpt",
    ]
    assert lines[2] == (
        "warning: jobs 1 (failed), 2 (diverged) are kept as they ended, not run again (a crash or a divergence would "
        f"come again): {PYTHON} -m src.report {tmp_path} says why; to run one again, delete its directory and resume "
        "the sweep"
    )
    assert lines[3].startswith("warning: job 4 (4_seed:4) was interrupted after its last step (trained 12 steps), so ")
    assert lines[3].endswith(f"evaluate it with {PYTHON} -m src.eval ckpt={held[4]}")
    assert lines[4] == (
        "warning: jobs 5 (5_seed:5, running), 6 (6_seed:6, no run.json) stopped before saving a checkpoint: trained "
        "again from the start, in place"
    )


def test_a_resumed_grid_sweep_finds_its_jobs_by_their_settings_and_numbers_new_ones_after_them(tmp_path):
    """`seed=2,1,0` after `seed=0,1` (numbered 0, 1): the jobs that ran keep their directories, and the new one is
    numbered after them, never into an earlier job's directory."""
    held = [job_dir(tmp_path, n, "completed", 12) for n in (0, 1)]
    plan = resume_plan(tmp_path, [[f"seed={n}"] for n in (2, 1, 0)], twelve_steps)
    assert [(job.number, job.directory, job.next) for job in plan] == [
        (2, None, Next.START),
        (1, held[1], Next.KEEP),
        (0, held[0], Next.KEEP),
    ]


def test_the_command_that_resumes_a_sweep_is_its_own_from_its_multirun_yaml(tmp_path):
    sweep = tmp_path / "my sweep"
    sweep.mkdir()
    overrides = {
        "hydra": ["hydra.sweep.dir=elsewhere", "hydra/launcher=joblib", "hydra.mode=MULTIRUN"],
        "task": ["model.heads=1,2", "seed=0,1", "ckpt_path=last"],
    }
    OmegaConf.save({"hydra": {"overrides": overrides}}, sweep / "multirun.yaml")
    assert resume_arguments(sweep) == [
        "-m",
        "hydra/launcher=joblib",
        "model.heads=1,2",
        "seed=0,1",
        f"hydra.sweep.dir='{sweep.resolve()}'",
        "ckpt_path=last",
    ]
    assert resume_arguments(tmp_path / "nothing") is None


def test_what_a_resumed_grid_sweep_refuses_to_resume(tmp_path):
    """Each in one line, before anything is written: no directory given, one that holds nothing, a single run, a
    sweep of stacked groups, an Optuna search."""
    from src.cli.preflight import check_grid_sweep_dir
    from src.study import STUDY_FILE

    with pytest.raises(ConfigError, match=r"add hydra.sweep.dir=<the sweep's directory>"):
        check_grid_sweep_dir(None)
    with pytest.raises(ConfigError, match=r"holds no sweep to resume \(ckpt_path=last\)"):
        check_grid_sweep_dir(tmp_path / "nothing")
    run = tmp_path / "run"
    write_record(run, {"status": "interrupted", "resume": "python -m src.run hydra.run.dir=run ckpt_path=last"})
    with pytest.raises(ConfigError, match=r"holds a single run, not a sweep: a run resumes without -m \(python -m sr"):
        check_grid_sweep_dir(run)
    stacked = tmp_path / "stacked"
    write_record(job_dir(stacked, 0, None), {"status": "interrupted", "stacked": {"members": []}})
    with pytest.raises(ConfigError, match=r"trained as stacked groups of seeds, which resume only as groups, with "):
        check_grid_sweep_dir(stacked)
    search = tmp_path / "search"
    job_dir(search, 0, "interrupted")
    resume = "python -m src.run -m hparams_search=x ckpt_path=last"
    (search / STUDY_FILE).write_text(f"study_name: x\nstorage: sqlite:///x.db\nresume: {resume}\n")
    with pytest.raises(
        ConfigError, match=rf"holds an Optuna search, not a grid sweep: resume it with its own command, {resume}$"
    ):
        check_grid_sweep_dir(search)
    # A folder of single runs (outputs/<date> typed for a sweep's outputs/multirun/<date>/<time>): run directories
    # but no multirun.yaml, which a grid sweep writes before its first job
    runs = tmp_path / "runs"
    job_dir(runs, 0, "completed")
    with pytest.raises(
        ConfigError, match=r"holds no sweep to resume \(ckpt_path=last\) \(1 run directory but no multirun.yaml\)"
    ):
        check_grid_sweep_dir(runs)
    (runs / "multirun.yaml").write_text("hydra: {}\n")
    check_grid_sweep_dir(runs)


def test_a_grid_sweeps_unfinished_jobs_are_not_resumed_as_stacked_groups(tmp_path):
    """hydra/launcher=stacked with ckpt_path=last on a grid sweep: a job trained alone that did not finish has its
    own checkpoint, which a stacked group would not read (it would train the job again from the start): refused,
    naming the jobs and the sweep's own resume. Completed jobs, and directories with no run.json (nothing to lose),
    are no obstacle."""
    from src.cli.preflight import check_stacked_sweep_dir

    sweep = tmp_path / "grid"
    job_dir(sweep, 0, "completed")
    job_dir(sweep, 2, None)
    check_stacked_sweep_dir(sweep)
    job_dir(sweep, 1, "interrupted", step=5)
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    hydra: []\n    task: ['seed=0,1,2']\n")
    with pytest.raises(ConfigError) as refused:
        check_stacked_sweep_dir(sweep)
    assert str(refused.value) == (
        f"hydra.sweep.dir={sweep} holds jobs trained one by one that did not finish (1_seed:1), which a stacked "
        f"group would train again from the start: resume the sweep as it ran, {PYTHON} -m src.run -m seed=0,1,2 "
        f"hydra.sweep.dir={sweep.resolve()} ckpt_path=last"
    )
    stacked = tmp_path / "stacked"
    write_record(job_dir(stacked, 0, None), {"status": "interrupted", "stacked": {"members": []}})
    check_stacked_sweep_dir(stacked)


def test_settings_that_only_say_how_a_job_runs_do_not_tell_a_sweeps_jobs_apart_unless_swept(tmp_path):
    """A sweep resumed with another thread count, or without the logger or progress setting it had, is the same
    sweep (src/sweep/runs.py: matched_jobs): its jobs are matched without those settings. A run-only setting the
    sweep swept (compile=true,false: the same run trained once per value) still tells its jobs apart, so a command
    that no longer gives it matches no directory."""
    from src.sweep.runs import matched_jobs

    sweep = tmp_path / "sweep"
    for number in range(2):
        (sweep / f"{number}_seed:{number}" / ".hydra").mkdir(parents=True)
        (sweep / f"{number}_seed:{number}" / ".hydra" / "overrides.yaml").write_text(
            f"- seed={number}\n- torch_threads=2\n- progress_every_n_steps=5\n- logger=csv\n"
        )
    planned, held = matched_jobs(
        sweep, [["seed=1", "torch_threads=1"], ["torch_threads=1", "seed=0"], ["seed=2", "torch_threads=1"]]
    )
    assert [held.get(key) for key in planned] == [sweep / "1_seed:1", sweep / "0_seed:0", None]
    # the plan of such a resume: each job goes on in its own directory
    for number in range(2):
        write_record(sweep / f"{number}_seed:{number}", {"status": "completed"})
    plan = resume_plan(sweep, [["seed=0", "ckpt_path=last"], ["seed=1", "ckpt_path=last"]], twelve_steps)
    assert [job.next for job in plan] == [Next.KEEP, Next.KEEP]

    # a resume that changed one (it rewrites the overrides of the jobs it runs, not of those it keeps) leaves the
    # directories disagreeing: still the same sweep for the next resume, whatever thread count it gives
    (sweep / "1_seed:1" / ".hydra" / "overrides.yaml").write_text("- seed=1\n- torch_threads=4\n")
    for threads in ([], ["torch_threads=2"], ["torch_threads=4"]):
        planned, held = matched_jobs(sweep, [["seed=0", *threads], ["seed=1", *threads]])
        assert [held.get(key) for key in planned] == [sweep / "0_seed:0", sweep / "1_seed:1"], threads

    swept = tmp_path / "swept"
    for number, value in enumerate(["true", "false"]):
        (swept / f"{number}_compile:{value}" / ".hydra").mkdir(parents=True)
        (swept / f"{number}_compile:{value}" / ".hydra" / "overrides.yaml").write_text(f"- compile={value}\n")
    planned, held = matched_jobs(swept, [["compile=true"], ["compile=false"]])
    assert [held.get(key) for key in planned] == [swept / "0_compile:true", swept / "1_compile:false"]
    planned, held = matched_jobs(swept, [["seed=0"]])
    assert [held.get(key) for key in planned] == [None]


def test_a_resumed_sweep_starts_its_new_jobs_from_the_checkpoint_its_first_command_gave(tmp_path):
    """A sweep started with ckpt_path=<a checkpoint> (each job goes on from it): its resume's ckpt_path=last must
    not make the jobs it starts or restarts begin from scratch. multirun.yaml keeps the sweep's own ckpt_path."""
    from src.sweep.resume import sweep_starts_from

    sweep = tmp_path / "sweep"
    job_dir(sweep, 0, "interrupted", 6)
    job_dir(sweep, 1, "running")  # nothing saved: trained again from the start
    task = ["seed=0,1,2", "ckpt_path=base/last.ckpt"]
    OmegaConf.save({"hydra": {"overrides": {"hydra": [], "task": task}}}, sweep / "multirun.yaml")
    assert sweep_starts_from(sweep) == "ckpt_path=base/last.ckpt"
    plan = resume_plan(sweep, [[f"seed={n}", "ckpt_path=last"] for n in range(3)], twelve_steps)
    assert [job.next for job in plan] == [Next.RESUME, Next.RESTART, Next.START]
    assert plan[0].launched == ["seed=0", "ckpt_path=last", "hydra.sweep.subdir=0_seed:0"]
    assert plan[1].launched == ["seed=1", "ckpt_path=base/last.ckpt", "hydra.sweep.subdir=1_seed:1"]
    assert plan[2].launched == ["seed=2", "ckpt_path=base/last.ckpt"]
    assert resume_arguments(sweep)[-1] == "ckpt_path=last"
    # a sweep without one (or one already resumed by an older version, whose multirun.yaml says last) starts anew
    OmegaConf.save(
        {"hydra": {"overrides": {"hydra": [], "task": ["seed=0,1,2", "ckpt_path=last"]}}}, sweep / "multirun.yaml"
    )
    assert sweep_starts_from(sweep) is None
    assert resume_plan(sweep, [["seed=2", "ckpt_path=last"]], twelve_steps)[0].launched == ["seed=2"]


def test_a_sweep_directory_in_use_by_another_process_is_refused_naming_it(tmp_path):
    """Two sweeps in one directory at once (a resume started while the sweep, or another resume, still runs) would
    train the same jobs twice over each other's files: the second is refused, naming the process that holds the
    directory. The lock is the kernel's (flock): released when its process ends in any way, or when the command
    ends (release_sweep_lock); checking it writes nothing."""
    import subprocess
    import sys

    from src.sweep.lock import LOCK_FILE, check_not_in_use, hold_sweep_lock, release_sweep_lock

    sweep = tmp_path / "sweep"
    check_not_in_use(sweep)  # nothing there: nothing in use, and nothing written
    assert not sweep.exists()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from src.sweep.lock import hold_sweep_lock; "
            f"hold_sweep_lock(Path({str(sweep)!r})); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (sweep / LOCK_FILE).read_text()
        for check in (check_not_in_use, hold_sweep_lock):
            with pytest.raises(ConfigError, match=rf"is in use by another sweep \(process {holder.pid} on ") as said:
                check(sweep)
            said_to = f"wait until it ends (or stop it with Ctrl-C in its terminal, or `kill {holder.pid}`), then run"
            assert said_to in str(said.value), said.value
        assert (sweep / LOCK_FILE).read_text() == before  # a refused command leaves the holder's record as it was
        # stopped by Ctrl-Z: Ctrl-C cannot reach it, and a kill waits until it is continued
        os.kill(holder.pid, signal.SIGSTOP)
        wait_for_state(holder.pid, "T")
        with pytest.raises(ConfigError) as said:
            check_not_in_use(sweep)
        assert f"`kill {holder.pid}; kill -CONT -{os.getpgid(holder.pid)}` (it is stopped" in str(said.value)
    finally:
        holder.kill()
        holder.wait()
    check_not_in_use(sweep)  # its process is gone: so is its lock, with no file to delete
    hold_sweep_lock(sweep)
    assert f'"pid": {__import__("os").getpid()}' in (sweep / LOCK_FILE).read_text()
    release_sweep_lock()
    hold_sweep_lock(sweep)  # released: this process (a later command in it) takes it again
    release_sweep_lock()


def test_a_sweep_directory_made_for_the_lock_and_left_empty_is_removed_with_it(tmp_path):
    """A sweep refused after its checks (by the launcher: SLURM has no such partition) has written nothing but its
    lock: the directory the lock made goes with it. One that was there, or that holds more, stays."""
    from src.sweep.lock import LOCK_FILE, hold_sweep_lock, release_sweep_lock

    hold_sweep_lock(tmp_path / "new")
    release_sweep_lock()
    assert not (tmp_path / "new").exists()
    hold_sweep_lock(tmp_path / "used")
    (tmp_path / "used" / "multirun.yaml").write_text("hydra: {}\n")
    release_sweep_lock()
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == [LOCK_FILE, "multirun.yaml"]
    (tmp_path / "there").mkdir()
    hold_sweep_lock(tmp_path / "there")
    release_sweep_lock()
    assert [p.name for p in (tmp_path / "there").iterdir()] == [LOCK_FILE]


def test_a_file_system_that_cannot_lock_is_one_warning_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    """Lustre without flock, NFS mounted nolock: flock fails with ENOLCK. The checks are not skipped (an exception
    in a Hydra callback would only be a warning, and every check after it would not run): the sweep goes on
    unlocked, said in one warning line."""
    import errno
    import fcntl

    from src.sweep import lock

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    (tmp_path / lock.LOCK_FILE).write_text("")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock.check_not_in_use(tmp_path)
    lock.hold_sweep_lock(tmp_path)
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "cannot lock files (No locks available)" in warned[0], warned
    lock.release_sweep_lock()
