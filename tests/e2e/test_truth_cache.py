"""What ``status`` and ``run`` say is true (issue 15, items 1 and 2), through the real CLI.

1. Plugin code and library versions are in the cache key: editing a plugin's body or upgrading a
   library makes the model steps stale, with the reason in words, and the re-run shows new results.
2. The tracking store is in ``track``'s key and a cached ``track`` is checked against it: another
   ``MLFLOW_TRACKING_URI`` or a deleted ``.tidecast/mlflow.db`` re-runs ``track`` into the store in
   use, and the registry line is read back from that store.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_project
from tests.e2e.cli import assert_clean_failure, tidecast

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLUGIN_MODELS = """\
  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}
  - {name: seasonal_median, kind: "my_models:build", params: {season_length: 1d, seasons: 4}}
"""


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if env is None:
        result = tidecast(*args, cwd=cwd)
    else:
        import sys

        full = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", **env}
        result = subprocess.run(
            [sys.executable, "-m", "tidecast.cli", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env=full,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def _rows(text: str) -> dict[str, tuple[str, str]]:
    """``step -> (status, why)`` from ``tidecast status``'s table (wide terminal: one line per step)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line)]
        if len(cells) > 4 and cells[2] in {"fresh", "stale", "missing"}:
            rows[cells[1]] = (cells[2], cells[3])
    return rows


def _ran(text: str) -> int:
    match = re.search(r"(\d+) steps? ran, (\d+) cached", text)
    assert match, text
    return int(match.group(1))


def _score(text: str, candidate: str) -> str:
    line = next(line for line in text.splitlines() if f" {candidate} " in line and "ok" in line)
    return re.findall(r"\d+\.\d+", line)[0]


@pytest.fixture
def plugin_project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "p", days=30, models=PLUGIN_MODELS)
    shutil.copy(EXAMPLES / "plugins" / "my_models.py", root / "my_models.py")
    return root


def test_editing_a_plugin_body_makes_the_model_steps_stale(plugin_project: Path) -> None:
    first = _cli("run", "--until", "select", cwd=plugin_project)
    assert _ran(first.stdout) == 5
    before = _score(first.stdout, "seasonal_median")
    assert _rows(_cli("status", cwd=plugin_project).stdout)["backtest"] == ("fresh", "up to date")

    plugin = plugin_project / "my_models.py"
    plugin.write_text(plugin.read_text().replace('out["yhat"] = np.median(', 'out["yhat"] = np.mean('))
    rows = _rows(_cli("status", cwd=plugin_project).stdout)
    assert rows["backtest"] == ("stale", "plugin my_models.py changed")
    assert rows["select"] == ("stale", "upstream 'backtest' changed; plugin my_models.py changed")
    assert rows["ingest"][0] == rows["features"][0] == "fresh"

    second = _cli("run", "--until", "select", cwd=plugin_project)
    assert _ran(second.stdout) == 2  # backtest and select, not the data steps
    assert _score(second.stdout, "seasonal_median") != before
    assert _score(second.stdout, "seasonal_naive") == _score(first.stdout, "seasonal_naive")


def test_a_project_module_the_plugin_imports_is_in_the_key(plugin_project: Path) -> None:
    (plugin_project / "helpers.py").write_text(
        "def centre(values, axis):\n    import numpy as np\n\n    return np.median(values, axis=axis)\n"
    )
    plugin = plugin_project / "my_models.py"
    plugin.write_text(
        plugin.read_text().replace(
            'out["yhat"] = np.median(table[:, idx], axis=0)', 'out["yhat"] = centre(table[:, idx], 0)'
        )
        + "\n\nfrom helpers import centre  # noqa: E402\n"
    )
    first = _cli("run", "--until", "backtest", cwd=plugin_project)
    (plugin_project / "helpers.py").write_text((plugin_project / "helpers.py").read_text().replace("median", "mean"))
    assert _rows(_cli("status", cwd=plugin_project).stdout)["backtest"] == ("stale", "plugin helpers.py changed")
    second = _cli("run", "--until", "backtest", cwd=plugin_project)
    assert _ran(second.stdout) == 1 and _score(second.stdout, "seasonal_median") != _score(
        first.stdout, "seasonal_median"
    )


def test_a_library_upgrade_makes_its_candidates_stale(tmp_path: Path) -> None:
    """An "upgrade" of statsforecast: a distribution's metadata with a newer version ahead of the
    installed one on the path (the library's code is the installed one: only its version is read)."""
    from importlib.metadata import version

    project = make_project(
        tmp_path / "p",
        days=30,
        models="  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}\n  - {name: ets, kind: autoets, params: {season_length: 1d}}\n",
    )
    _cli("run", "--until", "backtest", cwd=project)
    shadow = tmp_path / "upgraded" / "statsforecast-99.0.0.dist-info"
    shadow.mkdir(parents=True)
    (shadow / "METADATA").write_text("Metadata-Version: 2.1\nName: statsforecast\nVersion: 99.0.0\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "upgraded"), os.environ.get("PYTHONPATH", "")])}
    rows = _rows(_cli("status", cwd=project, env=env).stdout)
    assert rows["backtest"] == ("stale", f"statsforecast {version('statsforecast')} → 99.0.0")
    assert rows["features"][0] == "fresh"
    assert _rows(_cli("status", cwd=project).stdout)["backtest"][0] == "fresh"


def _store_runs(db: Path) -> set[str]:
    with sqlite3.connect(db) as con:
        return {r[0] for r in con.execute("SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active'")}


def _champion(db: Path, name: str) -> str | None:
    with sqlite3.connect(db) as con:
        row = con.execute(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = 'champion'", (name,)
        ).fetchone()
    return None if row is None else str(row[0])


def _run_id(text: str) -> str:
    match = re.search(r"MLflow run ([0-9a-f]{32})", text)
    assert match, text
    return match.group(1)


@pytest.fixture(scope="module")
def _trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    project = make_project(
        tmp_path_factory.mktemp("trained") / "p",
        days=30,
        models="  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}\n",
    )
    first = _cli("run", "--until", "track", cwd=project)
    assert "registry: small v1 → champion" in first.stdout
    return project, _run_id(first.stdout)


@pytest.fixture
def tracked(_trained: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    """A copy of a project trained up to ``track`` (the default store is the project's: it moves
    with the folder, and the copy's cached ``track`` still holds there) and its run id."""
    project, run_id = _trained
    copy = shutil.copytree(project, tmp_path / "p")
    assert run_id in _store_runs(copy / ".tidecast" / "mlflow.db")
    assert _rows(_cli("status", cwd=copy).stdout)["track"] == ("fresh", "up to date")
    return copy, run_id


def test_another_tracking_store_reruns_track_into_it(tracked: tuple[Path, str], tmp_path: Path) -> None:
    project, _ = tracked
    other = tmp_path / "other.db"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{other}"}
    assert _rows(_cli("status", cwd=project, env=env).stdout)["track"] == ("stale", "tracking store changed")
    moved = _cli("run", "--until", "track", cwd=project, env=env)
    assert _ran(moved.stdout) == 1
    run_2 = _run_id(moved.stdout)
    assert run_2 in _store_runs(other) and run_2 not in _store_runs(project / ".tidecast" / "mlflow.db")
    assert "registry: small v1 → champion" in moved.stdout and _champion(other, "small") == "1"
    # back on the default store: its cached track still holds there
    assert _rows(_cli("status", cwd=project).stdout)["track"] == ("fresh", "reused from the cache of an earlier run")


def test_a_deleted_store_reruns_track_and_the_registry_line_is_true(tracked: tuple[Path, str]) -> None:
    project, run_1 = tracked
    default_db = project / ".tidecast" / "mlflow.db"
    default_db.unlink()
    rows = _rows(_cli("status", cwd=project).stdout)
    assert rows["track"] == ("stale", f"run {run_1[:4]}… is missing from the store")
    assert rows["select"] == ("fresh", "up to date")
    rerun = _cli("run", "--until", "track", cwd=project)
    assert _ran(rerun.stdout) == 1
    run_3 = _run_id(rerun.stdout)
    assert run_3 in _store_runs(default_db) and "registry: small v1 → champion" in rerun.stdout
    assert _champion(default_db, "small") == "1"
    assert _rows(_cli("status", cwd=project).stdout)["track"] == ("fresh", "up to date")


def test_the_registry_line_is_read_back_from_the_store(tracked: tuple[Path, str]) -> None:
    project, _ = tracked
    with sqlite3.connect(project / ".tidecast" / "mlflow.db") as con:  # the alias moved away meanwhile
        con.execute("DELETE FROM registered_model_aliases WHERE name = 'small' AND alias = 'champion'")
    again = _cli("run", "--until", "track", cwd=project)
    assert _ran(again.stdout) == 0
    assert "registry: small v1 (no alias now; champion: none)" in again.stdout and "→ champion" not in again.stdout


def test_a_plugin_that_does_not_parse_is_one_line(plugin_project: Path) -> None:
    plugin = plugin_project / "my_models.py"
    plugin.write_text(plugin.read_text().replace("def build(", "def build(("))
    status = tidecast("status", cwd=plugin_project)
    assert_clean_failure(status, plugin_project, "my_models.py cannot be parsed", "line ")
    assert_clean_failure(tidecast("run", cwd=plugin_project), plugin_project, "my_models")


def test_a_tracking_store_that_does_not_answer_fails_before_any_step(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        days=30,
        models="  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}\n",
    )
    spec = project / "tidecast.yaml"
    spec.write_text(spec.read_text() + "tracking: {uri: 'http://127.0.0.1:9'}\n")
    assert_clean_failure(tidecast("run", cwd=project), project, "http://127.0.0.1:9", "unreachable")
