"""Every shell line of README.md and docs/*.md works as written, on a copy of the examples.

The lines of the ```bash blocks run one by one, in document order, with the venv's ``bin`` first
on PATH, in a copy of the repository's tracked ``examples/`` (and a ``.venv`` link beside it, so
``../../.venv/bin/tidecast`` resolves). Each document starts at the copy's root; its ``cd`` lines
move the folder for the lines after them, across its blocks. Servers (``tidecast serve``, ``ui``,
``dashboard``, ``schedule`` without ``--print-cron``/``--once``) start in the background, must
answer their probe, stay up for the lines after them (the ``curl`` lines), and are stopped at the
next server line or the document's end. The power example's training (minutes) runs once, in the
module's fixture, before the documents; their ``tidecast run`` lines then find it cached, except
the ones that force or change something.

Lines that cannot run here are listed in ``NOT_RUN`` with the reason; a listed line that no
document has any more fails the test, so the list cannot go stale. ``docs/production.md`` is not
collected: tests/infra runs its lines against PostgreSQL and an MLflow server.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.docs_commands import DocShell, command_words, option, shell_lines

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
NOT_COLLECTED = {"production.md"}  # tests/infra runs docs/production.md (PostgreSQL, MLflow server)
DOCUMENTS = [
    doc
    for doc in [
        "README.md",
        *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md") if p.name not in NOT_COLLECTED),
    ]
    if shell_lines(REPO / doc)
]

# line prefix -> why the test cannot run it
NOT_RUN: dict[str, str] = {
    "make demo": "creates a virtualenv and installs the package (the test already runs in one); "
    "what it then runs, examples/power's `tidecast run`, is the README's next block",
    "make test ": "is the test suite itself",
    "make test-faults": "the long fault suites (minutes); CI runs them as `make test-faults`",
    "make fuzz": "thorough fuzzing with fresh random cases (minutes); not part of CI",
    "make test-infra": "starts PostgreSQL, an MLflow server and Dask workers (minutes); CI runs it as `make test-infra`",
    "curl -s localhost:8000/forecast -H 'content-type: application/json' -d '{\n  \"series\"": "an abbreviated "
    "payload ('... 288 in all ...'); tests/integration/test_serving.py sends whole ones",
    "curl -s localhost:8000/invocations": "an abbreviated payload ('...'); tests/integration sends whole ones",
    "curl -s localhost:8000/forecast -H 'content-type: application/json' -d @meters.json": "needs a server on "
    "examples/hierarchy and a request body written by the reader; tests/integration covers hierarchical /forecast",
    "docker build": "needs Docker",
    "export TIDECAST_ADMIN_TOKEN=$(python": "belongs to the Docker walk-through (the token for the compose service)",
    "docker compose": "needs Docker",
    "(cd examples/power && MLFLOW_TRACKING_URI=http://127.0.0.1:5000": "needs the compose file's MLflow server",
}
DOCKER_READY = "curl -s localhost:8000/ready"  # the last line of the Docker walk-through (no comment)
NOT_RUN_EXACT = {DOCKER_READY: "asks the compose service started by `docker compose up -d tidecast` (needs Docker)"}

# documented exit codes other than 0, by line prefix (the line's own comment says which)
EXPECTED_EXIT: dict[str, set[int]] = {"tidecast monitor --fail-on-drift": {0, 3, 4, 5}}

# documents known to fail as written, owned elsewhere: strict xfail, so the fix flips the test to
# XPASS (a failure) and the entry has to go
KNOWN_BROKEN: dict[str, str] = {}

LINE_TIMEOUT = 1200.0
READY_TIMEOUT = 120.0


def skip_reason(line: str) -> str | None:
    if line in NOT_RUN_EXACT:
        return NOT_RUN_EXACT[line]
    return next((why for prefix, why in NOT_RUN.items() if line.startswith(prefix)), None)


def tidecast_command(line: str) -> tuple[str, list[str]] | None:
    """(subcommand, words) of a ``tidecast`` line, global options (--env NAME, --debug) skipped."""
    words = command_words(line)
    if not words or Path(words[0]).name != "tidecast":
        return None
    rest = words[1:]
    while rest and rest[0].startswith("--"):
        rest = rest[2:] if rest[0] == "--env" else rest[1:]
    return (rest[0], rest) if rest else None


def server_probe(line: str) -> tuple[str | None, str | None] | None:
    """(probe URL, ready text) of a long-running line; None for a line that returns."""
    command = tidecast_command(line)
    if command is None:
        return None
    name, words = command
    if name == "serve":
        return f"http://127.0.0.1:{option(words, '--port', '8000')}/ready", None
    if name == "ui":
        return f"http://127.0.0.1:{option(words, '--port', '5000')}/health", None
    if name == "dashboard":
        return f"http://127.0.0.1:{option(words, '--port', '8050')}/", None
    if name == "schedule" and "--print-cron" not in words and "--once" not in words:
        return None, "history:"
    return None


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def latest_training_run(project: Path) -> str:
    """The id of the project's newest training run (a parent run of the tracking store)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / '.tidecast' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, "tags.`tidecast.kind` = 'training'", order_by=["attributes.start_time DESC"], max_results=50
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parents, f"no training run in {project}"
    return parents[0].info.run_id


# placeholder word -> its value, computed from the folder the line runs in
SUBSTITUTE: dict[str, Callable[[Path], str]] = {"RUN_ID": latest_training_run}


def check_predict(cwd: Path, output: str) -> None:
    forecast = pd.read_csv(cwd / "forecast.csv")
    assert len(forecast) == 288 and forecast["yhat"].notna().all(), forecast
    assert (cwd / "forecast.png").stat().st_size > 10_000
    assert re.search(r"future exogenous values from \S*data/weather_forecast\.csv\n", output), output


# line prefix -> what its result must show besides exit code 0
CHECKS: dict[str, Callable[[Path, str], None]] = {
    "tidecast predict --model power-demo --input data/power.csv --output forecast.csv --plot forecast.png": check_predict,
}


def write_meters_export(path: Path) -> None:
    """A reader's own long-format export: hourly ``kw`` of five meters (``series_id``)."""
    from tidecast.datasets import make_meters

    make_meters(n_series=5, days=60).rename(columns={"load": "kw"}).to_csv(path, index=False)


# files of the reader's own that documented lines read, under the shell's HOME -> how the test writes them
READER_FILES: dict[str, Callable[[Path], None]] = {"exports/meters.csv": write_meters_export}


def doc_shell(root: Path) -> DocShell:
    """The shell of a workspace ``root``: the venv's bin first on PATH, HOME at ``root/home`` (holding
    READER_FILES), none of the caller's tidecast/MLflow variables."""
    home = root / "home"
    for name, write in READER_FILES.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        if not (home / name).exists():
            write(home / name)
    dropped = ("TIDECAST_ENV", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ADMIN_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(home), COLUMNS="200", NO_COLOR="1")
    return DocShell(root, env)


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocShell]:
    """A copy of the tracked examples with examples/power trained once; the shell that runs the docs."""
    root = tmp_path_factory.mktemp("docs")
    tracked = subprocess.run(
        ["git", "ls-files", "examples"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    (root / ".venv").symlink_to(VENV_BIN.parent, target_is_directory=True)
    shell = doc_shell(root)
    shell.cwd = root / "examples" / "power"
    trained = shell.run("tidecast run", timeout=LINE_TIMEOUT)
    assert trained.returncode == 0, trained.stdout[-5000:]
    yield shell
    shell.stop_server()


def run_document(shell: DocShell, doc: str, logs: Path) -> list[str]:
    """Run every line of ``doc``; the failures, one paragraph each."""
    failures: list[str] = []
    shell.start_document()
    for n, line in enumerate(shell_lines(REPO / doc)):
        if skip_reason(line) is not None:
            continue
        try:
            rest = shell.change_dir(line)
        except AssertionError as exc:
            failures.append(str(exc))
            continue
        if rest is None:
            continue
        for word, value in SUBSTITUTE.items():
            if word in command_words(rest):
                rest = rest.replace(word, value(shell.cwd))
        where = f"{doc} ({shell.cwd.relative_to(shell.root)}): `{line}`"
        probe = server_probe(rest)
        if probe is not None:
            url, ready_text = probe
            shell.stop_server()
            if url is not None and not port_free(port_of(url)):
                failures.append(f"{where}: port {port_of(url)} is taken by another process")
                continue
            server = shell.start(rest, url, ready_text, logs / f"{Path(doc).stem}-{n}.log")
            try:
                server.wait_ready(READY_TIMEOUT)
            except AssertionError as exc:
                failures.append(f"{where}: {exc}")
                shell.stop_server()
            continue
        try:
            result = shell.run(rest, timeout=LINE_TIMEOUT)
        except subprocess.TimeoutExpired:
            failures.append(f"{where} did not finish in {LINE_TIMEOUT:.0f} s")
            continue
        expected = next((codes for prefix, codes in EXPECTED_EXIT.items() if line.startswith(prefix)), {0})
        if result.returncode not in expected or "Traceback" in result.stdout:
            failures.append(f"{where} exited {result.returncode}:\n{result.stdout[-2500:]}")
            continue
        check = next((c for prefix, c in CHECKS.items() if line.startswith(prefix)), None)
        if check is not None:
            try:
                check(shell.cwd, result.stdout)
            except (AssertionError, OSError, ValueError) as exc:
                failures.append(f"{where}: {exc}")
    shell.stop_server()
    return failures


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(doc, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BROKEN[doc]))
        if doc in KNOWN_BROKEN
        else doc
        for doc in DOCUMENTS
        if any(skip_reason(line) is None for line in shell_lines(REPO / doc))  # e.g. docs/hierarchy.md: none
    ],
)
def test_documented_commands_work_as_written(shell: DocShell, doc: str, tmp_path: Path) -> None:
    failures = run_document(shell, doc, tmp_path)
    assert not failures, f"{len(failures)} line(s) of {doc} fail as written:\n\n" + "\n\n".join(failures)


def test_every_excluded_line_is_still_documented() -> None:
    lines = [line for doc in DOCUMENTS for line in shell_lines(REPO / doc)]
    stale = [p for p in NOT_RUN if not any(line.startswith(p) for line in lines)]
    stale += [p for p in NOT_RUN_EXACT if p not in lines]
    assert not stale, f"NOT_RUN lists lines no document has: {stale}"
    assert not [p for p in CHECKS if not any(line.startswith(p) for line in lines)]
