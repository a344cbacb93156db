"""`hydra/launcher=slurm` (and `slurm_gpu`): Hydra's submitit launcher for SLURM, with the sweep waiting for every
job and the cluster's own reasons recorded. Hydra takes launchers only from its `hydra_plugins` namespace, so the
launcher class is hydra_plugins/transformer_ablations/slurm_launcher.py; what it does is here.

Each job of the sweep is a task of one SLURM job array, run by submitit (`sbatch`, then `python -m
submitit.core._submit`, which calls Hydra's job function and so `src.run`'s). What this adds to Hydra's launcher:

- Hydra's waits for the jobs in order and raises at the first one that did not return: the sweep command would end
  while the others still run, and their report would say "running". Here every job is waited for first.
- A job the cluster ended (time limit, out of memory, cancelled, node failure, a crash before the run began) cannot
  say so itself: its run.json still says `running`, or there is none. The launcher writes what SLURM says (the
  job's state from `sacct`, and the first line of its error) into that job's run.json, as `failed` with the reason,
  so the sweep report lists it with the others.
- A job that SLURM requeues (preemption, `scontrol requeue`) is started again with the same job id: `src.run` sees
  its own run in the job's directory and resumes it from its newest checkpoint (src/training/processes.py). Nothing
  is needed here for that: submitit's batch script runs the same job function again.
- The jobs are the cluster's, not the sweep process's: if that process dies (a lost login session, `kill -9`), they
  go on. Their ids are kept in the sweep directory (`.slurm_jobs`), and a resume (or any sweep) into it while SLURM
  still has some of them is refused before anything is submitted (check_no_job_still_running): it would train
  them a second time, over their own files. So are submitit_local's jobs, processes of this machine that outlive
  the sweep's process as well, and any job whose run.json names a process of this machine still training it (a
  joblib worker finishes the job it holds when the sweep's process is killed).
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from src.model import ConfigError
from src.provenance import how_to_stop, live_process, now, read_record, write_record

SUBMITIT_FOLDER = ".submitit"  # submitit's files, one folder per SLURM job (conf/hydra/launcher/slurm.yaml)


def record_cluster_failure(job_dir: Path, reason: str) -> bool:
    """The job's run.json says how the cluster ended it: a run that never recorded its own ending (still `running`)
    is `failed` with that reason; one that did (an interrupted run keeps its resume command, a failed one its own
    reason) gets the cluster's reason beside its own. False when the run never began (no run.json): its directory
    is left alone, so that the command the sweep's report gives for it runs there."""
    record = read_record(job_dir)
    if record is None:
        return False
    if record.get("status") in (None, "running"):
        record.update(status="failed", error=reason, ended=now())
    elif reason not in str(record.get("error")):
        record.update(error=f"{record['error']}; {reason}" if record.get("error") else reason)
    write_record(job_dir, record)
    return True


def wait_until_ended(job: Any, job_dir: Path, first_recheck_s: float = 5.0, longest_recheck_s: float = 60.0) -> None:
    """Until the SLURM job (a submitit job) has ended. submitit sees a job end at once by the result file it writes,
    but a job the cluster stopped (cancelled, preempted without requeue) writes none, and submitit asks sacct at
    growing intervals, up to ten minutes apart, not to load the cluster's controller: such a job could be seen ended
    minutes after it was. Once the job's own run.json no longer says `running` (src.run records an interrupt on
    SLURM's SIGTERM), sacct is asked for this job after `first_recheck_s` seconds, then at doubling intervals up to
    `longest_recheck_s` (a requeued job that waits long in the queue, or a completed run still analysing, is asked
    about once a minute). The question goes to submitit's watcher for the job's own id: a job of several tasks
    answers done(force_check=True) from its tasks' cached states."""
    asked, interval = 0.0, first_recheck_s
    while not job.done():
        record = read_record(job_dir)
        if record is not None and record.get("status") not in (None, "running"):
            if time.monotonic() - asked >= interval:
                asked, interval = time.monotonic(), min(2 * interval, longest_recheck_s)
                if job.watcher.is_done(job.job_id, mode="force"):
                    return
        time.sleep(1)


# sacct's states of a job the cluster ended, not the job's own code (which writes its result, or its error, first)
ENDED_BY_THE_CLUSTER = ("CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE")


def ended_by_the_cluster(job: Any, job_dir: Path) -> bool:
    """The job ended without a result, in a state the cluster put it in, before its run completed. submitit would
    wait 15 s more for a result file before saying so (a shared file system may show the file late), which such a
    job never writes. A run whose run.json says `completed` may have written its result just before the cluster
    ended the job (a slow exit): submitit waits for that file as it does."""
    if job.paths.result_pickle.exists() or not str(job.state).upper().startswith(ENDED_BY_THE_CLUSTER):
        return False
    record = read_record(job_dir)
    return record is None or record.get("status") != "completed"


def sbatch_reason(error: BaseException) -> str:
    """What sbatch said when it refused a submission (submitit's error carries its whole output)."""
    said = [line.strip() for line in str(error).splitlines() if "error" in line.lower() and line.strip()]
    reason = said[-1] if said else (str(error).strip().splitlines() or [type(error).__name__])[0]
    return (
        f"{reason.removeprefix('sbatch: error: ')}: check hydra.launcher.partition (sinfo lists the partitions) and "
        "that sbatch works on this machine (SLURM_CONF)"
    )


def refused_before_any_job(sweep_dir: Path) -> None:
    """No job was submitted: the files this sweep made before submitting (Hydra's multirun.yaml, submitit's folder)
    are removed, so the same command can be run again once the cause is fixed."""
    if any(sweep_dir.glob("*/.hydra")):
        return
    (sweep_dir / "multirun.yaml").unlink(missing_ok=True)
    shutil.rmtree(sweep_dir / SUBMITIT_FOLDER, ignore_errors=True)
    if sweep_dir.is_dir() and not any(sweep_dir.iterdir()):
        sweep_dir.rmdir()


SUBMITTED_JOBS = ".slurm_jobs"  # the SLURM jobs the sweep's commands submitted, one id per line (record_submitted)

# squeue's states of a job that has ended (listed a while after it ends, as `--states=all` asks)
ENDED = ("COMPLETED", "FAILED", "PREEMPTED", *ENDED_BY_THE_CLUSTER)
# states a job does not leave by itself: it waits for `scontrol release` (or resume), or for scancel
HELD = ("REQUEUE_HOLD", "SPECIAL_EXIT", "SUSPENDED", "STOPPED")


def record_submitted(sweep_dir: Path, jobs: list[str]) -> None:
    """Add the jobs just submitted (`123_0`, `123_1`: the tasks of array 123) to the sweep directory's list, which a
    later sweep into it asks SLURM about (check_no_job_still_running), wherever submitit keeps its files."""
    arrays = dict.fromkeys(job.partition("_")[0] for job in jobs)
    with open(sweep_dir / SUBMITTED_JOBS, "a") as listed:
        listed.write("".join(f"{array}\n" for array in arrays))


def submitted_jobs(sweep_dir: Path) -> list[str]:
    """The SLURM jobs a sweep directory's commands submitted, as SLURM numbers them (`123` for array tasks `123_0`,
    `123_1`), from the directory's list (record_submitted); not submitit's folders, whose names are process ids
    for `hydra/launcher=submitit_local` (local_jobs_still_running). Not the job this process itself runs in, if
    any: a command is not waiting on its own allocation."""
    listed = sweep_dir / SUBMITTED_JOBS
    arrays = {name.partition("_")[0] for name in (listed.read_text().split() if listed.is_file() else [])}
    own = {os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_JOB_ID")}
    return sorted((array for array in arrays if array.isdigit() and array not in own), key=int)


def local_jobs_still_running(sweep_dir: Path) -> list[str]:
    """`hydra/launcher=submitit_local`: each job is a process of this machine, which submitit names its folder after
    (<sweep>/.submitit/<pid>) and which outlives the sweep's process if that is killed. The ids of those still
    running: a live process of that id started on this sweep's submitit folder (an id the system has since given to
    another process is not taken for the job)."""
    folder = (sweep_dir / SUBMITIT_FOLDER).resolve()
    return [path.name for path in sorted(folder.glob("*")) if path.name.isdigit() and started_on(path.name, folder)]


def started_on(pid: str, folder: Path) -> bool:
    """Whether process `pid` runs submitit's local job code on `folder`: `python -m submitit.local._local
    <folder>/%j`, the folder as the sweep's command gave it (relative to that process's working directory, perhaps).
    False for no such process, and where /proc cannot say (not Linux: the check is left out there)."""
    try:
        arguments = Path("/proc", pid, "cmdline").read_bytes().decode(errors="replace").split("\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    if "submitit.local._local" not in arguments:
        return False
    return any((cwd / argument).parent.resolve() == folder for argument in arguments if argument.endswith("%j"))


def jobs_training_here(sweep_dir: Path) -> list[tuple[Path, int]]:
    """The sweep's jobs that a process of this machine is training now (or analysing after training), with that
    process's id: a job whose run.json says so and names a live process (src/provenance.py: live_process). Such a
    process outlives the sweep's
    own: a joblib worker goes on with the job it holds when the sweep's process is killed, and so does a job resumed
    in place by its own command."""
    found = []
    for run_dir in sorted(path.parent for path in sweep_dir.glob("*/.hydra")):
        if (pid := live_process(read_record(run_dir))) is not None:  # training it, or analysing it after training
            found.append((run_dir, pid))
    return found


def this_user() -> list[str]:
    """squeue's option for this user's jobs only; none where the user has no name here (a container without a
    passwd entry for its uid): then every user's jobs with those ids are asked about."""
    try:
        return [f"--user={getpass.getuser()}"]
    except (KeyError, OSError):
        return []


def check_no_job_still_running(sweep_dir: Path) -> None:
    """Refused (one ConfigError) while jobs an earlier command into this sweep directory started on this machine
    still run (submitit_local: local_jobs_still_running), or while SLURM still has jobs that such a command
    submitted, pending, running or held: that command's process is gone (or, with a sweeper that does not lock the
    directory, may still wait for them), and this one would train them a second time, two processes writing each
    job's checkpoints. Only this user's jobs are asked about (a job id SLURM has since given to someone else's job
    is not taken for the sweep's). Where squeue cannot answer (no SLURM on this machine), one warning line says to
    check. Last, a job whose run.json names a process of this machine still at work on it (jobs_training_here: a
    joblib worker goes on when the sweep's process is killed). In that order, so that a SLURM job is said to be
    SLURM's, with scancel, even where its process runs here. Writes nothing."""
    if local := local_jobs_still_running(sweep_dir):
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} has jobs still running on this machine (processes {', '.join(local)}), "
            "started by an earlier command into it: this command would train them a second time, over their own "
            f"files; wait until they end, or stop them with {how_to_stop(local)}, then run this command again"
        )
    check_no_slurm_job_still_running(sweep_dir)
    if training := jobs_training_here(sweep_dir):
        shown = ", ".join(f"{job.name} by process {pid}" for job, pid in training[:3])
        more = f" and {len(training) - 3} more" if len(training) > 3 else ""
        pids = list(dict.fromkeys(pid for _, pid in training))
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} has jobs that processes of this machine are training or analysing now "
            f"({shown}{more}), started by an earlier command into it: this command would train them a second time, "
            f"over their own files; wait until they end, or stop them with {how_to_stop(pids)} (a job stopped while it "
            "trains saves its step), then run this command again"
        )


def check_no_slurm_job_still_running(sweep_dir: Path) -> None:
    """check_no_job_still_running's question to SLURM (squeue) about the jobs the sweep's commands submitted."""
    from src.training.report import print_warning

    jobs = submitted_jobs(sweep_dir)
    if not jobs:
        return
    listed = ",".join(jobs)
    asked = [
        "squeue",
        "--noheader",
        "--format=%i %T",
        "--states=all",
        *this_user(),
        f"--jobs={listed}",
    ]
    try:
        answer = subprocess.run(asked, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        answer = subprocess.CompletedProcess([], 1, "", str(error))
    said = answer.stderr.strip().splitlines()
    if answer.returncode != 0 and not any("Invalid job id" in line for line in said):  # forgotten: long ended
        print_warning(
            f"hydra.sweep.dir={sweep_dir} was swept on SLURM, and whether its jobs still run could not be asked "
            f"({(said or ['squeue failed'])[-1]}): check that `squeue --jobs={listed}` lists none before resuming, or "
            "the jobs still running would be trained a second time"
        )
        return
    queued = [line.split() for line in answer.stdout.splitlines() if len(line.split()) == 2]
    queued = [(job, state) for job, state in queued if not state.startswith(ENDED)]
    if not queued:
        return
    shown = ", ".join(f"{job} {state.lower()}" for job, state in queued[:3])
    more = f" and {len(queued) - 3} more" if len(queued) > 3 else ""
    arrays = " ".join(dict.fromkeys(job.partition("_")[0] for job, _ in queued))
    held = "; a held one waits for `scontrol release`" if any(state.startswith(HELD) for _, state in queued) else ""
    raise ConfigError(
        f"hydra.sweep.dir={sweep_dir} has jobs that SLURM still runs or holds ({shown}{more}), submitted by an "
        "earlier command into it: this command would train them a second time, over their own files; wait until "
        f"`squeue --jobs={arrays.replace(' ', ',')}` lists none (a running job finishes on its own, and a resume "
        f"keeps what it did{held}), or cancel them with `scancel {arrays}`, then run this command again"
    )
