"""A parallel backtest gives each model its share of the cores (``FitContext.threads``), and
LightGBM uses it unless the candidate names its own thread count."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tidecast.evaluation.backtest import backtest, fold_threads, make_folds, tail_threads
from tidecast.frames import ID, POINT, TIME
from tidecast.models.base import FitContext
from tidecast.models.ml import LightGBMModel
from tidecast.pipeline.executors import LocalExecutor

CTX = FitContext(freq="h", horizon=6, input_window=24)


def _frame(n_series: int = 3, hours: int = 24 * 6) -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=hours, freq="h")
    rng = np.random.default_rng(0)
    return pd.concat(
        [pd.DataFrame({ID: f"s{i}", TIME: ds, "y": 10 + np.sin(np.arange(hours) / 3) + rng.normal(0, 0.1, hours)})
         for i in range(n_series)],
        ignore_index=True,
    )


class ThreadsEcho:
    """Forecasts the ``ctx.threads`` it was fitted with (-1 for None): what each fold was told."""

    name = "threads_echo"

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> ThreadsEcho:
        self._ends = df.groupby(ID)[TIME].max()
        self._threads = -1 if ctx.threads is None else ctx.threads
        return self

    def predict(self, h: int, *, history: Any = None, X_future: Any = None, quantiles: Sequence[float] = ()) -> pd.DataFrame:
        rows = [
            pd.DataFrame({ID: uid, TIME: pd.date_range(end + pd.Timedelta(hours=1), periods=h, freq="h")})
            for uid, end in self._ends.items()
        ]
        return pd.concat(rows, ignore_index=True).assign(**{POINT: float(self._threads)})

    def get_params(self) -> dict[str, Any]:
        return {}


class EightWorkers:
    """An executor that reports eight workers and runs the items in this process, in order."""

    n_workers = 8

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, desc: str = "",
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        out = []
        for index, item in enumerate(items):
            out.append(fn(item))
            if on_result is not None:
                on_result(index, out[-1])
        return out

    def close(self) -> None:
        return None


def test_fold_threads_shares_the_workers_among_the_tasks_at_once() -> None:
    assert fold_threads(16, 3) == 5  # 3 folds side by side on 16 cores
    assert fold_threads(16, 96) == 1  # more tasks than workers: one thread each
    assert fold_threads(16, 1) == 16
    assert fold_threads(2, 3) == 1
    assert fold_threads(1, 3) is None  # in-process: the library's default


class TwoWorkers(EightWorkers):
    n_workers = 2


def test_the_last_round_that_leaves_workers_idle_takes_their_threads() -> None:
    # 3 folds of a global model on 2 workers: two run side by side with one thread each, the third
    # alone with both (it would otherwise run on one core while the other idles)
    assert tail_threads(2, 3) == 2 and tail_threads(2, 4) == 1 and tail_threads(16, 3) == fold_threads(16, 3)
    df = _frame()
    folds = make_folds(df, h=6, folds=3, holdout=6)
    result = backtest(ThreadsEcho, df, CTX, folds, executor=TwoWorkers())
    by_fold = result.forecasts.groupby("fold")[POINT].unique().map(list).to_dict()
    assert [by_fold[f.index] for f in sorted(folds, key=lambda f: f.cutoff)] == [[1], [1], [2]]
    # per-series partitions (tasks of unequal length): one thread each, as before
    split = backtest(ThreadsEcho, df, CTX, folds, executor=TwoWorkers(), partitions=[["s0"], ["s1"], ["s2"]])
    assert set(split.forecasts[POINT]) == {1}


def test_backtest_tells_each_fold_its_share() -> None:
    df = _frame()
    folds = make_folds(df, h=6, folds=3, holdout=6)
    parallel = backtest(ThreadsEcho, df, CTX, folds, executor=EightWorkers())
    assert set(parallel.forecasts[POINT]) == {8 // 3}
    split = backtest(ThreadsEcho, df, CTX, folds, executor=EightWorkers(), partitions=[["s0"], ["s1"], ["s2"]])
    assert set(split.forecasts[POINT]) == {1}  # 9 tasks on 8 workers
    assert set(backtest(ThreadsEcho, df, CTX, folds).forecasts[POINT]) == {-1}  # in-process: untouched
    given = backtest(ThreadsEcho, df, replace(CTX, threads=7), folds, executor=EightWorkers())
    assert set(given.forecasts[POINT]) == {7}  # a caller's own setting wins


def test_lightgbm_takes_the_share_unless_it_names_its_threads() -> None:
    df = _frame()

    def n_jobs(model: LightGBMModel, ctx: FitContext) -> Any:
        model.fit(df, ctx)
        return model._fcst.models_["model"].get_params()["n_jobs"]  # type: ignore[union-attr]

    assert n_jobs(LightGBMModel(n_estimators=3, lags=[1, 24]), replace(CTX, threads=1)) == 1
    assert n_jobs(LightGBMModel(n_estimators=3, lags=[1, 24]), CTX) is None  # LightGBM's default
    assert n_jobs(LightGBMModel(n_estimators=3, lags=[1, 24], num_threads=2), replace(CTX, threads=1)) is None
    assert n_jobs(LightGBMModel(n_estimators=3, lags=[1, 24], n_jobs=2), replace(CTX, threads=1)) == 2


@pytest.mark.parametrize("n_jobs", [2])
def test_parallel_lightgbm_backtest_matches_in_process(n_jobs: int) -> None:
    """Folds on a process pool, each LightGBM on its share of threads: the same forecasts as in-process."""
    df = _frame(4)
    folds = make_folds(df, h=6, folds=2, holdout=6)

    def make() -> LightGBMModel:
        return LightGBMModel(n_estimators=5, num_leaves=7, lags=[1, 24], deterministic=True, force_row_wise=True)

    alone = backtest(make, df, CTX, folds)
    with LocalExecutor(n_jobs) as executor:
        pooled = backtest(make, df, CTX, folds, executor=executor)
    pd.testing.assert_frame_equal(alone.forecasts, pooled.forecasts, check_exact=False, rtol=1e-9)
