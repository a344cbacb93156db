"""Which processes belong to a run (src/training/processes.py): the proof each launch path carries, and what the
first rank reads when another one dies. The launch paths themselves run in tests/e2e/test_launch_paths.py and
tests/e2e/test_slurm.py."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from src.cli.preflight import check_run_dir
from src.model import ConfigError
from src.provenance import RunRecord, read_record
from src.training import processes
from src.training.processes import RANK_ERROR, RunRanksLauncher, announce, belongs_to, rank_failure, requeued


@pytest.fixture
def clean_env(monkeypatch):
    for key in (processes.RUN_ENV, "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def as_rank(monkeypatch, rank: int) -> None:
    monkeypatch.setattr(processes, "process_rank", lambda: rank)


def test_an_extra_rank_belongs_to_the_run_whose_session_it_inherited(tmp_path, clean_env):
    record = RunRecord(tmp_path)
    record.update()
    announce(tmp_path, record.data["session"])
    as_rank(clean_env, 1)
    assert belongs_to(tmp_path, read_record(tmp_path)) == "rank 1"
    as_rank(clean_env, 0)  # the first rank is never "part of" a run it finds: it would be a second run
    assert belongs_to(tmp_path, read_record(tmp_path)) is None


def test_another_session_or_another_directory_does_not_belong(tmp_path, clean_env):
    record = RunRecord(tmp_path / "a")
    record.update()
    as_rank(clean_env, 1)
    announce(tmp_path / "a", "another session")  # LOCAL_RANK and a stale announcement are no proof
    assert belongs_to(tmp_path / "a", read_record(tmp_path / "a")) is None
    announce(tmp_path / "b", record.data["session"])
    assert belongs_to(tmp_path / "a", read_record(tmp_path / "a")) is None
    assert belongs_to(tmp_path / "a", None) is None


def test_a_slurm_job_belongs_to_its_run_as_a_task_of_its_step_or_started_again_after_a_requeue(tmp_path, clean_env):
    for key in ("SLURM_STEP_ID", "SLURM_RESTART_COUNT"):
        clean_env.delenv(key, raising=False)
    clean_env.setenv("SLURM_ARRAY_JOB_ID", "41")
    clean_env.setenv("SLURM_ARRAY_TASK_ID", "3")
    clean_env.setenv("SLURM_JOB_ID", "44")  # an array task's own id: sacct and submitit name it 41_3
    clean_env.setenv("SLURM_STEP_ID", "0")
    record = RunRecord(tmp_path)
    record.update()
    saved = read_record(tmp_path)
    assert saved is not None and (saved["slurm_job"], saved["slurm_step"], saved["slurm_restart"]) == ("41_3", "0", 0)
    as_rank(clean_env, 1)  # a second task of the same step: a rank of the run
    assert belongs_to(tmp_path, saved) == "rank 1" and not requeued(saved)
    as_rank(clean_env, 0)  # a second command in the same job (its next step): a second run, refused
    clean_env.setenv("SLURM_STEP_ID", "1")
    assert belongs_to(tmp_path, saved) is None and not requeued(saved)
    clean_env.setenv("SLURM_RESTART_COUNT", "1")  # SLURM started the job again after a requeue
    clean_env.setenv("SLURM_STEP_ID", "0")
    assert belongs_to(tmp_path, saved) == "requeued SLURM job 41_3" and requeued(saved)
    clean_env.setenv("SLURM_ARRAY_TASK_ID", "4")  # another job of the same array: a stranger
    assert belongs_to(tmp_path, saved) is None and not requeued(saved)


def run_dir_config(run_dir, *extra: str):
    from tests.conftest import compose_config

    cfg = OmegaConf.create(OmegaConf.to_container(compose_config(*extra)))
    return OmegaConf.merge(cfg, {"hydra": {"run": {"dir": str(run_dir)}, "overrides": {"task": list(extra)}}})


def test_preflight_lets_a_runs_own_rank_in_and_keeps_a_stranger_out(tmp_path, clean_env):
    record = RunRecord(tmp_path)
    record.update()
    config = run_dir_config(tmp_path)
    clean_env.setenv("LOCAL_RANK", "1")
    as_rank(clean_env, 1)
    with pytest.raises(ConfigError, match="already holds a run|holds a run that"):
        check_run_dir(config)  # LOCAL_RANK=1 alone: not this run's
    announce(tmp_path, record.data["session"])
    check_run_dir(config)  # started by the run: part of it


def test_a_rank_the_run_started_enters_while_the_first_rank_trains_and_a_stranger_is_told_to_wait(tmp_path, clean_env):
    """The first rank's process still trains (its run.json names it, alive): the extra ranks it started are part of
    the run and go in (belongs_to comes first); any other process is told which process trains there."""
    import json

    from src.provenance import process_started

    first = subprocess.Popen(["sleep", "60"])  # stands for the first rank's process: any live one will do
    try:
        record = RunRecord(tmp_path)
        record.update(pid=first.pid, process_started=process_started(first.pid))
        assert json.loads((tmp_path / "run.json").read_text())["pid"] == first.pid
        config = run_dir_config(tmp_path)
        as_rank(clean_env, 1)
        with pytest.raises(ConfigError, match=f"process {first.pid} of this machine is training now"):
            check_run_dir(config)  # a rank in its environment, but not started by this run: a stranger
        announce(tmp_path, record.data["session"])
        check_run_dir(config)  # started by the run: part of it
    finally:
        first.kill()
        first.wait()


def test_a_ranks_reason_is_its_last_error_line_or_how_it_ended(tmp_path):
    (tmp_path / RANK_ERROR.format(rank=1)).write_text("Traceback ...\n  File x\nValueError: bad batch\n\n")
    assert rank_failure(tmp_path, 1, 77, 1) == (
        f"rank 1 (PID 77) failed: ValueError: bad batch (traceback in {tmp_path / 'error-rank-1.txt'})"
    )
    assert rank_failure(tmp_path, 2, 78, -9) == "rank 2 (PID 78) failed: killed by SIGKILL"
    assert rank_failure(tmp_path, 2, 78, 3) == "rank 2 (PID 78) failed: exited with status 3"


class Launcher(RunRanksLauncher):
    """RunRanksLauncher over given processes (what `launch` would have started)."""

    def __init__(self, run_dir, procs):
        self.run_dir, self.procs, self.observer = run_dir, procs, None


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_the_first_ranks_own_error_stands_unless_another_rank_failed_first(tmp_path):
    failed_first = python("import sys; sys.exit(1)")
    failed_first.wait()
    (tmp_path / RANK_ERROR.format(rank=1)).write_text("RuntimeError: out of memory\n")
    assert "out of memory" in Launcher(tmp_path, [failed_first]).finish(failed_at=time.time())

    later = time.time() - 60  # the first rank failed a minute before this rank wrote its error
    assert Launcher(tmp_path, [failed_first]).finish(failed_at=later) is None

    still_running = python("import time; time.sleep(60)")
    assert Launcher(tmp_path, [still_running]).finish(failed_at=time.time()) is None
    assert still_running.wait(10) == -9  # stopped: the run has failed already


def test_a_rank_that_ends_well_or_is_interrupted_is_no_failure(tmp_path):
    ok, interrupted = python("pass"), python("import sys; sys.exit(143)")
    assert Launcher(tmp_path, [ok]).finish(failed_at=None) is None
    assert Launcher(tmp_path, [interrupted]).finish(failed_at=time.time()) is None
    failed = python("import sys; sys.exit(2)")
    expected = f"rank 1 (PID {failed.pid}) failed: exited with status 2"
    assert Launcher(tmp_path, [failed]).finish(failed_at=None) == expected


def test_the_observer_records_a_dead_rank_at_once(tmp_path):
    dies, waits = python("import sys; sys.exit(1)"), python("import time; time.sleep(60)")
    recorded = []
    observer = processes.RankObserver([dies, waits], tmp_path, recorded.append, period=0.05, grace_seconds=60)
    observer.start()
    deadline = time.time() + 30
    while not recorded and time.time() < deadline:
        time.sleep(0.05)
    observer.stop()
    assert recorded == [f"rank 1 (PID {dies.pid}) failed: exited with status 1"]
    assert waits.wait(10) is not None  # the other ranks are stopped: they would wait for the dead one for ever
