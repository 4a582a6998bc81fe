"""A per-series model end to end: `tidecast run` (leaderboard, peak memory), `tidecast predict` on a
multi-series file, and the real server's `/forecast` with several series in one request.

The data (as in test_many_series.py): four seasonal meters (the seasonal naive is exact on them),
four random walks (the naive wins) and one meter that starts too late for any backtest fold (it
gets the fallback). ``selection: {scope: per_series, fallback: seasonal_naive}`` registers one
model holding that mapping, as ``many-ps`` v1.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from serving_helpers import Server, run_cli

from tests.conftest import mixed_meters
from tidecast.spec import Spec, load_spec

MODEL = "many-ps"
HORIZON, WINDOW = 12, 24
SPEC = f"""\
project: {MODEL}
data:
  source: data/meters.csv
  series_column: series_id
  time_column: timestamp
  target_column: load
  frequency: h
  static_columns: [customer_type]
forecast: {{input_window: 1d, horizon: 12h}}
backtest: {{folds: 3}}
selection: {{metric: mae, scope: per_series, fallback: seasonal_naive}}
models:
  - {{name: naive, kind: naive}}
  - {{name: seasonal_naive, kind: seasonal_naive, params: {{season_length: 1d}}}}
"""
MAPPING = {**{f"seasonal_{i}": "seasonal_naive" for i in range(4)}, **{f"walk_{i}": "naive" for i in range(4)}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[tuple[Spec, str]]:
    """The project after `tidecast run --until track` (the CLI, in this process): (spec, what it printed)."""
    import tidecast.cli as cli

    root = tmp_path_factory.mktemp("per-series") / "proj"
    (root / "data").mkdir(parents=True)
    (root / ".tidecast").mkdir()
    shutil.copy(mlflow_template, root / ".tidecast" / "mlflow.db")
    mixed_meters().to_csv(root / "data" / "meters.csv", index=False)
    (root / "tidecast.yaml").write_text(SPEC)
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV", "TIDECAST_ADMIN_TOKEN"):
            mp.delenv(var, raising=False)
        mp.setattr(cli.console, "_width", 250)  # a wide terminal: no column of the leaderboard is cut
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_cli("run", "--spec", str(root), "--until", "track")
        assert code == 0, err.getvalue() + out.getvalue()
        mp.setattr(cli.console, "_width", None)
        yield load_spec(root), out.getvalue()


def _training_run(spec: Spec) -> Any:
    from tidecast.tracking.records import training_runs
    from tidecast.tracking.store import connect, experiment_id

    client = connect(spec)
    (run,) = training_runs(client, [experiment_id(spec, client)])
    return run


# ------------------------------------------------------------------------------ run and leaderboard
def test_leaderboard_shows_the_winners_and_the_metric_both_ways(trained: tuple[Spec, str]) -> None:
    spec, out = trained
    lines = out.splitlines()
    assert any("series won" in line for line in lines), out
    rows = {name: line for line in lines for name in ("naive", "seasonal_naive") if re.search(rf"│ {name}\s+│", line)}
    assert re.search(r"│\s+4 │", rows["naive"]) and re.search(r"│\s+5 │", rows["seasonal_naive"]), out
    choice = next(line for line in lines if "per-series choice" in line and "per_series" in line)
    assert "selected" in choice and re.search(r"│\s+9 │", choice)
    assert "series won: seasonal_naive 5, naive 4 (of which 1 too short to judge, given the fallback seasonal_naive: late)" in out
    both = re.search(r"MAE: per-series choice ([\d.]+) vs best global candidate (\w+) ([\d.]+) \(([+-][\d.]+)%\)", out)
    assert both is not None, out
    ours, winner, glob = float(both.group(1)), both.group(2), float(both.group(3))
    assert winner == "seasonal_naive" and ours < glob  # each series by its own winner beats any single candidate
    run = _training_run(spec)  # the printed aggregate is the one logged on the training run
    assert ours == pytest.approx(run.data.metrics["backtest_mae"], abs=5e-4)
    assert "registry: many-ps v1" in out


def test_peak_memory_of_every_step_is_on_the_training_run(trained: tuple[Spec, str]) -> None:
    from tidecast.pipeline.lock import LOCK_FILENAME, LockFile

    spec, _ = trained
    metrics = _training_run(spec).data.metrics
    records = LockFile(spec.root / LOCK_FILENAME).records
    for step in ("ingest", "clean", "features", "backtest", "select"):
        value = metrics[f"peak_rss_mb.{step}"]
        assert 20 < value < 100_000, (step, value)  # a Python process with pandas holds tens of MiB at least
        assert value == pytest.approx(records[step].peak_rss_mb)
    assert records["track"].peak_rss_mb > 0 and "peak_rss_mb.track" not in metrics


# ------------------------------------------------------------------------------------- prediction
def _expected(spec: Spec, history: pd.DataFrame, candidate: str) -> np.ndarray:
    """What ``candidate`` alone forecasts from ``history`` (one series, canonical columns)."""
    from tidecast.training import factory_for, fit_context

    chosen = next(c for c in spec.models if c.name == candidate)
    model = factory_for(chosen, dict(chosen.params), spec)().fit(history, fit_context(spec))
    return model.predict(HORIZON, history=history)["yhat"].to_numpy(float)


def test_predict_forecasts_every_series_with_its_own_candidate(
    trained: tuple[Spec, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, _ = trained
    data = mixed_meters()
    new = data[data["series_id"] == "walk_2"].assign(series_id="brand_new")  # unknown to the mapping
    source, output = tmp_path / "input.csv", tmp_path / "forecast.csv"
    pd.concat([data, new], ignore_index=True).to_csv(source, index=False)
    code = run_cli("predict", "--model", MODEL, "--spec", str(spec.root), "--input", str(source), "--output", str(output))
    printed = capsys.readouterr()
    assert code == 0, printed.err
    said = " ".join(printed.out.split())  # the console wraps long lines
    assert "per-series model: seasonal_naive 6, naive 4 series" in said, said
    # 'late' was too short to judge in training, 'brand_new' is unknown: both go to the fallback
    assert "2 series without a per-series winner, forecast by the fallback seasonal_naive: brand_new, late" in said
    forecast = pd.read_csv(output)
    everyone = sorted([*MAPPING, "late", "brand_new"])
    assert sorted(forecast["unique_id"].unique()) == everyone and len(forecast) == HORIZON * len(everyone)
    routes = forecast.drop_duplicates("unique_id").set_index("unique_id")["model"].to_dict()
    assert routes == {**MAPPING, "late": "seasonal_naive", "brand_new": "seasonal_naive"}
    frame = pd.concat([data, new], ignore_index=True).rename(columns={"series_id": "unique_id", "timestamp": "ds", "load": "y"})
    for uid in everyone:
        history = frame[frame["unique_id"] == uid].tail(WINDOW).reset_index(drop=True)
        got = forecast.loc[forecast["unique_id"] == uid, "yhat"].to_numpy(float)
        np.testing.assert_allclose(got, _expected(spec, history, routes[uid]), rtol=1e-9, err_msg=uid)
        if routes[uid] == "naive":  # independent of tidecast: a flat line at the last value
            np.testing.assert_allclose(got, history["y"].iloc[-1])


# ---------------------------------------------------------------------------------------- serving
def test_forecast_endpoint_routes_each_series_to_its_model(trained: tuple[Spec, str]) -> None:
    import mlflow

    from tidecast.serving.app import create_app
    from tidecast.tracking.store import active_uris

    spec, _ = trained
    data = mixed_meters().rename(columns={"series_id": "unique_id", "timestamp": "ds", "load": "y"})
    cut = data[data["unique_id"] == "walk_1"].assign(unique_id="brand_new")
    data = pd.concat([data, cut], ignore_index=True)
    asked = ["seasonal_0", "walk_0", "late", "brand_new", "walk_3"]
    histories = {u: data[data["unique_id"] == u].tail(WINDOW).reset_index(drop=True) for u in asked}
    body = {
        "series": [
            {"id": u, "timestamps": h["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist(), "values": h["y"].tolist()}
            for u, h in histories.items()
        ]
    }
    with Server(create_app(spec, token="t")) as server:
        response = httpx.post(f"{server.base}/forecast", json=body, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    got = {f["id"]: f for f in answer["forecasts"]}
    assert [f["id"] for f in answer["forecasts"]] == asked
    assert {u: (f["model"], f["fallback"]) for u, f in got.items()} == {
        "seasonal_0": ("seasonal_naive", False),
        "walk_0": ("naive", False),
        "late": ("seasonal_naive", True),
        "brand_new": ("seasonal_naive", True),
        "walk_3": ("naive", False),
    }
    (warning,) = answer["warnings"]
    assert "2 series without a per-series winner ('late', 'brand_new')" in warning and "'seasonal_naive'" in warning

    with active_uris(spec):
        pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    frame = pd.concat(histories.values(), ignore_index=True)[["unique_id", "ds", "y"]]
    reference = pyfunc.predict(frame, params={"horizon": HORIZON, "quantiles": [0.1, 0.9]})
    for uid in asked:
        mine = reference[reference["unique_id"] == uid]
        np.testing.assert_allclose(got[uid]["yhat"], mine["yhat"].to_numpy(float), rtol=1e-9, err_msg=uid)
        np.testing.assert_allclose(got[uid]["quantiles"]["0.1"], mine["q0.1"].to_numpy(float), rtol=1e-9)
        expected = _expected(spec, histories[uid], got[uid]["model"])
        np.testing.assert_allclose(got[uid]["yhat"], expected, rtol=1e-9, err_msg=uid)
    # the routes matter: a random walk's forecast is flat, a seasonal meter's follows its day
    assert np.ptp(got["walk_0"]["yhat"]) == 0 and np.ptp(got["seasonal_0"]["yhat"]) > 1
