"""A real one-node SLURM cluster, started by the tests in a temporary directory and stopped again at the end.

Tests that need a scheduler (Hydra sweeps through ``hydra/launcher=submitit_slurm``, requeue, sacct states) take the
session-scoped ``slurm_cluster`` fixture. It needs the distribution's packages, nothing else; no systemd, no files
outside the cluster's directory::

    apt-get install --no-install-recommends slurmctld slurmd slurm-client munge slurmdbd mariadb-server

Without them the fixture skips and says so; with them, a daemon that does not come up is a failure, reported with
the last lines of its log.

What starts, in this order (each one needs the one before it):

1. ``munged``: the authentication every SLURM message carries. A private daemon with its own key, socket, pid and
   seed files, so nothing depends on (or disturbs) the machine's own munge. Its socket is named in slurm.conf and
   slurmdbd.conf (``AuthInfo=socket=...``) and in ``AccountingStoragePass`` (the slurmctld to slurmdbd connection
   authenticates through it too: without it slurmctld stops with "no TRES from database").
2. MariaDB (``mariadb-install-db``, then ``mariadbd``): the accounting database, on 127.0.0.1 and a free port, with
   its socket in the cluster's directory. Accounting is what makes ``sacct`` work: without it submitit warns on every
   poll and sees every job as UNKNOWN, so a failed or cancelled job could not be told from a finished one.
3. ``slurmdbd``: the accounting daemon between slurmctld and MariaDB.
4. ``slurmctld``: the controller (queue, scheduler). It registers the cluster in the accounting database itself.
5. ``slurmd -N localhost``: the one compute node, which runs the jobs.

Then one ``sbatch --wrap hostname`` job is run to completion and seen as COMPLETED by sacct, so a test starts with a
cluster that is known to work end to end; ``startup_seconds`` is the time from the fixture's start to that point.

Everything runs as the user running the tests (root on a test machine; an unprivileged user works too): SlurmUser
and SlurmdUser are that user, so the state files, the 0600 slurmdbd.conf (slurmdbd insists that its owner is
SlurmUser) and the jobs all belong to the same user, and no daemon has to switch users. Every daemon runs in the
foreground as a child of the test process, in its own session (so Ctrl-C reaches the tests, not the daemons, and the
fixture stops them in order), with a parent death signal (so they go too if the test process is killed outright).
The fixture stops them by process id, SIGTERM, then SIGKILL after a grace period, after cancelling the jobs still
queued or running; an ``atexit`` hook does the same if the session ends without running the fixture's teardown.

The ports (slurmctld, slurmd, slurmdbd, MariaDB) are chosen free at start, so two test sessions on one machine get
two clusters that do not see each other.

The settings that matter for the tests (see ``slurm_conf`` for all of them, with the reasons):

- ``AuthInfo=...,cred_expire=5``: a requeued job is held until its old launch credential has expired (its begin time
  is set to now + cred_expire + 1 s); the default of 120 s would hold it for two minutes. 5 s is the minimum.
- ``SchedulerParameters=sched_interval=1,bf_interval=1``: the main scheduling loop runs every 60 s and backfill every
  30 s by default; a job whose begin time passes (a requeued one) is only started by one of those loops, not by an
  event. With these a requeued job starts again about 6-7 s after ``scontrol requeue``.
- ``JobRequeue=1``: batch jobs may be requeued (``scontrol requeue`` refuses a job that may not).
- ``KillWait=5``: seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or times out (default 30).
- ``MinJobAge=3600``: finished jobs stay visible to scontrol/squeue for an hour (sacct keeps them for ever).
- ``SelectTypeParameters=CR_Core``: CPUs are the consumable, memory is not, so jobs that ask for no memory do not each
  take the whole node and run side by side, one per CPU.
- ``SlurmdParameters=config_overrides``: the node counts as configured (CPUs, memory) even where the hardware it
  detects differs slightly, instead of being drained.
- ``AccountingStorageEnforce`` is left empty: jobs run without accounts or associations being created first.

Each daemon's stdout and stderr go to ``log/<name>.out`` in the cluster's directory; the SLURM daemons also write
``log/<name>.log``, the same messages with timestamps. Errors there that are expected and harmless: slurmctld's
"Could not open ... state file" (a first start has none), "mpi/pmix...: can not load PMIx library" (slurmctld and
slurmd load every MPI plugin, whatever MpiDefault says; srun inside a job works), slurmdbd's "Database settings not
recommended values: innodb_buffer_pool_size" (it asks for 1 GB) and "update cluster: Connection refused" (it calls
slurmctld before that has started).

sacct lags behind squeue: slurmctld hands a new job's record to slurmdbd from a thread that wakes every 5 s
(hard-coded), so for up to 5 s after a job starts sacct may not know it, or show it PENDING while it runs, or show a
placeholder record (JobName "allocation") for a job that has already ended. Poll (``wait_for_job_state``) rather
than look once (submitit polls too), or ask squeue (``queue_state``), which has no lag.

Run ``python -m tests.servers.slurm`` to start a cluster by hand; it prints the ``SLURM_CONF`` to export, and stops
the cluster on Ctrl-C or SIGTERM. Its directory is kept, logs included.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import math
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from shutil import which

import pytest

INSTALL = "apt-get install --no-install-recommends slurmctld slurmd slurm-client munge slurmdbd mariadb-server"

# The programs the cluster needs, each with the names it has had in different releases.
PROGRAMS: dict[str, tuple[str, ...]] = {
    "munged": ("munged",),
    "mariadb-install-db": ("mariadb-install-db", "mysql_install_db"),
    "mariadbd": ("mariadbd", "mysqld"),
    "slurmdbd": ("slurmdbd",),
    "slurmctld": ("slurmctld",),
    "slurmd": ("slurmd",),
    "sbatch": ("sbatch",),
    "sacct": ("sacct",),
    "scancel": ("scancel",),
    "scontrol": ("scontrol",),
    "sinfo": ("sinfo",),
    "squeue": ("squeue",),
}

# Daemons are installed in sbin, which is not on an ordinary user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])

PARTITION = "debug"
CLUSTER_NAME = "pytest"
START_TIMEOUT = 60.0  # per daemon; they take 0.1-4 s each
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
# Unix socket paths must fit in 108 bytes; past this length the cluster moves to a shorter temporary directory.
MAX_SOCKET_PATH = 100


class ClusterError(RuntimeError):
    """A daemon did not start, or the cluster did not run its first job."""


class SlurmCommandError(subprocess.CalledProcessError):
    """A client command failed; unlike its base class, the message says what the command printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def find_programs() -> tuple[dict[str, str], list[str]]:
    """(the path of every program found, the names of those missing)."""
    found, missing = {}, []
    for name, candidates in PROGRAMS.items():
        path = next((p for p in (which(c, path=SEARCH_PATH) for c in candidates) if p), None)
        if path:
            found[name] = path
        else:
            missing.append(name)
    return found, missing


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now. The sockets are held open together so the ports differ from one another; another
    process could still take one before the daemon binds it, which is unlikely enough for tests."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"({error})"


def memory_mb() -> int:
    """The machine's memory in MB, from /proc/meminfo."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise ClusterError("no MemTotal in /proc/meminfo")


def client_environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without the variables of any SLURM job it may itself run in (they would make
    sbatch and submitit think they are inside that job), plus ``extra``."""
    prefixes = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SACCT_", "SINFO_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)} | extra


# prctl(2) is Linux's (as SLURM is); looked up here, not in the forked child.
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the daemon's process between fork and exec: SIGTERM it when the test process dies, however it dies."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Daemon:
    """One process started by the cluster. Its stdout and stderr go to ``log/<name>.out``; a daemon that writes a
    log file of its own (with timestamps, the same messages) names it as ``log``."""

    def __init__(self, name: str, argv: list[str], directory: Path, env: dict[str, str], log: Path | None = None):
        self.name, self.output = name, directory / f"{name}.out"
        self.log = log or self.output
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def failure(self, what: str) -> ClusterError:
        # A daemon writes to its output until it has read its configuration and opened its log file.
        shown = self.log if self.log.exists() and self.log.stat().st_size else self.output
        return ClusterError(f"{self.name} (pid {self.pid}) {what}; the end of {shown}:\n{tail(shown)}")

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``grace`` seconds; only this process, by its id."""
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Ctrl-C pressed inside the block raises KeyboardInterrupt when it ends, not in the middle of it. Only the main
    thread receives signals, so elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if pressed:
        raise KeyboardInterrupt


def wait_until(condition: Callable[[], bool], what: str, daemon: Daemon, timeout: float = START_TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail with ``daemon``'s log if it exits or the time runs out first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if not daemon.alive():
            raise daemon.failure(f"exited with status {daemon.process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise daemon.failure(f"did not get to {what} within {timeout:.0f} s")
        time.sleep(0.1)


class SlurmCluster:
    """The cluster: ``start()`` it, talk to it, ``stop()`` it.

    Talking to it: ``run(*args)`` any client command; ``sbatch(*args)`` a job's id; ``job(id)`` its sacct record;
    ``wait_for_job_state(id, states)`` polls sacct; ``queue_state(id)`` and ``wait_for_queue_state(id, states)`` the
    same through squeue, which knows a job at once; ``node_state()`` what sinfo says of the node.

    Attributes:
        tmp: the cluster's directory (etc/ for the configs, log/ for every daemon's log, jobs/ the directory client
            commands run in, so job output without an explicit path lands there).
        conf: the path of slurm.conf.
        partition: the name of the one partition, the default one.
        env: what a process that talks to the cluster must have in its environment (``SLURM_CONF``); add it to the
            environment (``monkeypatch.setenv``), or pass ``client_env`` (the whole environment) to subprocess.
        startup_seconds: from the cluster's creation (ports, programs looked up) to the first job completed, as sacct
            saw it.
    """

    def __init__(self, tmp: Path, partition: str = PARTITION, cluster_name: str = CLUSTER_NAME):
        self.programs, missing = find_programs()
        if missing:
            raise FileNotFoundError(f"SLURM programs not found: {', '.join(missing)}; install them with: {INSTALL}")
        self.tmp, self.partition, self.cluster_name = Path(tmp), partition, cluster_name
        self.conf = self.tmp / "etc" / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.startup_seconds = math.nan
        self._created = time.monotonic()
        self.daemons: list[Daemon] = []
        self.user = pwd.getpwuid(os.geteuid()).pw_name  # who the daemons will run as, whatever $USER says
        self.munge_socket = self.tmp / "munge" / "munge.socket"
        self.mariadb_socket = self.tmp / "mariadb" / "mariadb.sock"
        self.ctld_port, self.slurmd_port, self.dbd_port, self.mariadb_port = free_ports(4)
        self.db_password = secrets.token_hex(16)

    @property
    def client_env(self) -> dict[str, str]:
        """The whole environment for a client command or a process that submits jobs (``subprocess.run(env=...)``)."""
        return client_environment(self.env)

    # --- start and stop ---

    def start(self) -> SlurmCluster:
        for name in ("etc", "log", "munge", "mariadb", "state", "spool", "jobs"):
            (self.tmp / name).mkdir(parents=True, exist_ok=True)
        self._start_munged()
        self._start_mariadb()
        self._write_configs()
        self._start_slurm_daemons()
        self._run_first_job()
        self.startup_seconds = time.monotonic() - self._created
        return self

    def _daemon(self, name: str, argv: list[str], has_log: bool = True) -> Daemon:
        logs = self.tmp / "log"
        daemon = Daemon(name, argv, logs, self.client_env, log=logs / f"{name}.log" if has_log else None)
        self.daemons.append(daemon)
        return daemon

    def _start_munged(self) -> None:
        # A key of random bytes is all munge needs (what mungekey or dd would write); munged wants it private.
        key = self.tmp / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        munge = self.tmp / "munge"
        daemon = self._daemon(
            "munged",
            [
                self.programs["munged"],
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
                # It wants every user to be able to reach its socket, which they cannot in a private temporary
                # directory; only we need to, so it is forced to start anyway.
                "--force",
            ],
            has_log=False,  # in the foreground it logs to stderr only
        )
        wait_until(self.munge_socket.exists, "creating its socket", daemon)

    def _start_mariadb(self) -> None:
        data, log = self.tmp / "mariadb" / "data", self.tmp / "log" / "mariadb-install-db.out"
        # As root, mariadbd must be told to stay root (its default is to refuse); as anyone else it runs as them.
        user = ["--user=root"] if os.geteuid() == 0 else []
        tuning = [
            "--skip-name-resolve",  # connections come from 127.0.0.1, no name lookups needed
            # Fewer disk writes: safe enough for a database that lives as long as the tests.
            "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            # What slurmdbd checks for at start, but for its 1 GB buffer pool, which a test database does not need.
            "--innodb-log-file-size=64M",
            "--innodb-lock-wait-timeout=900",
        ]
        # The accounting database and its user, created with the system tables (slurmdbd creates the tables itself).
        setup = self.tmp / "mariadb" / "setup.sql"
        setup.write_text(
            "FLUSH PRIVILEGES;\n"  # loads the grant tables, which the bootstrap runs without
            "CREATE DATABASE slurm_acct_db;\n"
            f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{self.db_password}';\n"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';\n"
        )
        with open(log, "ab") as out:
            installed = subprocess.run(  # a minute is ample; past it, the timeout's exception says so
                [
                    self.programs["mariadb-install-db"],
                    "--no-defaults",  # read no my.cnf: the machine's own server settings are not ours
                    f"--datadir={data}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    f"--extra-file={setup}",
                    *user,
                    *tuning,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT,
            )
        if installed.returncode:
            raise ClusterError(f"mariadb-install-db exited with status {installed.returncode}:\n{tail(log)}")
        daemon = self._daemon(
            "mariadb",
            [
                self.programs["mariadbd"],
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={self.mariadb_socket}",
                f"--pid-file={self.tmp / 'mariadb' / 'mariadb.pid'}",
                "--bind-address=127.0.0.1",
                f"--port={self.mariadb_port}",
                *user,
                *tuning,
            ],
            has_log=False,  # it logs to stderr
        )
        wait_until(lambda: port_open(self.mariadb_port), f"listening on port {self.mariadb_port}", daemon)

    def _write_configs(self) -> None:
        etc = self.tmp / "etc"
        # An empty SPANK plugin list, so nothing from the machine's own plugstack.conf is loaded.
        (etc / "plugstack.conf").write_text("")
        self.conf.write_text(self.slurm_conf())
        # slurmdbd reads slurmdbd.conf next to slurm.conf; it holds the database password, so slurmdbd wants it
        # readable by SlurmUser alone (which is us).
        dbd_conf = etc / "slurmdbd.conf"
        dbd_conf.write_text(self.slurmdbd_conf())
        dbd_conf.chmod(0o600)

    def slurm_conf(self) -> str:
        t = self.tmp
        cpus = os.cpu_count() or 1
        memory = max(memory_mb() // 2, 500)  # below the real figure, so slurmd never finds the node short of memory
        return f"""\
# Written by the tests' SLURM fixture: a one-node cluster in {t}.
ClusterName={self.cluster_name}
# slurmctld only runs on a host whose name is SlurmctldHost; everyone reaches it at 127.0.0.1.
SlurmctldHost={socket.gethostname().split(".")[0]}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
# The user running the tests runs everything, so no daemon switches users (see the module docstring).
SlurmUser={self.user}
SlurmdUser={self.user}
AuthType=auth/munge
CredType=cred/munge
# Our own munged. cred_expire (seconds, minimum 5, default 120) also holds a requeued job pending for that long.
AuthInfo=socket={self.munge_socket},cred_expire=5
StateSaveLocation={t / "state"}
SlurmdSpoolDir={t / "spool"}
SlurmctldPidFile={t / "state" / "slurmctld.pid"}
SlurmdPidFile={t / "spool" / "slurmd.pid"}
SlurmctldLogFile={t / "log" / "slurmctld.log"}
SlurmdLogFile={t / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={t / "etc" / "plugstack.conf"}
# No cgroups: processes are tracked through /proc, and tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
# CPUs are the consumable resource, memory is not: jobs that ask for no memory run side by side.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Start pending jobs within a second of their becoming eligible (a requeued job's begin time passing wakes no
# scheduler; by default the main loop runs every 60 s and backfill every 30 s).
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
# Batch jobs may be requeued (scontrol requeue refuses a job that may not).
JobRequeue=1
# Seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or runs out of time (default 30).
KillWait=5
# Finished jobs stay visible to scontrol and squeue for an hour (sacct has them for ever).
MinJobAge=3600
# No mail is sent from here (the default program does not exist without a mail server).
MailProg=/bin/true
# A node that was down comes back as soon as its slurmd registers; it is not held until an admin resumes it.
ReturnToService=2
# Accounting through our slurmdbd. AccountingStoragePass names the munge socket that connection authenticates with.
# AccountingStorageEnforce is left out: jobs need no account or association.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.dbd_port}
AccountingStoragePass={self.munge_socket}
JobCompType=jobcomp/none
# Trust the node's configuration below even where the detected hardware differs, rather than draining it.
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName={self.partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""

    def slurmdbd_conf(self) -> str:
        t = self.tmp
        return f"""\
# Written by the tests' SLURM fixture.
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
# slurmdbd runs where DbdHost names the local host; "localhost" always does.
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.dbd_port}
SlurmUser={self.user}
LogFile={t / "log" / "slurmdbd.log"}
PidFile={t / "state" / "slurmdbd.pid"}
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.mariadb_port}
StorageUser=slurm
StoragePass={self.db_password}
StorageLoc=slurm_acct_db
"""

    def _start_slurm_daemons(self) -> None:
        conf = f"-f{self.conf}"
        dbd = self._daemon("slurmdbd", [self.programs["slurmdbd"], "-D"])
        wait_until(lambda: port_open(self.dbd_port), f"listening on port {self.dbd_port}", dbd)
        ctld = self._daemon("slurmctld", [self.programs["slurmctld"], "-D", conf])
        wait_until(self.controller_up, "answering scontrol ping", ctld)
        # The node is called localhost whatever the machine's name; -N says which node of slurm.conf this slurmd is.
        slurmd = self._daemon("slurmd", [self.programs["slurmd"], "-D", "-N", "localhost", conf])
        wait_until(lambda: self.node_state() == "idle", "the node showing idle in sinfo", slurmd)

    def _run_first_job(self) -> None:
        ctld = next(d for d in self.daemons if d.name == "slurmctld")
        try:
            job_id = self.sbatch("--job-name=first", "--wrap=hostname")
            self.wait_for_job_state(job_id, "COMPLETED", timeout=START_TIMEOUT)
        except (SlurmCommandError, TimeoutError) as error:
            raise ctld.failure(f"did not run a first job: {error}") from None

    def stop(self) -> None:
        """Cancel the jobs left (so no job process outlives the cluster), then stop the daemons, the last started
        first. Safe to call twice, and from atexit. A second Ctrl-C does not cut it short (it takes about a second)."""
        with sigint_deferred():
            ctld = next((d for d in self.daemons if d.name == "slurmctld"), None)
            if ctld is not None and ctld.alive():
                try:
                    self._cancel_all_jobs()
                except (OSError, subprocess.SubprocessError):
                    pass  # stopping the daemons matters more
            for daemon in reversed(self.daemons):
                daemon.stop()

    def _cancel_all_jobs(self, timeout: float = 2 * STOP_GRACE) -> None:
        def jobs() -> list[str]:
            return self.run("squeue", "--noheader", "--format=%A", timeout=10).stdout.split()

        left = jobs()
        if left:
            self.run("scancel", *left, check=False, timeout=10)
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = jobs()

    # --- talking to the cluster ---

    def run(
        self, *args: str, check: bool = True, timeout: float = 30, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A client command (sinfo, sbatch, scontrol, sacct, ...) run against this cluster, from ``tmp/jobs``; raises
        ``SlurmCommandError`` (with what it printed) on a non-zero status unless ``check=False``."""
        argv = [self.programs.get(args[0], args[0]), *args[1:]]
        env, cwd = self.client_env, self.tmp / "jobs"
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, input=input)
        if check and done.returncode:
            raise SlurmCommandError(done.returncode, argv, done.stdout, done.stderr)
        return done

    def sbatch(self, *args: str) -> str:
        """Submit a batch job (``sbatch <args>``, e.g. ``"--wrap=sleep 10"``); its job id."""
        return self.run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def controller_up(self) -> bool:
        return self.run("scontrol", "ping", check=False, timeout=10).returncode == 0

    def node_state(self) -> str:
        """The node's state as sinfo shows it (idle, mixed, allocated, down*, ...); empty if it cannot say."""
        done = self.run("sinfo", "--noheader", "--Node", "--format=%T", check=False, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "Start", "End", "NodeList")

    def job(self, job_id: str) -> dict[str, str] | None:
        """The job's allocation record from sacct (the latest run of a requeued job), or None while sacct does not
        know it yet. ``State`` is the first word of sacct's (CANCELLED, not "CANCELLED by 0"); ``ExitCode`` is
        "status:signal"."""
        done = self.run(
            "sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={job_id}",
            f"--format={','.join(self.SACCT_FIELDS)}", check=False, timeout=10,
        )  # fmt: skip
        lines = done.stdout.splitlines() if done.returncode == 0 else []
        if not lines:
            return None
        record = dict(zip(self.SACCT_FIELDS, lines[-1].split("|")))
        record["State"] = record["State"].split()[0] if record["State"] else ""
        return record

    def wait_for_job_state(self, job_id: str, states: str | Iterable[str], timeout: float = 30) -> dict[str, str]:
        """Poll sacct until the job is in one of ``states`` (e.g. "COMPLETED", or {"PENDING", "RUNNING"}); its record
        (see ``job``). A task of an array job is "<job id>_<index>". TimeoutError, with the last record and scontrol's
        view of the job, if it does not get there in time."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            if record is not None and record["State"] in wanted:
                return record
            if time.monotonic() > deadline:
                seen = self.run("scontrol", "show", "job", job_id, check=False).stdout.strip()
                raise TimeoutError(
                    f"job {job_id} not in {sorted(wanted)} after {timeout:.0f} s; sacct: {record}\nscontrol: {seen}"
                )
            time.sleep(0.2)

    def queue_state(self, job_id: str) -> str:
        """The state of one job (or array task) as slurmctld has it now (squeue: PENDING, RUNNING, COMPLETING, ...),
        without sacct's lag; empty once the job has left the queue (when it has ended)."""
        done = self.run("squeue", "--noheader", f"--jobs={job_id}", "--format=%T", check=False, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    def wait_for_queue_state(self, job_id: str, states: str | Iterable[str], timeout: float = 30) -> str:
        """Poll squeue until the job is in one of ``states``; that state. TimeoutError if it does not get there."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while (state := self.queue_state(job_id)) not in wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not in {sorted(wanted)} after {timeout:.0f} s; squeue: {state!r}")
            time.sleep(0.2)
        return state


def require_slurm() -> None:
    """Skip the calling test, saying what to install, unless every program the cluster needs is installed."""
    missing = find_programs()[1]
    if missing:
        pytest.skip(f"SLURM is not installed (no {', '.join(missing)}); install it with: {INSTALL}")


def cluster_directory(preferred: Path) -> Path:
    """``preferred``, or a shorter temporary directory when munge's and MariaDB's socket paths would not fit there."""
    if len(str(preferred / "mariadb" / "mariadb.sock")) <= MAX_SOCKET_PATH:
        return preferred
    return Path(tempfile.mkdtemp(prefix="slurm-"))


def start_cluster(tmp: Path) -> SlurmCluster:
    """Start a cluster in ``tmp``; whatever happens, it is stopped at exit, and at once if it fails to start."""
    cluster = SlurmCluster(cluster_directory(tmp))
    atexit.register(cluster.stop)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        atexit.unregister(cluster.stop)
        raise


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running one-node SLURM cluster with accounting, shared by the whole session (see the module docstring)."""
    require_slurm()
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except ClusterError as error:
        pytest.fail(f"the SLURM test cluster did not start: {error}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
        atexit.unregister(cluster.stop)


def main() -> None:
    """Start a cluster in a new temporary directory and keep it up until Ctrl-C or SIGTERM."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Both end it the same way, also when it was started in the background (which ignores Ctrl-C).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        cluster = start_cluster(Path(tempfile.mkdtemp(prefix="slurm-")))
    except KeyboardInterrupt:
        return
    print(f"SLURM cluster up in {cluster.startup_seconds:.1f} s; logs in {cluster.tmp / 'log'}", flush=True)
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        atexit.unregister(cluster.stop)


if __name__ == "__main__":
    main()
