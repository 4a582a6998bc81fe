"""Metrics against utilsforecast.losses and hand-computed cases; evaluate()'s aggregation levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from utilsforecast import losses as uf

from tidecast.evaluation import metrics as M
from tidecast.evaluation.folds import Fold
from tidecast.evaluation.metrics import evaluate, fold_scales, interval_pairs

SEASON = 4
H = 6
QS = (0.1, 0.5, 0.9)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """History of 3 series and forecasts of 2 folds (cut-offs at positions 39 and 45) with quantiles."""
    rng = np.random.default_rng(42)
    ds = pd.date_range("2024-01-01", periods=52, freq="h")
    history = pd.concat(
        [
            pd.DataFrame({"unique_id": uid, "ds": ds, "y": 10 + 3 * np.sin(np.arange(52) * np.pi / 2) + rng.normal(0, 1, 52) * (i + 1)})
            for i, uid in enumerate(["a", "b", "c"])
        ],
        ignore_index=True,
    )
    parts = []
    for fold, cut in enumerate((39, 45)):
        test = history[history["ds"].isin(ds[cut + 1 : cut + 1 + H])].copy()
        test["fold"] = fold
        test["cutoff"] = ds[cut]
        test["step"] = test.groupby("unique_id").cumcount() + 1
        test["yhat"] = test["y"] + rng.normal(0.3, 1.5, len(test))
        spread = np.abs(rng.normal(2, 0.5, len(test)))
        test["q0.1"] = test["yhat"] - spread
        test["q0.5"] = test["yhat"] + rng.normal(0, 0.2, len(test))
        test["q0.9"] = test["yhat"] + spread * rng.uniform(0.5, 1.5, len(test))
        parts.append(test)
    return history, pd.concat(parts, ignore_index=True)


def _uf(frame: pd.DataFrame, column: str = "yhat") -> pd.Series:
    """A utilsforecast result (one row per cutoff × series) as a Series indexed by (cutoff, unique_id)."""
    keys = [c for c in ("cutoff", "unique_id") if c in frame.columns]
    return frame.set_index(keys)[column].sort_index()


def _ours(forecasts: pd.DataFrame, fn, *args) -> pd.Series:  # type: ignore[no-untyped-def]
    return forecasts.groupby(["cutoff", "unique_id"]).apply(lambda g: fn(g["y"], g["yhat"], *args)).sort_index()


@pytest.mark.parametrize("name", ["mae", "rmse", "mape", "smape", "bias", "wape"])
def test_point_metrics_match_utilsforecast_per_series_and_fold(data, name: str) -> None:  # type: ignore[no-untyped-def]
    _, fc = data
    expected = _uf(getattr(uf, name)(fc, models=["yhat"]))
    np.testing.assert_allclose(_ours(fc, getattr(M, name)).to_numpy(), expected.to_numpy(), rtol=1e-12)


def test_mase_matches_utilsforecast_with_each_folds_training_data(data) -> None:  # type: ignore[no-untyped-def]
    history, fc = data
    expected = _uf(uf.mase(fc, models=["yhat"], seasonality=SEASON, train_df=history))
    ours = fc.groupby(["cutoff", "unique_id"]).apply(
        lambda g: M.mase(g["y"], g["yhat"], history[(history.unique_id == g.name[1]) & (history.ds <= g.name[0])]["y"], SEASON)
    )
    np.testing.assert_allclose(ours.sort_index().to_numpy(), expected.to_numpy(), rtol=1e-12)
    # evaluate() pools rows: with h rows per series, a fold's MASE is the mean of its series' MASEs
    ev = evaluate(fc, history, season_length=SEASON)
    per_fold = expected.groupby(level="cutoff").mean().to_numpy()
    np.testing.assert_allclose(ev.per_fold["mase"].to_numpy(), per_fold, rtol=1e-12)
    # the same through an explicit scale table
    folds = [Fold(index=i, cutoff=c, test_start=None, test_end=None, h=H) for i, c in enumerate(sorted(fc.cutoff.unique()))]
    scales = fold_scales(history, folds, SEASON)
    np.testing.assert_allclose(evaluate(fc, scales).per_fold["mase"], ev.per_fold["mase"], rtol=1e-12)


def test_quantile_metrics_match_utilsforecast(data) -> None:  # type: ignore[no-untyped-def]
    _, fc = data
    for q in QS:
        expected = _uf(uf.quantile_loss(fc, models={"m": f"q{q:g}"}, q=q), "m")
        ours = fc.groupby(["cutoff", "unique_id"]).apply(lambda g, q=q: M.pinball(g["y"], g[f"q{q:g}"], q))
        np.testing.assert_allclose(ours.sort_index().to_numpy(), expected.to_numpy(), rtol=1e-12)
    mq = _uf(uf.mqloss(fc, models={"m": [f"q{q:g}" for q in QS]}, quantiles=np.array(QS)), "m")
    ours = fc.groupby(["cutoff", "unique_id"]).apply(lambda g: M.mean_pinball(g["y"], {q: g[f"q{q:g}"] for q in QS}))
    np.testing.assert_allclose(ours.sort_index().to_numpy(), mq.to_numpy(), rtol=1e-12)
    renamed = fc.rename(columns={"q0.1": "m-lo-80", "q0.9": "m-hi-80"})
    cov = _uf(uf.coverage(renamed, models=["m"], level=80), "m")
    ours = fc.groupby(["cutoff", "unique_id"]).apply(lambda g: M.coverage(g["y"], g["q0.1"], g["q0.9"]))
    np.testing.assert_allclose(ours.sort_index().to_numpy(), cov.to_numpy().astype(float), rtol=1e-12)
    # evaluate() at the fold level equals the mean of utilsforecast's per-series values (equal sizes)
    ev = evaluate(fc, quantiles=QS)
    np.testing.assert_allclose(ev.per_fold["pinball"], mq.groupby(level="cutoff").mean(), rtol=1e-12)
    np.testing.assert_allclose(ev.per_fold["coverage_80"], cov.astype(float).groupby(level="cutoff").mean(), rtol=1e-12)


def test_mape_ignores_zero_actuals_like_utilsforecast() -> None:
    fc = pd.DataFrame({"unique_id": "a", "ds": range(4), "y": [0.0, 2.0, 0.0, 4.0], "yhat": [1.0, 1.0, 3.0, 5.0]})
    assert M.mape(fc["y"], fc["yhat"]) == pytest.approx((0.5 + 0.25) / 2)
    assert M.mape(fc["y"], fc["yhat"]) == pytest.approx(float(uf.mape(fc, models=["yhat"])["yhat"].iloc[0]))
    assert np.isnan(M.mape([0.0, 0.0], [1.0, 2.0]))
    assert evaluate(fc).aggregate["mape"] == pytest.approx(0.375)


def test_smape_scale_and_zero_case_match_utilsforecast() -> None:
    fc = pd.DataFrame({"unique_id": "a", "ds": range(3), "y": [0.0, 1.0, -2.0], "yhat": [0.0, 3.0, 2.0]})
    # terms: 0 (0/0 -> 0), 2/4, 4/4: utilsforecast's 0..1 scale
    assert M.smape(fc["y"], fc["yhat"]) == pytest.approx(0.5)
    assert M.smape(fc["y"], fc["yhat"]) == pytest.approx(float(uf.smape(fc, models=["yhat"])["yhat"].iloc[0]))


def test_hand_computed_cases() -> None:
    y, yhat = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 2.0, 2.0])
    assert M.mae(y, yhat) == pytest.approx(1.0)
    assert M.rmse(y, yhat) == pytest.approx(np.sqrt((1 + 0 + 1 + 4) / 4))
    assert M.bias(y, yhat) == pytest.approx(-0.5)
    assert M.wape(y, yhat) == pytest.approx(4 / 10)
    # seasonal naive scale with m = 2 on 1,3,2,4,3,5: |2-1|, |4-3|, |3-2|, |5-4| -> 1
    assert M.seasonal_naive_scale([1, 3, 2, 4, 3, 5], 2) == pytest.approx(1.0)
    assert M.mase([6, 4], [5, 6], [1, 3, 2, 4, 3, 5], 2) == pytest.approx(1.5)
    assert M.seasonal_naive_scale([1, 2], 2) != M.seasonal_naive_scale([1, 2], 2)  # too short: NaN
    assert M.mase([1.0], [2.0], [3, 3, 3], 1) == float("inf")  # constant history
    assert M.pinball([10.0, 10.0], [8.0, 12.0], 0.9) == pytest.approx((0.9 * 2 + 0.1 * 2) / 2)
    assert M.coverage([1, 5, 10], [0, 0, 0], [5, 5, 5]) == pytest.approx(2 / 3)  # bounds included
    assert M.interval_width([0, 1], [5, 3]) == pytest.approx(3.5)
    assert interval_pairs([0.9, 0.1, 0.5, 0.025, 0.975]) == [(0.025, 0.975, "95"), (0.1, 0.9, "80")]
    assert M.mae([1.0, np.nan], [2.0, 5.0]) == pytest.approx(1.0)  # missing actuals are ignored


def test_evaluate_levels_and_aggregation() -> None:
    fc = pd.DataFrame(
        {
            "unique_id": ["a", "a", "b", "b", "a", "a", "b", "b"],
            "ds": [1, 2, 1, 2, 3, 4, 3, 4],
            "fold": [0, 0, 0, 0, 1, 1, 1, 1],
            "step": [1, 2, 1, 2, 1, 2, 1, 2],
            "y": [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, np.nan],
            "yhat": [2.0, 3.0, 2.0, 6.0, 1.0, 2.0, 2.0, 9.0],
        }
    )
    scales = pd.DataFrame({"unique_id": ["a", "b"], "scale": [1.0, 2.0]})
    ev = evaluate(fc, scales)
    # fold 0: abs errors 1, 2, 0, 4; fold 1: 0, 1, 0 (the NaN actual is dropped)
    assert ev.per_fold["mae"].tolist() == pytest.approx([7 / 4, 1 / 3])
    assert ev.per_fold["rmse"].tolist() == pytest.approx([np.sqrt(21 / 4), np.sqrt(1 / 3)])
    assert ev.per_fold["mase"].tolist() == pytest.approx([(1 + 2 + 0 + 2) / 4, (0 + 1 + 0) / 3])
    assert ev.per_fold["wape"].tolist() == pytest.approx([7 / 6, 1 / 4])
    assert ev.aggregate["mae"] == pytest.approx((7 / 4 + 1 / 3) / 2)  # mean over folds of pooled folds
    assert ev.per_step["mae"].tolist() == pytest.approx([(1 + 0 + 0 + 0) / 4, (2 + 4 + 1) / 3])
    assert ev.per_series.loc["a", "mae"] == pytest.approx(1.0) and ev.per_series.loc["b", "mae"] == pytest.approx(4 / 3)
    assert ev.aggregate["pinball"] == pytest.approx(ev.aggregate["mae"] / 2)  # no quantiles: yhat as the median
    assert "coverage" not in ev.aggregate
    assert ev.n_rows == 7
    assert set(ev.to_dict()["per_fold"]) == {"0", "1"}


def test_evaluate_mase_skips_series_without_a_scale_and_is_absent_without_train() -> None:
    fc = pd.DataFrame({"unique_id": ["a", "b"], "ds": [1, 1], "y": [1.0, 1.0], "yhat": [2.0, 3.0]})
    ev = evaluate(fc, pd.DataFrame({"unique_id": ["a", "b"], "scale": [0.0, 4.0]}))
    assert ev.aggregate["mase"] == pytest.approx(0.5)  # 'a' has a zero scale: no MASE for it
    assert "mase" not in evaluate(fc).aggregate


def test_evaluate_quantiles_from_columns_and_coverage_names(data) -> None:  # type: ignore[no-untyped-def]
    _, fc = data
    ev = evaluate(fc)
    assert ev.quantiles == QS
    for name in ("pinball_q0.1", "pinball_q0.5", "pinball_q0.9", "pinball", "coverage_80", "width_80", "coverage", "interval_width"):
        assert name in ev.aggregate
    assert ev.aggregate["coverage"] == ev.aggregate["coverage_80"]
    assert 0 <= ev.aggregate["coverage"] <= 1
    assert ev.per_step.index.tolist() == list(range(1, H + 1))
    # a requested quantile without a column is skipped
    assert evaluate(fc.drop(columns=["q0.5"]), quantiles=QS).quantiles == (0.1, 0.9)
