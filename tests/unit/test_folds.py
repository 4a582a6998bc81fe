"""Rolling-origin fold layout: cut-offs from the end, holdout, step, gap, sliding windows, exclusions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tidecast.errors import BacktestError
from tidecast.evaluation.folds import HOLDOUT_FOLD, Fold, holdout_fold, infer_step, make_folds


def frame(spans: dict[str, tuple[str, int]], freq: str = "h") -> pd.DataFrame:
    """Long frame: series -> (start, length)."""
    parts = [
        pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=n, freq=freq), "y": np.arange(n, dtype=float)})
        for uid, (start, n) in spans.items()
    ]
    return pd.concat(parts, ignore_index=True)


T0 = pd.Timestamp("2024-01-01")
H = pd.Timedelta("1h")


def test_expanding_folds_tile_back_from_the_end_before_the_holdout() -> None:
    df = frame({"a": ("2024-01-01", 100)})
    folds = make_folds(df, h=10, folds=3, holdout=10)
    last = T0 + 99 * H
    assert [f.index for f in folds] == [0, 1, 2]
    assert folds[-1].test_end == last - 10 * H  # the holdout is the final 10 steps
    for f in folds:
        assert f.test_start == f.cutoff + H
        assert f.test_end == f.test_start + 9 * H
        assert f.train_start is None and f.series is None and f.excluded == ()
    # default step = h: consecutive test windows touch
    assert folds[1].test_start == folds[0].test_end + H
    assert folds[0].cutoff == T0 + 59 * H


def test_step_gap_and_sliding_window() -> None:
    df = frame({"a": ("2024-01-01", 200)})
    folds = make_folds(df, h=12, folds=4, step=6, gap=3, window="sliding", train_window=48)
    last = T0 + 199 * H
    assert folds[-1].test_end == last
    assert [f.test_end for f in folds] == [last - (3 - k) * 6 * H for k in range(4)]
    for f in folds:
        assert f.test_start == f.cutoff + 4 * H  # 3 steps of gap between training end and forecast start
        assert f.train_start == f.cutoff - 47 * H
        assert f.gap == 3 and f.h == 12


def test_holdout_true_means_one_horizon() -> None:
    df = frame({"a": ("2024-01-01", 60)})
    assert make_folds(df, h=5, folds=2, holdout=True) == make_folds(df, h=5, folds=2, holdout=5)


def test_series_with_short_history_are_excluded_and_listed() -> None:
    df = frame({"long": ("2024-01-01", 100), "late": ("2024-01-04", 28), "early_end": ("2024-01-01", 70)})
    folds = make_folds(df, h=10, folds=3, min_train=5)
    # cut-offs: 69, 79, 89 (positions from 2024-01-01 00:00); 'late' starts at position 72
    assert [f.cutoff for f in folds] == [T0 + k * H for k in (69, 79, 89)]
    assert folds[0].excluded == ("early_end", "late")  # late: no history; early_end: ends at 69
    assert folds[0].series == ("long",)
    assert folds[1].excluded == ("early_end",)  # late has 8 points ≥ min_train 5
    assert set(folds[1].series) == {"late", "long"}
    assert folds[2].n_excluded == 1


def test_too_short_history_is_a_clear_error() -> None:
    df = frame({"a": ("2024-01-01", 1000)})
    with pytest.raises(BacktestError) as info:
        make_folds(df, h=288, folds=3, holdout=288)
    text = str(info.value)
    assert text.startswith("backtest: 3 folds of 288 steps + holdout 288 need at least 1 steps of history")
    assert "the data has 0" in text
    assert text.endswith("(reduce backtest.folds or forecast.horizon)")
    with pytest.raises(BacktestError, match="need at least 50 steps of history before the first cut-off; the data has 40"):
        make_folds(frame({"a": ("2024-01-01", 100)}), h=10, folds=5, holdout=10, min_train=50)


def test_bad_settings() -> None:
    df = frame({"a": ("2024-01-01", 100)})
    with pytest.raises(BacktestError, match="train_window"):
        make_folds(df, h=10, window="sliding")
    with pytest.raises(BacktestError, match="horizon must be at least 1"):
        make_folds(df, h=0)
    with pytest.raises(BacktestError, match="window must be"):
        make_folds(df, h=5, window="rolling")  # type: ignore[arg-type]


def test_lengths_give_an_integer_axis() -> None:
    folds = make_folds({"a": 50, "b": 20}, h=5, folds=2, holdout=5, min_train=10)
    # both series end at position 49; b starts at 30
    assert [(f.cutoff, f.test_start, f.test_end) for f in folds] == [(34, 35, 39), (39, 40, 44)]
    assert folds[0].excluded == ("b",) and folds[1].excluded == ()
    assert make_folds(30, h=5, folds=1)[0].cutoff == 24
    assert make_folds([30, 30], h=5, folds=1)[0].series is None


def test_integer_ds_column_and_frequency_inference() -> None:
    df = pd.DataFrame({"unique_id": "a", "ds": np.arange(10, 40), "y": 0.0})
    (fold,) = make_folds(df, h=5, folds=1)
    assert (fold.cutoff, fold.test_end) == (34, 39)
    daily = frame({"a": ("2024-01-01", 30)}, freq="D")
    assert infer_step(daily["ds"]) == pd.Timedelta("1D")
    assert make_folds(daily, h=7, folds=1)[0].cutoff == pd.Timestamp("2024-01-23")
    assert make_folds(daily, h=7, folds=1, freq="D") == make_folds(daily, h=7, folds=1)


def test_holdout_fold() -> None:
    df = frame({"a": ("2024-01-01", 48)})
    fold = holdout_fold(df, 12)
    assert isinstance(fold, Fold)
    assert fold.index == HOLDOUT_FOLD
    assert fold.cutoff == T0 + 35 * H and fold.test_end == T0 + 47 * H
    with pytest.raises(BacktestError, match="a holdout of 12 steps"):
        holdout_fold(df, 12, min_train=40)


def test_calendar_folds_step_along_month_ends() -> None:
    df = frame({"a": ("2020-01-31", 48), "b": ("2021-01-31", 36)}, freq="ME")
    folds = make_folds(df, h=3, folds=3, step=2, holdout=3, freq="ME")
    last = pd.Timestamp("2023-12-31")
    assert folds[-1].test_end == last - 3 * pd.offsets.MonthEnd()  # 2023-09-30: the holdout is Oct-Dec
    assert [f.cutoff for f in folds] == [pd.Timestamp(d) for d in ("2023-02-28", "2023-04-30", "2023-06-30")]
    for f in folds:
        assert f.test_start == f.cutoff + pd.offsets.MonthEnd()
        assert f.test_end == f.cutoff + 3 * pd.offsets.MonthEnd()
    (sliding,) = make_folds(df, h=3, folds=1, window="sliding", train_window=36, freq="ME", min_train=36)
    assert sliding.cutoff == pd.Timestamp("2023-09-30") and sliding.train_start == pd.Timestamp("2020-10-31")
    assert sliding.excluded == ("b",)  # b starts in January 2021: 33 months before the cut-off


def test_calendar_folds_on_raw_dates_count_their_anchors_and_skip_business_holidays() -> None:
    mid_month = frame({"a": ("2020-01-01", 30)}, freq="MS").assign(ds=lambda f: f["ds"] + pd.Timedelta(days=14))
    (fold,) = make_folds(mid_month, h=6, folds=1, freq="MS")
    assert fold.test_start == pd.Timestamp("2022-01-01") and fold.test_end == pd.Timestamp("2022-06-01")
    days = frame({"a": ("2024-12-02", 20)}, freq="B")
    (fold,) = make_folds(days, h=5, folds=1, freq="B")
    assert fold.cutoff == pd.Timestamp("2024-12-20") and fold.test_end == pd.Timestamp("2024-12-27")
    with pytest.raises(BacktestError, match="not B dates"):
        make_folds(frame({"a": ("2024-12-01", 20)}, freq="D"), h=5, folds=1, freq="B")
