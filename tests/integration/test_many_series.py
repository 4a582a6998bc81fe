"""Many series in one spec: local and Dask executors agree, per-series selection, skipped series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tracking_helpers import whole_frame_features

from tests.conftest import mixed_meters
from tidecast.spec import Spec, parse_spec

pytest.importorskip("distributed")

SPEC = {
    "project": "many",
    "data": {
        "source": "data/meters.parquet", "series_column": "series_id", "time_column": "timestamp",
        "target_column": "load", "frequency": "h", "static_columns": ["customer_type"],
    },
    "features": {"lags": [1, 24], "calendar": ["hour"]},
    "forecast": {"input_window": "2d", "horizon": "12h"},
    "backtest": {"folds": 3},
    "selection": {"metric": "mae"},
    "models": [
        {"name": "seasonal_naive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
        {"name": "autoets", "kind": "autoets", "fit_window": "2d"},
        {"name": "lightgbm", "kind": "lightgbm", "params": {"n_estimators": 10, "num_leaves": 7}},
    ],
}


def _spec(root: Path, **overrides: Any) -> Spec:
    data = {**SPEC, **overrides}
    return parse_spec(data, root=root)


def _features(spec: Spec) -> pd.DataFrame:
    return whole_frame_features(spec)[0]


@pytest.fixture(scope="module")
def meters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 hourly meters of different starts and lengths, plus one far too short."""
    from tidecast.datasets import make_meters

    root = tmp_path_factory.mktemp("meters")
    frame = make_meters(50, days=10, seed=3)
    short = frame[frame["series_id"] == "meter_001"].tail(20).assign(series_id="short_1")
    (root / "data").mkdir()
    pd.concat([frame, short], ignore_index=True).to_parquet(root / "data" / "meters.parquet", index=False)
    return root


def _board(backtested: dict[str, Any]) -> pd.DataFrame:
    board = backtested["leaderboard"]
    return board.drop(columns=["fit_seconds", "predict_seconds"]).reset_index(drop=True)


def test_local_and_dask_give_identical_leaderboards(meters: Path, tmp_path: Path) -> None:
    """Local processes on the frame in memory, and a two-worker Dask cluster whose workers read
    their series from Parquet partitions on disk: the same leaderboard and forecasts."""
    from tidecast.data.partitions import write_partitions
    from tidecast.training import candidate_results

    local = _spec(meters, backtest={"folds": 3, "n_jobs": 2})
    frame = _features(local)
    assert frame["unique_id"].nunique() == 50 and "short_1" not in set(frame["unique_id"])  # skipped, not fatal
    on_local = candidate_results(frame, local)
    parts = write_partitions(frame, tmp_path / "parts", 3)
    assert parts.n_partitions == 3
    on_dask = candidate_results(parts, _spec(meters, executor={"kind": "dask", "n_workers": 2}))
    assert (on_local["leaderboard"]["status"] == "ok").all(), on_local["leaderboard"]["error"].tolist()
    pd.testing.assert_frame_equal(_board(on_local), _board(on_dask))
    for name, entry in on_local["results"].items():
        pd.testing.assert_frame_equal(entry.backtest.forecasts, on_dask["results"][name].backtest.forecasts)


def _mixed_series(root: Path) -> None:
    """:func:`tests.conftest.mixed_meters` as the project's data file."""
    (root / "data").mkdir(exist_ok=True)
    mixed_meters().to_parquet(root / "data" / "meters.parquet", index=False)


def test_per_series_selection_picks_each_series_winner(tmp_path: Path) -> None:
    from tidecast.models.per_series import PerSeriesForecaster
    from tidecast.training import candidate_results, select_and_refit

    _mixed_series(tmp_path)
    spec = _spec(
        tmp_path,
        models=[
            {"name": "naive", "kind": "naive"},
            {"name": "seasonal_naive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
        ],
        selection={"metric": "mae", "scope": "per_series", "fallback": "seasonal_naive"},
        forecast={"input_window": "1d", "horizon": "12h"},
    )
    frame = _features(spec)
    backtested = candidate_results(frame, spec)
    chosen = backtested["per_series"]
    assert chosen["mapping"] == {
        **{f"seasonal_{i}": "seasonal_naive" for i in range(4)}, **{f"walk_{i}": "naive" for i in range(4)}
    }
    assert chosen["unjudged"] == ["late"] and chosen["fallback"] == "seasonal_naive"
    board = backtested["leaderboard"].set_index("candidate")
    assert board.loc["naive", "series_won"] == 4 and board.loc["seasonal_naive", "series_won"] == 5
    # the per-series choice is at least as good as either candidate alone
    assert chosen["aggregate"]["mae"] <= min(board["mae"]) + 1e-12

    selected = select_and_refit(backtested, frame, spec)
    model = selected["model"]
    assert isinstance(model, PerSeriesForecaster) and selected["winner"] == "per_series"
    assert model.winner_counts() == {"naive": 4, "seasonal_naive": 5}
    out = model.predict(12)
    assert sorted(out["unique_id"].unique()) == sorted(frame["unique_id"].unique())
    seasonal = out[out["unique_id"] == "seasonal_0"]["yhat"].to_numpy()
    walk = out[out["unique_id"] == "walk_0"]["yhat"].to_numpy()
    assert np.ptp(seasonal) > 1 and np.ptp(walk) == 0  # seasonal naive vs naive (a flat line)
    # serving-style predict from a history, with a series never seen in training (-> fallback)
    history = frame[frame["unique_id"].isin(["walk_1", "seasonal_1"])].groupby("unique_id").tail(48)
    new = history[history["unique_id"] == "seasonal_1"].assign(unique_id="brand_new")
    served = model.predict(12, history=pd.concat([history, new], ignore_index=True))
    assert set(served["unique_id"]) == {"walk_1", "seasonal_1", "brand_new"}
    np.testing.assert_allclose(
        served[served["unique_id"] == "brand_new"]["yhat"].to_numpy(),
        served[served["unique_id"] == "seasonal_1"]["yhat"].to_numpy(),
    )


def _die_once(args: tuple[int, str]) -> int:
    """Kills the worker process running it the first time it sees item 3 (a marker file says so)."""
    import os

    x, marker = args
    if x == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the worker dies mid-task
    return x * x


def test_a_worker_lost_mid_run_does_not_fail_the_run(tmp_path: Path) -> None:
    from tidecast.pipeline.executors.dask import DaskExecutor

    marker = str(tmp_path / "died")
    with DaskExecutor(n_workers=2) as executor:
        out = executor.map(_die_once, [(x, marker) for x in range(8)], desc="squares")
    assert out == [x * x for x in range(8)] and Path(marker).exists()


def test_unreachable_dask_address_fails_fast_with_one_line() -> None:
    import time

    from tidecast.errors import PipelineError
    from tidecast.pipeline.executors import make_executor
    from tidecast.spec import ExecutorSpec

    started = time.perf_counter()
    with pytest.raises(PipelineError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9") as info:
        make_executor(ExecutorSpec(kind="dask", address="tcp://127.0.0.1:9"), 1)
    assert time.perf_counter() - started < 10 and "\n" not in str(info.value)
