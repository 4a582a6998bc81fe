"""docs/production.md runs as written: its shell lines, in order, and its ``tidecast.yaml``.

The test gives the document a PostgreSQL cluster of its own (with the role it documents, and no
database yet: its ``createdb`` lines make them) and replaces the documented ports (5432, 5000,
8786, 8000), the ``/srv`` folder and the password by free ports, a temporary folder and the
cluster's password. Servers (``mlflow server``, ``dask scheduler``/``worker``, ``tidecast serve``,
``tidecast schedule``) start in the background, must answer, stay up for the lines after them and
are stopped at the end; ``export`` lines carry their variables to the next lines. The lines in
``NOT_RUN`` change the machine itself: the test says why, and fails if the document drops one.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.docs_commands import DocShell, shell_lines
from tests.infra.services import PG_PASSWORD, PG_USER, Postgres, Process, _listening, free_port, venv_env, wait_until

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "production.md"

NOT_RUN = {
    "apt-get install -y postgresql": "scripts/infra-deps.sh installs the package before the tests run",
    "runuser -u postgres -- psql -c": "the test's throw-away cluster is made by initdb with this role and password",
}


def yaml_block(text: str) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/production.md should hold one tidecast.yaml"
    return blocks[0]


class Rewrite:
    """The document's ports, folder and password replaced by this test's."""

    def __init__(self, pg_port: int, srv: Path) -> None:
        self.ports = {"5432": pg_port, "5000": free_port(), "8786": free_port(), "8000": free_port()}
        self.srv = srv

    def __call__(self, text: str) -> str:
        for documented, port in self.ports.items():
            text = re.sub(rf"\b{documented}\b", str(port), text)
        return text.replace("/srv/", f"{self.srv}/").replace("change-me", PG_PASSWORD)

    def port(self, documented: str) -> int:
        return self.ports[documented]


def n_workers(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=10) as client:
        return len(client.scheduler_info()["workers"])


def test_production_doc_runs_as_written(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    lines = shell_lines(DOC)
    for prefix in NOT_RUN:
        assert any(line.startswith(prefix) for line in lines), f"NOT_RUN names a line the document lost: {prefix}"
    assert PG_USER == "tidecast"  # the role the document creates

    postgres = Postgres(databases=())
    try:
        postgres.start()
        rewrite = Rewrite(postgres.port, tmp_path / "srv")
        project = tmp_path / "srv" / "tidecast" / "meters"
        project.mkdir(parents=True)
        (project / "tidecast.yaml").write_text(rewrite(yaml_block(text)))
        env = venv_env()
        env.pop("PGPASSWORD")  # the document exports it
        shell = DocShell(root=REPO, env=env)  # the document runs from a clone's root
        background: list[Process] = []
        try:
            _run_lines(lines, rewrite, shell, background, tmp_path)
        finally:
            for process in reversed(background):
                process.stop()
        # the topology did its work: a champion on the document's server, forecasts in its database
        assert not _listening(rewrite.port("5000"))  # stopped with the rest
        sources = dict(_query(postgres, "tidecast", "SELECT source, count(*) FROM predictions GROUP BY source"))
        aliases = _query(postgres, "mlflow", "SELECT name, alias, version FROM registered_model_aliases")
        assert sources.get("predict", 0) > 0, sources
        assert ("meters-prod", "champion", 1) in aliases, aliases
    finally:
        postgres.stop()


def _query(postgres: Postgres, database: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=postgres.port, user=PG_USER, password=PG_PASSWORD, dbname=database
    ) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def _run_lines(lines: list[str], rewrite: Rewrite, shell: DocShell, background: list[Process], tmp: Path) -> None:
    mlflow_port, dask_port, serve_port = rewrite.port("5000"), rewrite.port("8786"), rewrite.port("8000")
    address = f"tcp://127.0.0.1:{dask_port}"
    # documented long-running commands: line prefix -> (readiness check, seconds)
    servers: dict[str, tuple[Callable[[], bool], float]] = {
        "mlflow server": (
            lambda: httpx.get(f"http://127.0.0.1:{mlflow_port}/health", timeout=2).status_code == 200,
            240,
        ),
        "dask scheduler": (lambda: _listening(dask_port), 60),
        "cd /srv/dask/w1 && dask worker": (lambda: n_workers(address) >= 1, 60),
        "cd /srv/dask/w2 && dask worker": (lambda: n_workers(address) >= 2, 60),
        "tidecast serve": (
            lambda: httpx.get(f"http://127.0.0.1:{serve_port}/ready", timeout=2).status_code == 200,
            180,
        ),
    }
    for documented in lines:
        if any(documented.startswith(prefix) for prefix in NOT_RUN):
            continue
        line = rewrite(documented)
        if documented == "tidecast schedule":
            process = _background(line, shell, background, tmp)
            wait_until(lambda p=process: "SIGTERM or Ctrl-C stops" in p.log.read_text(), 120, line, log=process.log)
            continue
        ready = next((check for prefix, check in servers.items() if documented.startswith(prefix)), None)
        if ready is not None:
            process = _background(line, shell, background, tmp)
            check, timeout = ready

            def up(check: Callable[[], bool] = check, process: Process = process) -> bool:
                assert process.alive(), process.log.read_text()[-3000:]
                return check()

            wait_until(up, timeout, line, log=process.log)
            continue
        if documented.startswith("export "):
            _export(line, shell)
            continue
        rest = shell.change_dir(line)
        if rest is None:
            continue
        done = shell.run(rest, timeout=900)
        assert done.returncode == 0, f"`{documented}` exited {done.returncode}:\n{done.stdout[-4000:]}"
        _check_output(documented, done)


def _background(line: str, shell: DocShell, background: list[Process], tmp: Path) -> Process:
    name = re.sub(r"[^a-z0-9]+", "-", line.lower())[:40]
    process = Process(name, ["bash", "-c", line], cwd=shell.cwd, log=tmp / f"{name}.log", env=shell.env).start()
    background.append(process)
    return process


def _export(line: str, shell: DocShell) -> None:
    """Run an ``export`` line and keep the variables it sets for the next lines."""
    done = subprocess.run(
        ["bash", "-c", f"{line} && env -0"], cwd=shell.cwd, env=shell.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    shell.env = dict(item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)


def _check_output(documented: str, done: Any) -> None:
    if documented.startswith("curl -s http://127.0.0.1:5000/health"):
        assert done.stdout.strip() == "OK", done.stdout
    if documented.startswith("curl -s http://127.0.0.1:8000/metadata"):
        assert '"name":"meters-prod"' in done.stdout.replace(" ", ""), done.stdout[:2000]
    if documented == "tidecast run":
        assert "lightgbm" in done.stdout, done.stdout[-3000:]


@pytest.fixture(autouse=True)
def _no_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_compose_file_is_in_step_with_the_doc() -> None:
    """docker-compose.yml runs the pieces docs/production.md documents, configured the same way."""
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "mlflow", "dask-scheduler", "dask-worker", "tidecast"} <= set(services)
    mlflow = services["mlflow"]["command"]
    assert "--backend-store-uri=postgresql://tidecast@postgres:5432/mlflow" in mlflow
    assert any(arg.startswith("--artifacts-destination=") for arg in mlflow)
    assert "CREATE DATABASE mlflow" in (REPO / "scripts" / "postgres-init.sql").read_text()
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "tidecast"
    worker = services["dask-worker"]["command"]
    assert worker[:2] == ["worker", "tcp://dask-scheduler:8786"] and "--nthreads" in worker
    assert services["dask-scheduler"]["command"][:1] == ["scheduler"]
    for name in ("mlflow", "tidecast"):
        assert services[name]["environment"]["PGPASSWORD"].startswith("${PGPASSWORD")  # never a literal
    text = DOC.read_text()
    for documented in (
        "mlflow server --backend-store-uri postgresql://tidecast@127.0.0.1:5432/mlflow",
        "dask worker tcp://127.0.0.1:8786 --nthreads 1",
        "dask scheduler --host 127.0.0.1 --port 8786",
    ):
        assert documented in text
    for published in (s.get("ports", []) for s in services.values()):
        assert all(port.startswith("127.0.0.1:") for port in published), published
