"""A missing optional part is one line naming the extra to install (issue 19: lean install).

The extras are installed in the test environment, so each test hides one from a fresh interpreter
with a meta-path finder that refuses it, as a venv without the extra would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tidecast.errors import MissingExtraError
from tidecast.extras import EXTRA_OF, install_hint, require

HIDE = """
import importlib.abc, sys
class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {top!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Hide())
"""


def _run_hidden(top: str, code: str) -> subprocess.CompletedProcess[str]:
    script = HIDE.format(top=top) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_require_returns_the_module_when_it_is_there() -> None:
    assert require("json", "anything").dumps([1]) == "[1]"


def test_require_names_the_extra_of_a_hidden_module() -> None:
    done = _run_hidden(
        "dash",
        """
        from tidecast.extras import require
        from tidecast.errors import MissingExtraError
        try:
            require("dash", "tidecast dashboard")
        except MissingExtraError as exc:
            print(exc)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tidecast dashboard needs the 'dashboard' extra: pip install 'tidecast[dashboard]'"


def test_a_missing_module_that_is_no_extra_is_named_by_itself() -> None:
    with pytest.raises(MissingExtraError, match=r"x needs the Python package 'tidecast_no_such_module', which is not installed"):
        require("tidecast_no_such_module", "x")


def test_every_optional_module_maps_to_an_extra_of_pyproject() -> None:
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(EXTRA_OF.values()) <= set(extras)
    assert install_hint("report") == "pip install 'tidecast[report]'"


@pytest.mark.parametrize(
    ("top", "command", "extra"),
    [("dash", ["dashboard"], "dashboard"), ("weasyprint", ["report", "--format", "pdf"], "report")],
)
def test_the_cli_says_which_extra_to_install(tmp_path, top: str, command: list[str], extra: str) -> None:
    """Through the real CLI: one line, exit 2 (the dashboard fails before any model is looked up;
    the PDF report needs a registered model first, so only the dashboard is checked end to end)."""
    if top == "weasyprint":  # to_pdf is reached only with a trained model: call it directly instead
        done = _run_hidden(
            top,
            """
            from pathlib import Path
            from tidecast.reporting.client import to_pdf
            from tidecast.errors import MissingExtraError
            try:
                to_pdf("<p>x</p>", Path("x.pdf"))
            except MissingExtraError as exc:
                print(exc)
            """,
        )
        assert done.returncode == 0, done.stderr
        assert (
            done.stdout.strip()
            == f"PDF output (--format pdf) needs the '{extra}' extra: pip install 'tidecast[{extra}]'"
        )
        return
    (tmp_path / "tidecast.yaml").write_text(
        "project: p\ndata: {source: d.csv, time_column: t, target_column: y, frequency: 1h}\n"
        "forecast: {input_window: 24h, horizon: 24h}\nmodels: [{name: naive, kind: naive}]\n"
    )
    done = _run_hidden(
        top,
        f"""
        import sys
        sys.argv = ["tidecast", *{command!r}, "--spec", {str(tmp_path)!r}]
        from tidecast.cli import main
        main()
        """,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"error: tidecast dashboard needs the '{extra}' extra: pip install 'tidecast[{extra}]'"], lines
