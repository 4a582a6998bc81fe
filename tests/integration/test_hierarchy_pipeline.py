"""A hierarchy through the real pipeline: reconciled candidates on the leaderboard, scored per level,
and a registered pyfunc (real MLflow on SQLite) whose forecasts add up."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hierarchy"

SPEC = """\
project: grid-test
data: {source: data/grid.csv, series_column: series_id, time_column: timestamp, target_column: load, frequency: h}
hierarchy: {levels: [feeder, substation], methods: [bottom_up, min_trace_ols, min_trace_shrink]}
features: {lags: [1, 24], calendar: [hour]}
forecast: {input_window: 2d, horizon: 12h, quantiles: [0.1, 0.9]}
backtest: {folds: 2}
selection: {metric: mase}
models:
  - {name: lightgbm, kind: lightgbm, params: {n_estimators: 20, num_leaves: 7, learning_rate: 0.1}}
"""


def _build(days: int) -> pd.DataFrame:
    spec = importlib.util.spec_from_file_location("hierarchy_make_data", EXAMPLE / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(days=days, seed=0)


def test_pipeline_ranks_reconciled_candidates_and_serves_coherent_forecasts(
    tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidecast.data.hierarchy import Hierarchy
    from tidecast.evaluation.reconcile import coherence_error
    from tidecast.flows import training_pipeline
    from tidecast.pipeline import run
    from tidecast.spec import load_spec
    from tidecast.tracking.store import active_uris

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "grid"
    (root / "data").mkdir(parents=True)
    (root / ".tidecast").mkdir()
    shutil.copy(mlflow_template, root / ".tidecast" / "mlflow.db")
    _build(days=14).to_csv(root / "data" / "grid.csv", index=False)
    (root / "tidecast.yaml").write_text(SPEC)
    spec = load_spec(root)

    result = run(training_pipeline(report=False), spec)
    features = result.outputs["features"]
    h = Hierarchy.from_frame(features, ["feeder", "substation"], "total")
    assert len(h.nodes) == 18 and set(features["unique_id"]) == set(h.nodes)  # 12 meters + 3 + 2 + total

    # the leaderboard: every base candidate and its three reconciled variants, all scored
    backtest = result.outputs["backtest"]
    board = backtest["leaderboard"]
    expected = {f"lightgbm{m}" for m in ("", "/bottom_up", "/min_trace_ols", "/min_trace_shrink")}
    assert set(board["candidate"]) == expected
    assert (board["status"] == "ok").all(), board[["candidate", "error"]].to_string()
    for name in expected - {"lightgbm"}:
        forecasts = backtest["results"][name].backtest.forecasts
        assert forecasts["fold"].nunique() == 2 and forecasts["unique_id"].nunique() == 18
        assert coherence_error(forecasts, h) < 1e-6, name  # every fold adds up
    assert coherence_error(backtest["results"]["lightgbm"].backtest.forecasts, h) > 1e-3  # the base does not
    per_level = backtest["hierarchy"]["per_level"]
    assert set(per_level["level"]) == {"total", "substation", "feeder", "bottom"}
    assert len(per_level) == 4 * len(expected) and per_level["mase"].notna().all()
    csv = spec.state_dir / "cache" / "backtest" / result.keys["backtest"] / "artifacts" / "per_level.csv"
    assert pd.read_csv(csv).shape == per_level.shape

    # the registered model: with this data (fixed seed) a reconciled variant beats the base LightGBM
    select = result.outputs["select"]
    assert "/" in select["winner"], board[["candidate", "mase"]].to_string()
    assert result.outputs["track"]["registration"]["version"] == "1"
    with active_uris(spec):
        model = mlflow.pyfunc.load_model(f"models:/{spec.model_name}/1")
    card = model.unwrap_python_model().card
    assert card["hierarchy"]["method"] == select["winner"].split("/")[1] and len(card["hierarchy"]["parents"]) == 12
    window, horizon = spec.forecast_steps()
    bottom = features[features["unique_id"].isin(h.bottom)]
    history = bottom.groupby("unique_id").tail(window)[["unique_id", "ds", "y"]]
    got = model.predict(history, params={"horizon": horizon, "quantiles": [0.1, 0.9]})
    assert set(got["unique_id"]) == set(h.nodes) and len(got) == 18 * horizon
    assert coherence_error(got, h) < 1e-6
    wide = got.pivot(index="unique_id", columns="ds", values="yhat")
    assert np.allclose(wide.loc["total"], wide.loc[h.bottom].sum(), rtol=1e-9)
    # the same as the refit model in-process
    want = select["model"].predict(horizon, history=history, quantiles=[0.1, 0.9])
    pd.testing.assert_frame_equal(got, want[got.columns].reset_index(drop=True), check_dtype=False)

    # served over HTTP (a real uvicorn server): the request holds the meters, the answer every node
    import httpx
    from serving_helpers import Server

    from tidecast.serving.app import create_app

    with Server(create_app(spec)) as server:
        base = server.base
        body = {
            "horizon": horizon,
            "series": [
                {"id": uid, "timestamps": g["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist(), "values": g["y"].tolist()}
                for uid, g in history.groupby("unique_id")
            ],
        }
        answer = httpx.post(f"{base}/forecast", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        served = {f["id"]: np.asarray(f["yhat"]) for f in answer.json()["forecasts"]}
        assert set(served) == set(h.nodes)  # the meters asked for, then the feeders, substations and total
        np.testing.assert_allclose(served["total"], sum(served[m] for m in h.bottom), rtol=1e-9)
        np.testing.assert_allclose(served["total"], wide.loc["total"].to_numpy(), rtol=1e-9)
        partial = httpx.post(f"{base}/forecast", json={**body, "series": body["series"][:3]}, timeout=60)
        assert partial.status_code == 422 and "bottom series" in partial.text
