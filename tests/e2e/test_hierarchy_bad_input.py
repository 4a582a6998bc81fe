"""A hierarchy whose data is wrong, through the real CLI: one clear line, exit code 2, nothing cached."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from tests.e2e.cli import assert_clean_failure, tidecast

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hierarchy"

SPEC = """\
project: grid-bad
data: {source: data/grid.csv, series_column: series_id, time_column: timestamp, target_column: load, frequency: h}
hierarchy: {levels: [feeder, substation]}
forecast: {input_window: 1d, horizon: 12h}
backtest: {folds: 2}
models:
  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}
"""


def _project(root: Path, frame: pd.DataFrame) -> Path:
    (root / "data").mkdir(parents=True)
    frame.to_csv(root / "data" / "grid.csv", index=False)
    (root / "tidecast.yaml").write_text(SPEC)
    return root


def _grid() -> pd.DataFrame:
    spec = importlib.util.spec_from_file_location("hierarchy_make_data", EXAMPLE / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(days=6, seed=2)


def _fails_cleanly(project: Path, *needles: str) -> str:
    return assert_clean_failure(tidecast("run", cwd=project, timeout=120), project, *needles)


def test_aggregate_rows_that_do_not_add_up(tmp_path: Path) -> None:
    frame = _grid()
    at = (frame["series_id"] == "S2") & (frame["timestamp"] == pd.Timestamp("2024-03-03 17:00"))
    frame.loc[at, "load"] *= 1.05  # the substation reads 5 % more than its meters at one hour
    _fails_cleanly(
        _project(tmp_path / "p", frame), "grid.csv: hierarchy: levels do not add up",
        "substation 'S2' at 2024-03-03 17:00:00", "1 of 288 values off",
    )


def test_levels_that_do_not_nest(tmp_path: Path) -> None:
    frame = _grid()
    frame.loc[frame["series_id"] == "meter_02", "substation"] = "S2"  # F1's meters disagree on its substation
    _fails_cleanly(_project(tmp_path / "p", frame), "feeder 'F1' lies in several substations", "meter_02")
