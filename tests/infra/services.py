"""The production topology as real processes on loopback: PostgreSQL, an MLflow tracking server,
a Dask scheduler and its workers, each started from a folder of its own and stopped by its pid.

Nothing here is a stand-in: PostgreSQL is the distribution's server (``scripts/infra-deps.sh``
installs it), run as the ``postgres`` user when this process is root, in a temporary cluster that
listens on ``127.0.0.1`` only, on a free port.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

BIN = Path(sys.executable).parent
PG_USER = "tidecast"
PG_PASSWORD = "infra-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_env(**extra: str) -> dict[str, str]:
    """This environment with the virtualenv's ``bin/`` first on ``PATH`` (``mlflow server`` starts
    ``uvicorn`` by name) and no tracking URI inherited from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PGPASSWORD"] = PG_PASSWORD
    env.update(extra)
    return env


def wait_until(check: object, timeout: float, what: str, *, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.2)
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- " + str(log) + " ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise AssertionError(f"{what} not ready within {timeout:.0f} s{tail}")


class Process:
    """A child process in its own session, its output in ``log``; ``stop()`` ends it by its pid."""

    def __init__(self, name: str, argv: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.log = log
        self.env = env or venv_env()
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> Process:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process group this process leads (the way a machine dies)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._out is not None:
            self._out.close()
            self._out = None


# ------------------------------------------------------------------------------------ PostgreSQL
def pg_bindir() -> Path:
    """The folder of ``initdb``/``pg_ctl``/``postgres`` (Debian keeps them off ``PATH``)."""
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(found) / "pg_ctl").exists():
            return Path(found)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise AssertionError("no PostgreSQL server binaries (run scripts/infra-deps.sh: apt-get install postgresql)")


class Postgres:
    """A throw-away PostgreSQL cluster on ``127.0.0.1:port`` with password authentication, in a
    folder of its own under the system's temporary folder (the ``postgres`` user cannot enter
    pytest's, which are private to root); removed by ``stop()``."""

    def __init__(self, databases: tuple[str, ...] = ("mlflow", "tidecast")) -> None:
        self.databases = databases
        self.root = Path(tempfile.mkdtemp(prefix="tidecast-infra-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.bindir = pg_bindir()
        self.as_postgres = os.geteuid() == 0  # the server refuses to run as root

    def _run(self, *argv: str, timeout: float = 120) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv[:2])} failed: {done.stderr or done.stdout}")

    def start(self) -> Postgres:
        self.sockets.mkdir(exist_ok=True)
        pwfile = self.root / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
            for path in (self.sockets, pwfile):
                shutil.chown(path, "postgres")
            self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            PG_USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        pwfile.unlink()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        for db in self.databases:
            self.execute(f"CREATE DATABASE {db}", database="postgres")
        return self

    def url(self, database: str) -> str:
        """A SQLAlchemy URL without the password (libpq takes it from ``PGPASSWORD``)."""
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, *, database: str = "tidecast") -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, password=PG_PASSWORD, dbname=database, autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------- MLflow server
class MlflowServer:
    """``mlflow server`` on a PostgreSQL backend store with proxied artifacts in a local folder."""

    def __init__(self, root: Path, backend_uri: str) -> None:
        self.root = root
        self.backend_uri = backend_uri
        self.artifacts = root / "artifacts"
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: Process | None = None

    def argv(self) -> list[str]:
        return [
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", str(self.artifacts),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip

    def start(self, timeout: float = 180.0) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = Process("mlflow", self.argv(), cwd=self.root, log=self.root / "mlflow.log").start()
        wait_until(self.healthy, timeout, f"mlflow server at {self.uri}", log=self.process.log)
        return self

    def healthy(self) -> bool:
        if self.process is not None and (not self.process.alive() or "Traceback" in self.process.log.read_text()):
            raise AssertionError(f"mlflow server failed: {self.process.log.read_text()[-3000:]}")
        return httpx.get(f"{self.uri}/health", timeout=2).status_code == 200

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        # the port must be free again before a restart on it
        wait_until(lambda: not _listening(self.port), 30, f"port {self.port} released")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------------------------------ Dask cluster
class DaskCluster:
    """``dask scheduler`` and ``n`` ``dask worker`` processes (no nanny: a killed worker stays dead),
    each in a folder of its own, none of them seeing the projects' folders."""

    def __init__(self, root: Path, n_workers: int = 2) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.n_workers = n_workers
        self.scheduler: Process | None = None
        self.workers: list[Process] = []

    def start(self, timeout: float = 120.0) -> DaskCluster:
        home = self.root / "scheduler"
        self.scheduler = Process(
            "dask-scheduler",
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
            cwd=home, log=self.root / "scheduler.log",
        ).start()  # fmt: skip
        wait_until(lambda: _listening(self.port), timeout, f"dask scheduler at {self.address}", log=self.scheduler.log)
        for _ in range(self.n_workers):
            self.add_worker()
        self.wait_workers(self.n_workers, timeout)
        return self

    def add_worker(self) -> Process:
        index = len(self.workers)
        home = self.root / f"worker-{index}"
        worker = Process(
            f"dask-worker-{index}",
            [str(BIN / "dask"), "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--local-directory", str(home / "scratch"), "--name", f"w{index}"],
            cwd=home, log=self.root / f"worker-{index}.log",
        ).start()  # fmt: skip
        self.workers.append(worker)
        return worker

    def n_connected(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=10) as client:
            return len(client.scheduler_info()["workers"])

    def wait_workers(self, n: int, timeout: float = 120.0) -> None:
        wait_until(lambda: self.n_connected() == n, timeout, f"{n} dask workers", log=self.root / "scheduler.log")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
