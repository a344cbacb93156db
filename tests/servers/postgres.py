"""A throwaway PostgreSQL server for the tests of a shared Optuna study (src/study.py): `initdb` into a new
temporary directory, `pg_ctl start` on a free local port, and, at the end, a stop by the server's process id and
the directory removed.

    server = start_postgres()            # or the session fixture `postgres_server` below
    url = server.new_database()          # postgresql+psycopg2://postgres@127.0.0.1:<port>/<fresh database>
    ...
    server.stop()

Nothing is mocked: the tests talk to the real server through the same driver (psycopg2) a user's sweep uses.

Why it is set up this way:
- PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the distribution's package
  creates (`runuser -u postgres`), and its directory is made in the system's temporary directory (pytest's own
  temporary directories are private to root, and the postgres user could not enter them);
- the server listens on 127.0.0.1 only, its Unix socket goes into its own directory (not /var/run/postgresql,
  which may not exist or belong to a system server), and `fsync=off`: a test's data need not survive a crash;
- `--auth=trust`: no password, so no password is ever written into a URL or a log.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INSTALL_HINT = "install PostgreSQL's server (apt-get install postgresql) for the shared-study tests"
DRIVER_HINT = "install the PostgreSQL driver (pip install psycopg2-binary, in the optuna extra) for these tests"
SUPERUSER = "postgres"  # the role initdb creates (-U), whoever runs it


def server_binaries() -> Path | None:
    """The directory that holds `initdb`, `pg_ctl` and `postgres`, or None. On PATH where a system puts them there
    (Homebrew, Fedora, a source build); Debian and Ubuntu keep them out of PATH, in
    /usr/lib/postgresql/<major version>/bin (the newest installed version is taken); else `pg_config --bindir`."""
    candidates = []
    if (on_path := shutil.which("pg_ctl")) is not None:
        candidates.append(Path(on_path).resolve().parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions), key=lambda p: _version(p.parent.name), reverse=True)
    if (pg_config := shutil.which("pg_config")) is not None:
        try:
            bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout
            candidates.append(Path(bindir.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def free_port() -> int:
    """A local port no one listens on now (the server takes it a moment later; start_postgres retries if another
    process was quicker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server: its directory, port and process id, and how long it took to be ready."""

    bin_dir: Path
    data_dir: Path
    port: int
    pid: int
    startup_seconds: float  # from initdb to accepting connections
    url: str = ""  # a database of its own for whoever holds this object (see postgres_server)
    databases: list[str] = field(default_factory=list)

    def url_of(self, database: str) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str | None = None) -> str:
        """CREATE DATABASE (a new, empty one; the name is made up unless given); returns its SQLAlchemy URL."""
        import psycopg2

        name = name or f"test_{len(self.databases)}_{os.getpid()}"
        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        self.databases.append(name)
        return self.url_of(name)

    def running(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, and someone else's (it is the postgres user's when we are not root)
            return True
        return (self.data_dir / "postmaster.pid").is_file()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server by its process id (SIGINT: PostgreSQL's fast shutdown, which ends the sessions still
        open), then immediately (SIGQUIT) if it has not gone within `timeout`; then remove its directory."""
        for signum, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0)):
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.running():
                break
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: as root, run the command as the postgres user."""
    return ["runuser", "-u", SUPERUSER, "--", *command] if os.geteuid() == 0 else command


def start_postgres(bin_dir: Path, attempts: int = 3) -> PostgresServer:
    """initdb + pg_ctl start on a free port; raises RuntimeError with the server's log when it does not start."""
    started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="postgres-test-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SUPERUSER)
        os.chown(data_dir, owner.pw_uid, owner.pw_gid)
    try:
        subprocess.run(
            _as_server_user([str(bin_dir / "initdb"), "-D", str(data_dir), "--auth=trust", "-U", SUPERUSER]),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        log = data_dir / "server.log"
        for attempt in range(attempts):
            port = free_port()
            options = f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            result = subprocess.run(
                _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-w", "-o", options])
                + ["start"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if result.returncode == 0:
                pid = int((data_dir / "postmaster.pid").read_text().split()[0])
                return PostgresServer(bin_dir, data_dir, port, pid, time.perf_counter() - started)
            if attempt == attempts - 1 or "already in use" not in log.read_text(errors="replace"):
                raise RuntimeError(f"PostgreSQL did not start:\n{result.stderr}\n{log.read_text(errors='replace')}")
    except subprocess.CalledProcessError as error:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{error.stdout}\n{error.stderr}") from error
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    raise AssertionError("unreachable")


def require_postgres() -> Path:
    """The server's binaries; skips the test (saying what to install) when PostgreSQL or its driver is missing."""
    bin_dir = server_binaries()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL's initdb and pg_ctl were not found: {INSTALL_HINT}")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            pytest.skip(f"running as root, and there is no {SUPERUSER} user to run the server as: {INSTALL_HINT}")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip(DRIVER_HINT)
    return bin_dir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the test session, with `url` a fresh database of its own; a test that needs an empty one
    calls `postgres_server.new_database()`. Stopped (by process id) when the session ends."""
    server = start_postgres(require_postgres())
    try:
        server.url = server.new_database("tests")
        yield server
    finally:
        server.stop()
