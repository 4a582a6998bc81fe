"""The leaves every layer leans on: the frame schema (tidecast.frames), its one quantile-column parser,
the one "did you mean" (tidecast.errors) and the spec package's import boundary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tidecast.errors import closest, did_you_mean
from tidecast.frames import (
    ID,
    TIME,
    future_grid,
    future_index,
    is_sorted,
    quantile_column,
    quantile_columns,
    quantile_of,
    quantiles_in,
    series_bounds,
    tail_per_series,
)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9, 0.025, 0.975, 1e-05, 0.99999])
def test_quantile_of_reads_back_what_quantile_column_writes(q: float) -> None:
    assert quantile_of(quantile_column(q)) == pytest.approx(q)


@pytest.mark.parametrize("column", ["yhat", "y", "ds", "unique_id", "quality", "q", "qx", "q1.5", "q0", "q1", "q-0.1", "q0.1_direct", " q0.1", "fold", 3, None])
def test_quantile_of_refuses_what_is_not_a_quantile_column(column: object) -> None:
    assert quantile_of(column) is None


def test_quantile_columns_by_increasing_quantile_from_a_frame_or_its_names() -> None:
    frame = pd.DataFrame(columns=[ID, TIME, "yhat", "q0.9", "q0.1", "quality", "q0.5"])
    assert quantile_columns(frame) == ["q0.1", "q0.5", "q0.9"]
    assert quantile_columns(list(frame.columns)) == ["q0.1", "q0.5", "q0.9"]
    assert quantiles_in(frame.columns) == (0.1, 0.5, 0.9)
    assert quantile_columns(["yhat"]) == [] and quantiles_in([]) == ()


def test_is_sorted_and_series_bounds() -> None:
    frame = pd.DataFrame({ID: ["a", "a", "b"], TIME: pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01"])})
    assert is_sorted(frame)
    assert not is_sorted(frame.iloc[::-1].reset_index(drop=True))
    starts, stops = series_bounds(frame[ID].to_numpy())
    assert starts.tolist() == [0, 2] and stops.tolist() == [2, 3]


def test_tail_per_series_keeps_the_last_rows_of_each_series_in_order() -> None:
    frame = pd.DataFrame({ID: ["a"] * 4 + ["b"] * 2, TIME: pd.date_range("2024-01-01", periods=6, freq="h"), "y": np.arange(6.0)})
    assert tail_per_series(frame, 2)["y"].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert tail_per_series(frame, None)["y"].tolist() == frame["y"].tolist()


def test_future_index_and_future_grid_agree() -> None:
    last = pd.DataFrame({ID: ["a", "b"], TIME: pd.to_datetime(["2024-01-01 00:00", "2024-01-01 05:00"])})
    index = future_index(last, 3, "h")
    assert index[ID].tolist() == ["a"] * 3 + ["b"] * 3
    assert index[TIME].iloc[0] == pd.Timestamp("2024-01-01 01:00") and index[TIME].iloc[-1] == pd.Timestamp("2024-01-01 08:00")
    grid = future_grid(pd.DatetimeIndex(last[TIME]), 3, "h")
    assert list(grid) == list(index[TIME])


def test_did_you_mean_names_the_closest_choice_or_nothing() -> None:
    assert did_you_mean("horizn", ["horizon", "input_window"]) == " (did you mean 'horizon'?)"
    assert did_you_mean("zzz", ["horizon", "input_window"]) == ""
    assert closest("pis", ["psi", "ks_pvalue"], cutoff=0.5) == "psi"
    assert closest("pis", ["psi", "ks_pvalue"], cutoff=0.9) is None
    assert closest("x", []) is None


def test_the_leaves_and_the_spec_import_nothing_above_them() -> None:
    """frames, cron and the spec package load without data/, models/ or anything above the spec."""
    code = (
        "import sys, tidecast.frames, tidecast.cron, tidecast.spec\n"
        "above = ('data', 'models', 'evaluation', 'training', 'tracking', 'serving', 'reporting', 'flows',"
        " 'monitoring', 'templates', 'commands', 'cli', 'pipeline')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'tidecast' and len(m.split('.')) > 1"
        " and m.split('.')[1] in above)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    )
    assert out.stdout.strip() == ""
