"""The forecaster as an MLflow pyfunc: loaded by plain MLflow in another process, served by `mlflow models serve`.

The first tests log a hand-made seasonal naive; the ``champion`` tests do the same with champions
trained by the real pipeline (``serving_helpers.CHAMPIONS``: LightGBM reading the known-in-future
``temperature``, a tiny torch MLP): MLflow's pyfunc in a fresh process, ``mlflow models serve`` and
tidecast's own loader all give the same forecast to 1e-9.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from serving_helpers import CHAMPIONS, assert_agree, champion_params, train_champion
from tracking_helpers import (
    HORIZON,
    WINDOW,
    backtest_and_select,
    child_env,
    make_frame,
    window_input,
)

from tidecast.tracking.pyfunc import forecast_with, log_forecaster, model_card
from tidecast.tracking.store import active_uris, connect, experiment_id

LOAD_SCRIPT = """
import sys
import mlflow
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
out = model.predict(frame, params={"horizon": 24, "quantiles": [0.1, 0.9]})
out.to_parquet(sys.argv[3])
assert "tidecast.cli" not in sys.modules, "loading a model must not import the CLI"
print("loaded", type(model.unwrap_python_model()).__name__)
"""


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame(days=8)


def _log(spec, frame: pd.DataFrame, **kwargs) -> tuple[str, dict]:
    _, select = backtest_and_select(frame, **kwargs)
    client = connect(spec)
    exp = experiment_id(spec, client)
    with active_uris(spec), mlflow.start_run(experiment_id=exp):
        uri = log_forecaster(select, spec, features=frame)
    return uri, select


def _expected(select: dict, frame: pd.DataFrame) -> pd.DataFrame:
    _, history, future = window_input(frame)
    return select["model"].predict(HORIZON, history=history, X_future=future, quantiles=[0.1, 0.9])


def test_pyfunc_loads_in_a_fresh_process_and_matches(new_project, frame: pd.DataFrame, tmp_path: Path) -> None:
    spec = new_project()
    uri, select = _log(spec, frame, winner_bias=0.0)
    model_input, _, _ = window_input(frame)
    model_input.to_parquet(tmp_path / "in.parquet")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, uri, str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet")],
        env=child_env(spec),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded TidecastModel" in done.stdout
    got = pd.read_parquet(tmp_path / "out.parquet")
    want = _expected(select, frame)
    assert list(got.columns) == ["unique_id", "ds", "yhat", "q0.1", "q0.9"]
    pd.testing.assert_frame_equal(got, want[got.columns].astype({"unique_id": str}), check_dtype=False)

    # the signature carries the params; unique_id and y are optional inputs
    with active_uris(spec):
        info = mlflow.models.get_model_info(uri)
    params = {p.name: p.default for p in info.signature.params.params}
    assert params == {"horizon": HORIZON, "quantiles": [0.1, 0.9]}
    optional = {c.name for c in info.signature.inputs.inputs if not c.required}
    assert optional == {"unique_id", "y"}


def test_pyfunc_validates_its_input(frame: pd.DataFrame, tmp_path: Path) -> None:
    from tracking_helpers import make_spec

    spec = make_spec(tmp_path / "p")
    _, select = backtest_and_select(frame)
    card = model_card(select, spec)
    card["series_ids"] = ["a", "b"]
    good, _, _ = window_input(frame)
    assert len(forecast_with(select["model"], card, good)) == 2 * HORIZON

    def fails(df: pd.DataFrame, match: str, params: dict | None = None) -> None:
        with pytest.raises(ValueError, match=match):
            forecast_with(select["model"], card, df, params)

    a = good[good["unique_id"] == "a"].reset_index(drop=True)
    fails(good.iloc[::-1], "not sorted")
    fails(a.drop(index=5), "not regular on '1h'")
    fails(a.iloc[-(HORIZON + 10) :], f"the model needs at least {WINDOW}")
    fails(a.assign(y=a["y"].where(a.index != 3)), "'y' is missing at")
    fails(a.drop(columns=["temperature"]), "lacks the exogenous column")
    fails(a.iloc[:-3], "need 24 \\(horizon\\)")
    fails(a.drop(columns=["unique_id"]), "trained on 2 series")
    fails(a, "positive integer", {"horizon": 0})
    fails(a, "strictly between 0 and 1", {"quantiles": [0.1, 1.5]})
    # one series, no id column: fine when the model knows a single series
    card["series_ids"] = ["a"]
    out = forecast_with(select["model"], card, a.drop(columns=["unique_id"]), {"horizon": 12, "quantiles": [0.5]})
    assert list(out.columns) == ["unique_id", "ds", "yhat", "q0.5"] and len(out) == 12
    assert (out["unique_id"] == "a").all()


# ------------------------------------------------------------------- champions of the real pipeline
CHAMPION_WINDOW = CHAMPION_HORIZON = 24


@pytest.fixture(scope="module", params=[p for p in champion_params() if p.values[0] != "naive"])
def champion(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path):
    """(kind, spec) of a project trained by the real pipeline: ``small`` v1 is its champion."""
    kind = str(request.param)
    assert kind in CHAMPIONS
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV"):
            mp.delenv(var, raising=False)
        root = tmp_path_factory.mktemp(f"pyfunc-{kind}") / "proj"
        yield kind, train_champion(root, kind, days=14, template=mlflow_template)


def _champion_input(spec, *, cut: int = 30) -> pd.DataFrame:
    """What a pyfunc caller sends: a window of history ending ``cut`` rows before the end, then the
    horizon's rows with ``y`` empty and the temperature known."""
    data = pd.read_csv(spec.root / "data" / "power.csv", parse_dates=["timestamp"])
    data = data.rename(columns={"timestamp": "ds", "power_kw": "y"})
    end = len(data) - cut
    frame = data.iloc[end - CHAMPION_WINDOW : end + CHAMPION_HORIZON][["ds", "y", "temperature"]]
    frame = frame.reset_index(drop=True)
    frame.loc[CHAMPION_WINDOW:, "y"] = np.nan
    frame.insert(0, "unique_id", "series")
    return frame


def _tidecast_forecast(spec, frame: pd.DataFrame) -> pd.DataFrame:
    """The same forecast through tidecast's serving loader (no MLflow pyfunc wrapper)."""
    from tidecast.serving.loader import load_model

    model = load_model(spec, "champion", warmup=False)
    params = {"horizon": CHAMPION_HORIZON, "quantiles": [0.1, 0.9]}
    return forecast_with(model.forecaster, model.card, frame, params)


def test_champion_pyfunc_in_a_fresh_process_matches(champion, tmp_path: Path) -> None:
    kind, spec = champion
    frame = _champion_input(spec)
    frame.to_parquet(tmp_path / "in.parquet")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_SCRIPT,
            "models:/small@champion",
            str(tmp_path / "in.parquet"),
            str(tmp_path / "out.parquet"),
        ],
        env=child_env(spec),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = pd.read_parquet(tmp_path / "out.parquet")
    want = _tidecast_forecast(spec, frame)
    assert list(got.columns) == ["unique_id", "ds", "yhat", "q0.1", "q0.9"] == list(want.columns)
    assert len(got) == CHAMPION_HORIZON and got["ds"].tolist() == want["ds"].tolist()
    assert_agree(got[["yhat", "q0.1", "q0.9"]].to_numpy(), want[["yhat", "q0.1", "q0.9"]].to_numpy(), kind)
    assert np.isfinite(got[["yhat", "q0.1", "q0.9"]].to_numpy()).all()
    assert (got["q0.1"] <= got["q0.9"]).all()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_models_serve(model_uri: str, env: dict[str, str], folder: Path) -> Iterator[str]:
    """``mlflow models serve -m MODEL_URI`` on a free loopback port until it answers ``/ping``; its base URL."""
    import httpx

    port = _free_port()
    log_file = folder / "serve.log"
    with open(log_file, "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                model_uri,
                "--env-manager",
                "local",
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                assert server.poll() is None, log_file.read_text()[-3000:]
                try:
                    if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "mlflow models serve did not answer /ping within 90 s"
                time.sleep(0.3)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)


def _invocations(base: str, model_input: pd.DataFrame, params: dict) -> pd.DataFrame:
    import httpx

    payload = {
        "dataframe_split": json.loads(
            model_input.assign(ds=model_input["ds"].astype(str)).to_json(orient="split", index=False)
        ),
        "params": params,
    }
    response = httpx.post(f"{base}/invocations", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return pd.DataFrame(response.json()["predictions"])


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_same_forecast(new_project, frame: pd.DataFrame, tmp_path: Path) -> None:
    import httpx

    from tidecast.tracking.registry import register_and_gate

    spec = new_project()
    uri, select = _log(spec, frame)
    decision = register_and_gate(spec, model_uri=uri, run_id=None, select=select, features=frame)
    assert decision.alias == "champion"
    with mlflow_models_serve(f"models:/{spec.model_name}@champion", child_env(spec), tmp_path) as base:
        model_input, _, _ = window_input(frame)
        params = {"horizon": HORIZON, "quantiles": [0.1, 0.9]}
        got = _invocations(base, model_input, params)
        want = _expected(select, frame)
        assert list(got.columns) == ["unique_id", "ds", "yhat", "q0.1", "q0.9"]
        assert pd.to_datetime(got["ds"]).tolist() == want["ds"].tolist()
        np.testing.assert_allclose(
            got[["yhat", "q0.1", "q0.9"]].to_numpy(), want[["yhat", "q0.1", "q0.9"]].to_numpy(), rtol=1e-9
        )
        split = json.loads(model_input.assign(ds=model_input["ds"].astype(str)).to_json(orient="split", index=False))
        bad = httpx.post(f"{base}/invocations", json={"dataframe_split": split, "params": {"horizon": 0}}, timeout=30)
        assert bad.status_code >= 400 and "positive integer" in bad.text


@pytest.mark.slow
def test_mlflow_models_serve_answers_the_champion_forecast(champion, tmp_path: Path) -> None:
    kind, spec = champion
    frame = _champion_input(spec, cut=50)
    params = {"horizon": 12, "quantiles": [0.1, 0.9]}
    with mlflow_models_serve("models:/small@champion", child_env(spec), tmp_path) as base:
        got = _invocations(base, frame, params)
    from tidecast.serving.loader import load_model

    model = load_model(spec, "champion", warmup=False)
    want = forecast_with(model.forecaster, model.card, frame, params)
    assert list(got.columns) == list(want.columns) and len(got) == 12
    assert pd.to_datetime(got["ds"]).tolist() == want["ds"].tolist()
    assert_agree(got[["yhat", "q0.1", "q0.9"]].to_numpy(), want[["yhat", "q0.1", "q0.9"]].to_numpy(), kind)
