"""The examples' leaderboards, end to end, against stored copies (issue 16: a redesign changes no figure).

Each example is copied to a temporary folder and run with the real CLI; the leaderboard that the run logs to
MLflow (``leaderboard.csv``, every metric unrounded) is compared with ``tests/golden/<example>.csv``: the same
candidates in the same ranks, the same kinds, parameters and statuses, (candidates tied on the selection
metric may swap), and every metric equal to 1e-9 relative (the timing columns are left out: they are measured, not computed).

The copies are exact for the machine they were recorded on (``tests/golden/machine.json``: the CPU's
vector instruction sets and the numeric libraries' versions). On another CPU or library version the
floating-point kernels sum in another order; float32 network training amplifies that, so there the
neural candidates are held to their status and a 5 % band, and every other figure to 1e-6 relative.

A change that moves a figure on purpose (a recalibrated interval, a faster MLP) regenerates the copies and
says why in its commit::

    TIDECAST_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/e2e/test_golden_leaderboards.py
"""

from __future__ import annotations

import json
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
LOOSE_RTOL = 1e-6  # another machine: the same computations, other rounding
NEURAL_RTOL = 0.05  # another machine: float32 training drifts with the rounding of its first steps
NEURAL_KINDS = {"mlp"}
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")

EXAMPLES = ["power", "meters", "hierarchy"]
METRIC = "mase"  # the three examples' selection.metric


def machine() -> dict[str, object]:
    """What decides the rounding of the numeric kernels: the CPU's vector instruction sets, the libraries' versions."""
    from importlib.metadata import version

    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    libraries = ("numpy", "scipy", "pandas", "numba", "torch", "lightgbm", "statsforecast", "mlforecast", "scikit-learn")
    return {"isa": [f for f in ISA_FLAGS if f in flags], "versions": {name: version(name) for name in libraries}}


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


def _differences(got: pd.DataFrame, want: pd.DataFrame, metric: str, *, exact: bool = True) -> list[str]:
    """What differs between two leaderboards, candidate by candidate.

    The ranking must be the same except between candidates tied on the selection metric (the hierarchy's
    reconciled seasonal naives score the same MASE to the last bits, so their order is the sort's choice).
    """
    got_cols = [c for c in got.columns if c not in TIMING]
    want_cols = [c for c in want.columns if c not in TIMING]
    if got_cols != want_cols:
        return [f"columns differ: {got_cols} != {want_cols}"]
    if sorted(got["candidate"]) != sorted(want["candidate"]):
        return [f"candidates differ: {sorted(got['candidate'])} != {sorted(want['candidate'])}"]
    problems: list[str] = []
    score = dict(zip(want["candidate"], want[metric].map(_number), strict=True))
    neural = set(want.loc[want["kind"].isin(NEURAL_KINDS), "candidate"]) if not exact else set()
    tolerance = RTOL if exact else LOOSE_RTOL
    for position, (a, b) in enumerate(zip(got["candidate"], want["candidate"], strict=True), start=1):
        if a != b and not (_close(score[a], score[b]) or {a, b} & neural):
            problems.append(f"rank {position}: {a} != stored {b} (not a tie on {metric})")
    got_by = got.set_index("candidate")
    for _, row in want.iterrows():
        name = row["candidate"]
        for column in got_cols:
            if column in ("candidate", "rank"):
                continue
            a, b = got_by.at[name, column], row[column]
            fa, fb = _number(a), _number(b)
            if fa is None or fb is None:
                if str(a) != str(b):
                    problems.append(f"{name}.{column}: {a!r} != stored {b!r}")
            elif not _close(fa, fb, NEURAL_RTOL if name in neural else tolerance):
                problems.append(f"{name}.{column}: {fa!r} != stored {fb!r}")
    return problems


def _close(a: float | None, b: float | None, rtol: float = RTOL) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12)


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
        (GOLDEN / "machine.json").write_text(json.dumps(machine(), indent=2) + "\n")
        return
    assert stored.exists(), f"no stored copy {stored}: run with TIDECAST_UPDATE_GOLDEN=1 once"
    want = pd.read_csv(stored, keep_default_na=False)
    recorded = json.loads((GOLDEN / "machine.json").read_text())
    problems = _differences(board, want, METRIC, exact=recorded == machine())
    assert not problems, f"{example}: the leaderboard changed:\n" + "\n".join(problems[:40])
