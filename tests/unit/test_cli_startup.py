"""`tidecast --help` and a command's `--help` stay fast: the command modules import the layers they
drive inside each command, so building the app and printing its help import no library of the
layers below: no pandas, no numpy, no MLflow (and for `tidecast --help`, no pydantic)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
