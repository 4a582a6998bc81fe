"""backtest(): fold slices, no look-ahead, gap handling, parallel == sequential, failures captured."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tidecast.errors import BacktestError
from tidecast.evaluation.backtest import HOLDOUT_FOLD, FoldResult, backtest, holdout_forecast
from tidecast.evaluation.folds import make_folds
from tidecast.evaluation.metrics import evaluate, fold_scales
from tidecast.frames import future_index
from tidecast.models.base import FitContext, Forecaster
from tidecast.pipeline.executors import LocalExecutor, SequentialExecutor

STEP = pd.Timedelta("1h")


# ------------------------------------------------------------------------------ test forecasters
class MeanModel:
    """Forecasts each series' training mean; quantiles from its standard deviation."""

    name = "mean"

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> MeanModel:
        self.ctx = ctx
        self.last = df.groupby("unique_id", observed=True)[["ds"]].max()
        self.stats = df.groupby("unique_id", observed=True)["y"].agg(["mean", "std"])
        return self

    def predict(self, h: int, *, history=None, X_future=None, quantiles: Sequence[float] = ()) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        out = future_index(self.last.reset_index(), h, self.ctx.freq)
        stats = self.stats.loc[out["unique_id"]]
        out["yhat"] = stats["mean"].to_numpy()
        for q in quantiles:
            out[f"q{q:g}"] = out["yhat"] + (q - 0.5) * 2.5 * stats["std"].fillna(0).to_numpy()
        return out

    def get_params(self) -> dict[str, Any]:
        return {}


class SeasonalNaiveModel:
    """Repeats each series' last season."""

    name = "snaive"

    def __init__(self, season_length: int = 1) -> None:
        self.m = season_length

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> SeasonalNaiveModel:
        self.ctx = ctx
        self.tail = {uid: g.sort_values("ds").tail(self.m) for uid, g in df.groupby("unique_id", observed=True)}
        return self

    def predict(self, h: int, *, history=None, X_future=None, quantiles: Sequence[float] = ()) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        frames = []
        for uid, tail in self.tail.items():
            step = pd.tseries.frequencies.to_offset(self.ctx.freq)
            ds = pd.date_range(tail["ds"].iloc[-1] + step, periods=h, freq=self.ctx.freq)
            values = np.resize(tail["y"].to_numpy(), h)
            frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "yhat": values}))
        return pd.concat(frames, ignore_index=True)

    def get_params(self) -> dict[str, Any]:
        return {"season_length": self.m}


class SpyModel(MeanModel):
    """Checks, inside the model, that nothing after the fold's cut-off reaches it."""

    calls: list[dict[str, Any]] = []  # noqa: RUF012 - shared on purpose (sequential executor)

    def __init__(self, cutoffs: Sequence[pd.Timestamp], train_window: int | None = None) -> None:
        self.cutoffs = list(cutoffs)
        self.train_window = train_window

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> SpyModel:
        self.cutoff = df["ds"].max()
        assert self.cutoff in self.cutoffs, "training data ends at a fold's cut-off"
        assert (df.groupby("unique_id")["ds"].max() <= self.cutoff).all()
        if self.train_window is not None:
            assert df["ds"].min() >= self.cutoff - (self.train_window - 1) * STEP
        self.record = {"cutoff": self.cutoff, "horizon": ctx.horizon, "columns": list(df.columns), "n": len(df)}
        return super().fit(df, ctx)

    def predict(self, h: int, *, history=None, X_future=None, quantiles: Sequence[float] = ()) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        assert X_future is not None and "y" not in X_future.columns
        assert X_future["ds"].min() == self.cutoff + STEP
        assert X_future.groupby("unique_id").size().eq(h).all()
        SpyModel.calls.append({**self.record, "h": h, "future_columns": list(X_future.columns)})
        return super().predict(h, X_future=X_future, quantiles=quantiles)


class FailingModel(MeanModel):
    """Fails in ``fit`` when given more than ``limit`` rows; returns NaN forecasts when asked to."""

    def __init__(self, limit: int = 10**9, nan: bool = False) -> None:
        self.limit, self.nan = limit, nan

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> FailingModel:
        if len(df) > self.limit:
            raise ValueError(f"boom: {len(df)} rows")
        return super().fit(df, ctx)

    def predict(self, h: int, *, history=None, X_future=None, quantiles: Sequence[float] = ()) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        out = super().predict(h, quantiles=quantiles)
        if self.nan:
            out.loc[out.index[-1], "yhat"] = np.nan
        return out


# ------------------------------------------------------------------------------------- fixtures
def make_df(n: int = 120, series: Sequence[str] = ("a", "b"), late: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    parts = []
    for i, uid in enumerate(series):
        start = late if i == len(series) - 1 and late else 0
        ds = pd.date_range("2024-01-01", periods=n, freq="h")[start:]
        t = np.arange(start, n)
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": ds,
                    "y": 10 * (i + 1) + np.sin(t * 2 * np.pi / 24) + rng.normal(0, 0.1, len(t)),
                    "temp": t * 0.5,
                    "past": -t,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


CTX = FitContext(freq="h", horizon=6, input_window=24, exog_future=("temp",), exog_past=("past",))


def test_forecast_frame_layout_and_expanding_training() -> None:
    df = make_df()
    folds = make_folds(df, h=6, folds=3, holdout=6)
    result = backtest(MeanModel, df, CTX, folds, quantiles=(0.1, 0.9))
    fc = result.forecasts
    assert list(fc.columns) == ["unique_id", "ds", "fold", "cutoff", "step", "y", "yhat", "q0.1", "q0.9"]
    assert len(fc) == 3 * 2 * 6 and result.ok and result.errors == []
    assert fc["step"].tolist() == list(range(1, 7)) * 6
    for fold in folds:
        part = fc[fc["fold"] == fold.index]
        assert (part["cutoff"] == fold.cutoff).all()
        assert part["ds"].min() == fold.test_start and part["ds"].max() == fold.test_end
        for uid, g in part.groupby("unique_id"):
            train = df[(df.unique_id == uid) & (df.ds <= fold.cutoff)]
            assert g["yhat"].iloc[0] == pytest.approx(train["y"].mean())
            actual = df[(df.unique_id == uid) & df.ds.isin(g["ds"])]["y"].to_numpy()
            np.testing.assert_allclose(g["y"].to_numpy(), actual)
    assert list(result.timings.columns) == [
        "fold", "cutoff", "n_series", "n_excluded", "fit_seconds", "predict_seconds", "status", "error"
    ]
    assert result.fit_seconds == pytest.approx(result.timings["fit_seconds"].sum())
    assert set(result.fit_seconds_per_fold) == {0, 1, 2}


def test_sliding_window_trains_on_the_last_train_window_steps() -> None:
    df = make_df()
    folds = make_folds(df, h=6, folds=2, window="sliding", train_window=10)
    fc = backtest(MeanModel, df, CTX, folds).forecasts
    for fold in folds:
        for uid, g in fc[fc.fold == fold.index].groupby("unique_id"):
            train = df[(df.unique_id == uid) & (df.ds <= fold.cutoff)].tail(10)
            assert g["yhat"].iloc[0] == pytest.approx(train["y"].mean())


def test_no_data_after_the_cutoff_reaches_the_model_and_gap_is_skipped() -> None:
    df = make_df()
    folds = make_folds(df, h=6, folds=3, gap=2, window="sliding", train_window=30, holdout=6)
    SpyModel.calls.clear()
    make = partial(SpyModel, [f.cutoff for f in folds], 30)
    result = backtest(make, df, CTX, folds, executor=SequentialExecutor())
    assert result.ok, result.error_summary()
    assert [c["cutoff"] for c in SpyModel.calls] == [f.cutoff for f in folds]
    for call in SpyModel.calls:
        assert call["h"] == 8 and call["horizon"] == 8  # gap + h steps forecast, ctx.horizon raised
        assert call["future_columns"] == ["unique_id", "ds", "temp"]  # exog_future only, never y
        assert call["n"] == 2 * 30
        assert "past" in call["columns"]
    fc = result.forecasts
    for fold in folds:
        part = fc[fc.fold == fold.index]
        assert part["ds"].min() == fold.cutoff + 3 * STEP == fold.test_start
        assert part["step"].min() == 1 and part["step"].max() == 6


def test_seasonal_naive_with_gap_forecasts_from_the_cutoff() -> None:
    df = make_df()
    folds = make_folds(df, h=4, folds=2, gap=3)
    fc = backtest(partial(SeasonalNaiveModel, 1), df, CTX, folds).forecasts
    for fold in folds:
        for uid, g in fc[fc.fold == fold.index].groupby("unique_id"):
            last = df[(df.unique_id == uid) & (df.ds == fold.cutoff)]["y"].item()
            assert (g["yhat"] == last).all()


def test_parallel_executor_gives_the_same_results_as_sequential() -> None:
    df = make_df(series=("a", "b", "c"))
    folds = make_folds(df, h=6, folds=4, holdout=6)
    seq = backtest(MeanModel, df, CTX, folds, quantiles=(0.1, 0.9), executor=SequentialExecutor())
    seen: list[int] = []
    with LocalExecutor(2) as executor:
        par = backtest(
            MeanModel, df, CTX, folds, quantiles=(0.1, 0.9), executor=executor,
            on_fold_done=lambda r: seen.append(r.fold.index),
        )
        failing = backtest(partial(FailingModel, 300), df, CTX, folds, executor=executor)
    pd.testing.assert_frame_equal(seq.forecasts, par.forecasts)
    assert seen == [0, 1, 2, 3]
    assert [e.fold for e in failing.errors] == [2, 3] and "boom" in failing.errors[0].message


def test_a_failing_model_is_captured_per_fold() -> None:
    df = make_df()
    folds = make_folds(df, h=6, folds=3)
    done: list[FoldResult] = []
    result = backtest(partial(FailingModel, 2 * 105), df, CTX, folds, on_fold_done=done.append)
    # fold cut-offs at 101, 107, 113 (0-based): folds 1 and 2 train on more than 210 rows
    assert [e.fold for e in result.errors] == [1, 2]
    assert result.errors[0].message == "ValueError: boom: 216 rows"
    assert "Traceback" in result.errors[0].traceback
    assert str(result.errors[0]).startswith("fold 1 (cut-off 2024-01-05 11:00:00): ValueError")
    assert set(result.forecasts["fold"]) == {0}
    assert result.timings["status"].tolist() == ["ok", "failed", "failed"]
    assert not result.ok and "1 more failed fold" in (result.error_summary() or "")
    assert [r.error is None for r in done] == [True, False, False]
    nan = backtest(partial(FailingModel, nan=True), df, CTX, folds)
    assert len(nan.errors) == 3 and "no (or NaN) forecast for 1 of 12 test points (series b)" in nan.errors[0].message
    assert nan.forecasts.empty and list(nan.forecasts.columns)[:7] == ["unique_id", "ds", "fold", "cutoff", "step", "y", "yhat"]


def test_series_excluded_from_a_fold_are_not_forecast_there() -> None:
    df = make_df(series=("a", "b"), late=100)
    folds = make_folds(df, h=6, folds=2, min_train=10)  # b has 8 points before the first cut-off
    assert folds[0].excluded == ("b",) and folds[1].series is None
    result = backtest(MeanModel, df, CTX, folds)
    assert set(result.forecasts[result.forecasts.fold == 0]["unique_id"]) == {"a"}
    assert set(result.forecasts[result.forecasts.fold == 1]["unique_id"]) == {"a", "b"}
    assert result.timings["n_excluded"].tolist() == [1, 0]
    assert result.timings["n_series"].tolist() == [1, 2]


def test_holdout_forecast_and_evaluation_end_to_end() -> None:
    # daily season + linear trend: the seasonal naive is off by one day of trend at every step,
    # which is exactly its in-sample MAE, so its MASE is 1
    ds = pd.date_range("2024-01-01", periods=24 * 10, freq="h")
    t = np.arange(len(ds))
    df = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.sin(t * 2 * np.pi / 24) + 5 + 0.01 * t})
    ctx = FitContext(freq="h", horizon=24, input_window=48)
    folds = make_folds(df, h=24, folds=3, holdout=24)
    result = backtest(partial(SeasonalNaiveModel, 24), df, ctx, folds)
    scales = result.scales(df, 24)
    pd.testing.assert_frame_equal(scales, fold_scales(df, folds, 24))
    ev = evaluate(result.forecasts, scales, season_length=24)
    assert ev.aggregate["mase"] == pytest.approx(1.0)
    mean_ev = evaluate(backtest(MeanModel, df, ctx, folds).forecasts, df, season_length=1)
    assert mean_ev.aggregate["mase"] > 0.5
    hold = holdout_forecast(MeanModel, df, ctx, 24)
    assert hold.folds[0].index == HOLDOUT_FOLD and set(hold.forecasts["fold"]) == {HOLDOUT_FOLD}
    assert hold.forecasts["ds"].min() == ds[-24] and len(hold.forecasts) == 24
    assert hold.forecasts["yhat"].iloc[0] == pytest.approx(df["y"].iloc[:-24].mean())


def test_missing_columns_are_errors() -> None:
    df = make_df()
    folds = make_folds(df, h=6, folds=1)
    with pytest.raises(BacktestError, match="future exogenous column"):
        backtest(MeanModel, df.drop(columns=["temp"]), CTX, folds)
    with pytest.raises(BacktestError, match="no column"):
        backtest(MeanModel, df.drop(columns=["y"]), CTX, folds)
    with pytest.raises(BacktestError, match="no folds"):
        backtest(MeanModel, df, CTX, [])


def test_test_forecasters_speak_the_protocol() -> None:
    assert isinstance(MeanModel(), Forecaster) and isinstance(SeasonalNaiveModel(), Forecaster)
