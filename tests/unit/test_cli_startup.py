"""`tidecast --help` and a command's `--help` stay fast: the command modules import the layers they
drive inside each command, so building the app and printing its help import no library of the
layers below: no pandas, no numpy, no MLflow (and for `tidecast --help`, no pydantic)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("pandas", "numpy", "mlflow", "sqlalchemy", "fastapi", "plotly", "matplotlib", "statsforecast", "torch")


@pytest.mark.parametrize(
    ("args", "heavy"),
    [
        (["--help"], (*HEAVY, "pydantic")),
        # a command's own options go through typer's parameter adapters, which import pydantic themselves
        (["run", "--help"], HEAVY),
        (["predict", "--help"], HEAVY),
        (["init", "--help"], HEAVY),
    ],
)
def test_help_imports_no_heavy_library(args: list[str], heavy: tuple[str, ...]) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from tidecast.cli import app
        try:
            app({args!r}, standalone_mode=False)
        except SystemExit:
            pass
        print("HEAVY", sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def test_every_command_is_registered_in_the_documented_order() -> None:
    from tidecast.cli import app

    names = [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]
    assert names[:4] == ["run", "status", "dag", "schema"]
    for name in ("init", "monitor", "schedule", "report", "dashboard", "serve", "predict", "ui", "compare",
                 "promote", "rollback", "reproduce"):
        assert name in names


NO_OP_LIBRARIES = ("statsforecast", "mlforecast", "lightgbm", "sklearn", "torch", "hierarchicalforecast", "optuna",
                   "mlflow", "shap", "plotly", "matplotlib")


@pytest.mark.slow
def test_no_op_run_imports_no_model_library_nor_mlflow(tmp_path: Path) -> None:
    """A `tidecast run` whose every step is cached plans, checks that the tracked run and the registered
    version are still there (track's check reads the registry's SQLite) and prints the leaderboard and
    the registry line, without importing a model library, MLflow or a drawing library."""
    from tests.conftest import make_project

    models = "  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}\n"
    project = make_project(tmp_path / "p", days=20, models=models)
    env = {**os.environ, "COLUMNS": "200"}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV"):
        env.pop(var, None)
    first = subprocess.run(
        [sys.executable, "-m", "tidecast.cli", "run"], cwd=project, capture_output=True, text=True, timeout=600, env=env
    )
    assert first.returncode == 0, first.stderr[-3000:]
    code = textwrap.dedent(
        f"""
        import sys
        from tidecast.cli import main
        sys.argv = ["tidecast", "run"]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        print("IMPORTED", sorted(m for m in sys.modules if m.split(".")[0] in {NO_OP_LIBRARIES!r}))
        """
    )
    again = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 steps ran, 8 cached" in again.stdout, again.stdout[-2000:]
    assert "registry:" in again.stdout and "champion" in again.stdout, again.stdout[-2000:]
    assert "IMPORTED []" in again.stdout, again.stdout[-1000:]
