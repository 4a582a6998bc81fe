"""Hierarchies: the summing matrix, the structure and add-up checks at ingest, and reconciliation
that adds up exactly (every parent = the sum of its children) on every fold and at predict time."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tidecast.data.hierarchy import Hierarchy, add_aggregates, ingest_hierarchy
from tidecast.errors import DataError
from tidecast.models.base import FitContext
from tidecast.models.reconciled import METHODS, ReconciledForecaster, projection, reconcile_forecasts
from tidecast.spec import DataSpec, HierarchySpec, TargetSpec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hierarchy" / "make_data.py"
LEVELS = ["feeder", "substation"]


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hierarchy_make_data", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """12 meters / 3 feeders / 2 substations, 10 days, with the substations' own readings."""
    return _example().build(days=10, seed=1)


def _ingest(raw: pd.DataFrame, **hierarchy: Any) -> pd.DataFrame:
    data = DataSpec(source="grid.csv", series_column="series_id", time_column="timestamp", target_column="load",
                    frequency="h")
    return ingest_hierarchy(raw, data, TargetSpec(), HierarchySpec(levels=LEVELS, **hierarchy), source_name="grid.csv")


@pytest.fixture(scope="module")
def full(raw: pd.DataFrame) -> pd.DataFrame:
    return add_aggregates(_ingest(raw), LEVELS, "total")


# ------------------------------------------------------------------------------------ structure
def test_summing_matrix_matches_hierarchicalforecast(full: pd.DataFrame) -> None:
    from hierarchicalforecast.utils import aggregate

    h = Hierarchy.from_frame(full, LEVELS, "total")
    assert h.tags["total"] == ["total"] and h.tags["substation"] == ["S1", "S2"]
    assert h.tags["feeder"] == ["F1", "F2", "F3"] and len(h.tags["bottom"]) == 12
    assert h.nodes[:6] == ["total", "S1", "S2", "F1", "F2", "F3"]
    bottom = full[full["unique_id"].str.startswith("meter_")].assign(top="total")
    _, S_df, _ = aggregate(bottom[["top", "substation", "feeder", "unique_id", "ds", "y"]].rename(
        columns={"unique_id": "meter"}), [["top"], ["top", "substation"], ["top", "substation", "feeder"],
                                          ["top", "substation", "feeder", "meter"]])
    theirs = pd.DataFrame(S_df).set_index("unique_id")
    theirs.index = [i.rsplit("/", 1)[-1] for i in theirs.index]
    theirs.columns = [c.rsplit("/", 1)[-1] for c in theirs.columns]
    ours = pd.DataFrame(h.summing_matrix(), index=h.nodes, columns=h.bottom)
    pd.testing.assert_frame_equal(ours, theirs.loc[h.nodes, h.bottom].astype(float), check_names=False)


def test_aggregates_add_up_and_the_data_rows_are_checked(raw: pd.DataFrame, full: pd.DataFrame) -> None:
    h = Hierarchy.from_frame(full, LEVELS, "total")
    assert sorted(full["unique_id"].unique()) == sorted(h.nodes)
    wide = full.pivot(index="unique_id", columns="ds", values="y").loc[h.nodes].to_numpy()
    S = h.summing_matrix()
    assert np.abs(wide - S @ wide[len(h.aggregates):]).max() < 1e-9
    # the substations' own rows in the data were checked and dropped; the rebuilt ones match them
    given = raw[raw["series_id"] == "S2"].set_index("timestamp")["load"]
    built = full[full["unique_id"] == "S2"].set_index("ds")["y"]
    assert np.allclose(built.loc[given.index].to_numpy(), given.to_numpy(), atol=1e-3)
    assert full.loc[full["unique_id"] == "F3", ["feeder", "substation"]].drop_duplicates().values.tolist() == [["F3", "S2"]]


def test_levels_that_do_not_add_up_name_the_level_node_and_time(raw: pd.DataFrame) -> None:
    bad = raw.copy()
    at = (bad["series_id"] == "S1") & (bad["timestamp"] == pd.Timestamp("2024-03-04 05:00"))
    bad.loc[at, "load"] += 3.0
    with pytest.raises(DataError) as info:
        _ingest(bad)
    message = str(info.value)
    assert "levels do not add up: substation 'S1' at 2024-03-04 05:00:00" in message, message
    assert "1 of 480 values off" in message and "\n" not in message
    _ingest(bad, tolerance=1.0)  # a loose tolerance accepts it


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda f: f.drop(columns=["feeder"]), "hierarchy.levels: no column 'feeder'"),
        (lambda f: f.assign(feeder=np.where(f.index == 5, "F2", f["feeder"])), "series 'meter_01' has several feeders (F1, F2)"),
        (lambda f: f.assign(substation=np.where(f["series_id"] == "meter_05", "S2", f["substation"])),
         "feeder 'F2' lies in several substations (series 'meter_05' says S2, series 'meter_06' says S1)"),
        (lambda f: f.assign(feeder=np.where(f["series_id"] == "meter_03", None, f["feeder"])), "series 'meter_03' has no feeder"),
        (lambda f: f.assign(feeder=f["feeder"].replace({"F3": "S1"})), "'S1' names both a feeder and a substation"),
        (lambda f: f[(f["series_id"] != "meter_12") | (f["timestamp"] < pd.Timestamp("2024-03-10"))],
         "series 'meter_12' ends at 2024-03-09 23:00:00, the latest at 2024-03-10 23:00:00"),
    ],
    ids=["missing-column", "two-parents", "not-nested", "no-parent", "name-clash", "ragged-end"],
)
def test_bad_structures_are_one_clear_error(raw: pd.DataFrame, change: Any, needle: str) -> None:
    with pytest.raises(DataError) as info:
        _ingest(change(raw.copy()))
    assert needle in str(info.value), str(info.value)


# ------------------------------------------------------------------------------- reconciliation
def _incoherent(h: Hierarchy, folds: int = 3, steps: int = 6, seed: int = 0) -> pd.DataFrame:
    """Backtest-shaped base forecasts of every node that do not add up (each node off by noise)."""
    rng = np.random.default_rng(seed)
    truth = rng.gamma(2.0, 1.0, size=(len(h.bottom), folds * steps))
    S = h.summing_matrix()
    y = S @ truth
    yhat = y * rng.uniform(0.7, 1.3, size=y.shape) + rng.normal(0, 0.3, size=y.shape)
    ds = pd.date_range("2024-01-01", periods=folds * steps, freq="h")
    rows = []
    for i, node in enumerate(h.nodes):
        for t in range(folds * steps):
            rows.append({"unique_id": node, "ds": ds[t], "fold": t // steps, "y": y[i, t], "yhat": yhat[i, t],
                         "q0.1": yhat[i, t] - 1.0, "q0.9": yhat[i, t] + 1.0})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_adds_up_exactly_on_every_fold(full: pd.DataFrame, method: str) -> None:
    from tidecast.evaluation.reconcile import coherence_error, reconcile_backtest

    h = Hierarchy.from_frame(full, LEVELS, "total")
    base = _incoherent(h)
    assert coherence_error(base, h) > 0.05  # the base forecasts really do not add up
    out = reconcile_backtest(base, h, method)
    for fold in range(3):
        part = out[out["fold"] == fold]
        assert coherence_error(part, h) < 1e-6, (method, fold)
    assert out.index.equals(base.index) and (out["q0.9"] - out["q0.1"]).round(9).eq(2.0).all()
    # forecasts that already add up are left alone by every method (S P S = S)
    coherent = reconcile_backtest(base, h, "bottom_up")  # sums of the bottom forecasts: they add up already
    assert np.allclose(reconcile_backtest(coherent, h, method)["yhat"], coherent["yhat"], atol=1e-8)


def test_same_results_as_hierarchical_reconciliation(full: pd.DataFrame) -> None:
    """tidecast's P (fitted through hierarchicalforecast's methods, reused at predict time) gives the
    forecasts HierarchicalReconciliation.reconcile gives on the same fold."""
    from hierarchicalforecast.core import HierarchicalReconciliation
    from hierarchicalforecast.methods import BottomUp, MinTrace

    h = Hierarchy.from_frame(full, LEVELS, "total")
    fold = _incoherent(h, folds=1, steps=8)
    S_df = pd.DataFrame(h.summing_matrix(), columns=h.bottom).assign(unique_id=h.nodes)[["unique_id", *h.bottom]]
    tags = {level: np.array(nodes) for level, nodes in h.tags.items()}
    theirs = HierarchicalReconciliation([BottomUp(), MinTrace(method="ols"), MinTrace(method="wls_struct")]).reconcile(
        Y_hat_df=fold[["unique_id", "ds", "yhat"]], S_df=S_df, tags=tags
    )
    theirs = theirs.set_index(["unique_id", "ds"])
    for method, column in (("bottom_up", "yhat/BottomUp"), ("min_trace_ols", "yhat/MinTrace_method-ols"),
                           ("min_trace_wls_struct", "yhat/MinTrace_method-wls_struct")):
        ours = reconcile_forecasts(fold, h, projection(method, h.summing_matrix())).set_index(["unique_id", "ds"])
        assert np.allclose(ours["yhat"], theirs.loc[ours.index, column], atol=1e-8), method


def test_predict_time_forecasts_add_up_and_survive_pickling(full: pd.DataFrame) -> None:
    import copy

    from tidecast.evaluation.reconcile import coherence_error
    from tidecast.models.ml import LightGBMModel
    from tidecast.models.reconciled import residual_matrix

    h = Hierarchy.from_frame(full, LEVELS, "total")
    ctx = FitContext(freq="h", horizon=6, input_window=48)
    errors = _incoherent(h, folds=2, steps=6)
    bottom = full[full["unique_id"].isin(h.bottom)].drop(columns=LEVELS)
    fitted = ReconciledForecaster(
        lambda: LightGBMModel(name="lgb", n_estimators=5, num_leaves=7, lags=[1, 24]), h, "min_trace_shrink",
        errors=errors,
    ).fit(bottom, ctx)
    history = bottom.groupby("unique_id").tail(48)[["unique_id", "ds", "y"]]  # bottom series only
    base = fitted.base.predict(6, history=h.expand(history))
    assert coherence_error(base, h) > 1e-3  # the base model's own forecasts do not add up
    for method in METHODS:  # one base fit; each method's P as fit() computes it
        model = copy.copy(fitted)
        model.method, model.P = method, projection(method, h.summing_matrix(), residual_matrix(errors, h))
        out = model.predict(6)
        assert sorted(out["unique_id"].unique()) == sorted(h.nodes)
        assert coherence_error(out, h) < 1e-6, method
        again = pickle.loads(pickle.dumps(model)).predict(6, history=history)
        assert coherence_error(again, h) < 1e-6 and len(again) == 6 * len(h.nodes), method
    with pytest.raises(Exception, match="lacks 1 of the 12 bottom series"):
        fitted.predict(6, history=history[history["unique_id"] != "meter_07"])
