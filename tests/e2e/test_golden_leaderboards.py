"""The examples' leaderboards, end to end, against stored copies (issue 16: a redesign changes no figure).

Each example is copied to a temporary folder and run with the real CLI; the leaderboard that the run logs to
MLflow (``leaderboard.csv``, every metric unrounded) is compared with ``tests/golden/<example>.csv``: the same
candidates in the same ranks, the same kinds, parameters and statuses, and every metric equal to 1e-9
relative (the timing columns are left out: they are measured, not computed).

A change that moves a figure on purpose (a recalibrated interval, a faster MLP) regenerates the copies and
says why in its commit::

    TIDECAST_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/e2e/test_golden_leaderboards.py
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.cli import tidecast

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("TIDECAST_UPDATE_GOLDEN") == "1"
TIMING = {"fit_seconds", "predict_seconds"}
RTOL = 1e-9

EXAMPLES = ["power", "meters", "hierarchy"]


def _project(name: str, tmp_path: Path) -> Path:
    project = tmp_path / name
    shutil.copytree(
        ROOT / "examples" / name,
        project,
        ignore=shutil.ignore_patterns(".tidecast", "tidecast.lock", "__pycache__", "meters.parquet"),
    )
    shutil.copytree(ROOT / "examples" / "plugins", tmp_path / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    data = project / "data"
    if (project / "make_data.py").exists() and not (data.exists() and any(data.iterdir())):
        subprocess.run([sys.executable, "make_data.py"], cwd=project, check=True, capture_output=True, timeout=600)
    return project


def _logged_leaderboard(project: Path) -> pd.DataFrame:
    boards = sorted((project / ".tidecast" / "mlartifacts").glob("*/artifacts/leaderboard.csv"), key=lambda p: p.stat().st_mtime)
    assert boards, "the run logged no leaderboard.csv"
    return pd.read_csv(boards[-1], keep_default_na=False)


def _number(value: object) -> float | None:
    """``value`` as a float (an empty cell is NaN), or None for text such as a candidate's name."""
    if value == "":
        return math.nan
    if isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _differences(got: pd.DataFrame, want: pd.DataFrame) -> list[str]:
    problems: list[str] = []
    got_cols = [c for c in got.columns if c not in TIMING]
    want_cols = [c for c in want.columns if c not in TIMING]
    if got_cols != want_cols:
        return [f"columns differ: {got_cols} != {want_cols}"]
    if list(got["candidate"]) != list(want["candidate"]):
        return [f"ranking differs: {list(got['candidate'])} != {list(want['candidate'])}"]
    for column in got_cols:
        for (i, a), b in zip(got[column].items(), want[column], strict=True):
            where = f"{got['candidate'][i]}.{column}"
            fa, fb = _number(a), _number(b)
            if fa is None or fb is None:
                if str(a) != str(b):
                    problems.append(f"{where}: {a!r} != stored {b!r}")
            elif not (math.isnan(fa) and math.isnan(fb)) and not math.isclose(fa, fb, rel_tol=RTOL, abs_tol=1e-12):
                problems.append(f"{where}: {fa!r} != stored {fb!r}")
    return problems


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_leaderboard_matches_the_stored_copy(example: str, tmp_path: Path) -> None:
    project = _project(example, tmp_path)
    result = tidecast("run", cwd=project, timeout=1700)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    board = _logged_leaderboard(project)
    stored = GOLDEN / f"{example}.csv"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        board.drop(columns=[c for c in board.columns if c in TIMING]).to_csv(stored, index=False)
        return
    assert stored.exists(), f"no stored copy {stored}: run with TIDECAST_UPDATE_GOLDEN=1 once"
    want = pd.read_csv(stored, keep_default_na=False)
    problems = _differences(board, want)
    assert not problems, f"{example}: the leaderboard changed:\n" + "\n".join(problems[:40])
