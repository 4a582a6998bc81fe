"""The REST server over real HTTP (uvicorn on a free loopback port, in a thread), and `tidecast predict`.

One small project is trained once per champion (hourly data; see ``serving_helpers.CHAMPIONS``: a
naive model, a LightGBM model reading the known-in-future ``temperature``, a tiny torch MLP); its
champion ``small`` v1 is served, and every test runs against each. ``/forecast`` and
``/invocations`` must agree with MLflow's own pyfunc ``predict`` to 1e-9. The hot-swap test
registers v2 and moves the alias, so it runs last (pytest keeps file order within a champion).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from serving_helpers import READS_EXOGENOUS, Server, assert_agree, champion_params, run_cli, train_champion

from tidecast.spec import Spec

TOKEN = "test-admin-token"
WINDOW = HORIZON = 24


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", params=champion_params())
def champion(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path, champion: str) -> Iterator[Spec]:
    """A trained project whose champion is ``small`` v1 (registry and prediction store under .tidecast/)."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV", "TIDECAST_ADMIN_TOKEN"):
            mp.delenv(var, raising=False)
        root = tmp_path_factory.mktemp(f"serving-{champion}") / "proj"
        yield train_champion(root, champion, days=21, template=mlflow_template)


@pytest.fixture(scope="module")
def data(project: Spec) -> pd.DataFrame:
    frame = pd.read_csv(project.root / "data" / "power.csv", parse_dates=["timestamp"])
    return frame.rename(columns={"timestamp": "ds", "power_kw": "y"})


@pytest.fixture(scope="module")
def server(project: Spec) -> Iterator[Server]:
    from tidecast.serving.app import create_app

    spec = project.model_copy(deep=True)
    spec.root, spec.source_file = project.root, project.source_file
    spec.serving.poll_interval = 0.3
    spec.serving.max_series = 3
    spec.serving.max_body_bytes = 200_000
    running = Server(create_app(spec, token=TOKEN)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30) as c:
        yield c


def series_body(
    data: pd.DataFrame, *, n: int = WINDOW, horizon: int = HORIZON, cut: int = 48, aware: bool = False, **extra: Any
) -> dict[str, Any]:
    """One series: ``n`` points of history ending ``cut`` rows before the end, temperature for history + horizon."""
    end = len(data) - cut
    hist = data.iloc[end - n : end]
    temp = data["temperature"].iloc[end - n : end + horizon]
    fmt = "%Y-%m-%dT%H:%M:%SZ" if aware else "%Y-%m-%dT%H:%M:%S"
    body = {
        "id": "series",
        "timestamps": hist["ds"].dt.strftime(fmt).tolist(),
        "values": hist["y"].tolist(),
        "exogenous": {"temperature": temp.tolist()},
    }
    body.update(extra)
    return body


def pyfunc_input(data: pd.DataFrame, *, n: int = WINDOW, horizon: int = HORIZON, cut: int = 48) -> pd.DataFrame:
    """The same request as MLflow's pyfunc takes it: history rows then future rows with ``y`` empty."""
    end = len(data) - cut
    frame = data.iloc[end - n : end + horizon][["ds", "y", "temperature"]].copy().reset_index(drop=True)
    frame.loc[n:, "y"] = np.nan
    frame.insert(0, "unique_id", "series")
    return frame


@pytest.fixture(scope="module")
def pyfunc(project: Spec) -> Any:
    import mlflow

    from tidecast.tracking.store import active_uris

    with active_uris(project):
        return mlflow.pyfunc.load_model("models:/small/1")


# --------------------------------------------------------------------------------- forecasting
def test_forecast_equals_the_mlflow_pyfunc(client: httpx.Client, data: pd.DataFrame, pyfunc: Any) -> None:
    response = client.post("/forecast", json={"series": [series_body(data)], "quantiles": [0.1, 0.5, 0.9]})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["model"] == {"name": "small", "version": "1", "alias": "champion"}
    [got] = body["forecasts"]
    want = pyfunc.predict(pyfunc_input(data), params={"horizon": HORIZON, "quantiles": [0.1, 0.5, 0.9]})
    assert got["id"] == "series"
    assert pd.to_datetime(got["timestamps"]).tolist() == want["ds"].tolist()
    assert_agree(got["yhat"], want["yhat"])
    assert set(got["quantiles"]) == {"0.1", "0.5", "0.9"}
    for q in (0.1, 0.5, 0.9):
        assert_agree(got["quantiles"][f"{q:g}"], want[f"q{q:g}"], f"q{q:g}")

    # the single-series shorthand, a shorter horizon, no quantiles, times with an offset (answered in UTC, 'Z')
    short = series_body(data, horizon=6, aware=True)
    short.pop("id")
    response = client.post("/forecast", json={**short, "horizon": 6, "quantiles": []})
    assert response.status_code == 200, response.text
    [got] = response.json()["forecasts"]
    assert len(got["yhat"]) == 6 and got["quantiles"] == {}
    assert got["timestamps"][0].endswith("Z")
    want = pyfunc.predict(pyfunc_input(data, horizon=6), params={"horizon": 6, "quantiles": []})
    assert_agree(got["yhat"], want["yhat"])


def test_more_history_than_the_window_and_the_default_horizon(
    client: httpx.Client, data: pd.DataFrame, pyfunc: Any
) -> None:
    response = client.post("/forecast", json=series_body(data, n=3 * WINDOW))
    assert response.status_code == 200, response.text
    [got] = response.json()["forecasts"]
    want = pyfunc.predict(pyfunc_input(data, n=3 * WINDOW))
    assert len(got["yhat"]) == HORIZON and set(got["quantiles"]) == {"0.1", "0.9"}
    assert_agree(got["yhat"], want["yhat"])
    assert_agree(got["quantiles"]["0.9"], want["q0.9"], "q0.9")


def test_series_sent_together_are_forecast_as_if_alone(
    client: httpx.Client, data: pd.DataFrame, pyfunc: Any, champion: str
) -> None:
    """Two series in one request (ids the model never saw, different stretches): each forecast is the one
    it gets alone, and the pyfunc given both frames answers exactly the same (a global model must not mix
    them). The MLP computes in float32, whose matrix products round differently with the batch size:
    alone and together it agrees to float32 precision (1e-6), not 1e-9."""
    alone_tol = 1e-6 if champion == "mlp" else 1e-9
    bodies = [series_body(data, cut=48, id="a"), series_body(data, cut=100, id="b")]
    response = client.post("/forecast", json={"series": bodies})
    assert response.status_code == 200, response.text
    together = {f["id"]: f for f in response.json()["forecasts"]}
    assert list(together) == ["a", "b"]
    frames = []
    for body, cut in zip(bodies, (48, 100), strict=True):
        alone = client.post("/forecast", json={"series": [body]})
        assert alone.status_code == 200, alone.text
        [single] = alone.json()["forecasts"]
        assert single["timestamps"] == together[body["id"]]["timestamps"]
        assert_agree(together[body["id"]]["yhat"], single["yhat"], body["id"], tol=alone_tol)
        assert_agree(together[body["id"]]["quantiles"]["0.9"], single["quantiles"]["0.9"], body["id"], tol=alone_tol)
        frames.append(pyfunc_input(data, cut=cut).assign(unique_id=body["id"]))
    want = pyfunc.predict(pd.concat(frames, ignore_index=True))
    for sid in ("a", "b"):
        mine = want[want["unique_id"] == sid]
        assert_agree(together[sid]["yhat"], mine["yhat"], sid)
        assert_agree(together[sid]["quantiles"]["0.1"], mine["q0.1"], sid)


def test_the_future_temperature_reaches_the_model(
    client: httpx.Client, data: pd.DataFrame, pyfunc: Any, champion: str
) -> None:
    """A warmer horizon changes the forecast of a model that reads ``temperature`` (and only of one that
    does), identically through ``/forecast`` and the pyfunc: the future rows are the ones sent."""
    body = series_body(data)
    warmer = series_body(data)
    warmer["exogenous"]["temperature"] = [
        t + 15.0 * (i >= WINDOW) for i, t in enumerate(body["exogenous"]["temperature"])
    ]
    answers = []
    for sent in (body, warmer):
        response = client.post("/forecast", json=sent)
        assert response.status_code == 200, response.text
        answers.append(np.asarray(response.json()["forecasts"][0]["yhat"]))
    frame = pyfunc_input(data)
    frame.loc[WINDOW:, "temperature"] += 15.0
    assert_agree(answers[1], pyfunc.predict(frame)["yhat"])
    moved = float(np.max(np.abs(answers[1] - answers[0])))
    assert (moved > 1e-6) == READS_EXOGENOUS[champion], (champion, moved)


def test_an_input_that_overflows_the_model_is_refused_not_answered_with_nulls(
    client: httpx.Client, data: pd.DataFrame, pyfunc: Any, champion: str
) -> None:
    """A finite but absurd future temperature (1e150): the MLP overflows. Every path answers the same: a
    finite forecast equal to the pyfunc's, or a refusal naming the series (422 on /forecast, 400 on
    /invocations, ValueError from the pyfunc); never a 200 holding nulls. (Found by the fuzz suite.)"""
    body = series_body(data)
    body["exogenous"]["temperature"][WINDOW + 5] = 1e150
    frame = pyfunc_input(data)
    frame.loc[WINDOW + 5, "temperature"] = 1e150
    response = client.post("/forecast", json=body)
    split = json.loads(_frame_json(frame).to_json(orient="split", index=False))
    invoked = client.post("/invocations", json={"dataframe_split": split})
    try:
        want = pyfunc.predict(frame)
    except Exception as exc:  # MLflow may wrap the pyfunc's ValueError
        assert "the model's forecast is not finite" in str(exc), exc
        assert response.status_code == 422, response.text
        [item] = response.json()["detail"]
        assert item["msg"].startswith("series 'series': the model's forecast is not finite (yhat at "), item
        assert invoked.status_code == 400 and "not finite" in invoked.json()["message"], invoked.text
        refused = True
    else:
        assert response.status_code == 200 and invoked.status_code == 200, (response.text, invoked.text)
        assert_agree(response.json()["forecasts"][0]["yhat"], want["yhat"])
        assert np.isfinite(want[["yhat", "q0.1", "q0.9"]].to_numpy()).all()
        refused = False
    assert refused == (champion == "mlp"), (champion, refused)  # the MLP overflows; trees and baselines do not


def _mutate(data: pd.DataFrame, case: str) -> dict[str, Any] | str:
    body = series_body(data)
    if case == "lengths":
        body["values"] = body["values"][:-1]
    elif case == "null":
        body["values"][3] = None
    elif case in ("nan", "inf"):  # not JSON, but what Python's json (and many clients) send
        body["values"][5] = math.nan if case == "nan" else math.inf
        return json.dumps({"series": [body]})
    elif case == "unsorted":
        body["timestamps"][4], body["timestamps"][5] = body["timestamps"][5], body["timestamps"][4]
    elif case == "frequency":
        body["timestamps"] = (
            pd.date_range("2024-01-01", periods=WINDOW, freq="2h").strftime("%Y-%m-%dT%H:%M:%S").tolist()
        )
    elif case == "irregular":
        body["timestamps"] = body["timestamps"][:10] + body["timestamps"][11:] + ["2030-01-01T00:00:00"]
    elif case == "short":
        body = series_body(data, n=WINDOW - 4)
    elif case == "too_many":
        return json.dumps({"series": [series_body(data, id=f"s{i}") for i in range(4)]})
    elif case == "horizon_zero":
        return json.dumps({"series": [body], "horizon": 0})
    elif case == "horizon_cap":
        return json.dumps({"series": [series_body(data, horizon=HORIZON + 1)], "horizon": HORIZON + 1})
    elif case == "quantiles":
        return json.dumps({"series": [body], "quantiles": [0.1, 1.2]})
    elif case == "future_exog":
        body["exogenous"]["temperature"] = body["exogenous"]["temperature"][: WINDOW + 10]
    elif case == "exog_missing":
        body["exogenous"] = {"temprature": body["exogenous"]["temperature"]}
    elif case == "mixed_tz":
        body["timestamps"][0] += "Z"
    elif case == "empty":
        return json.dumps({"series": []})
    return json.dumps({"series": [body]})


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("lengths", "timestamps and values differ in length: 24 timestamps, 23 values"),
        ("null", "values[3] is null"),
        ("nan", "values[5] is NaN"),
        ("inf", "values[5] is inf"),
        ("unsorted", "timestamps are not sorted ascending: timestamps[5]"),
        ("frequency", "timestamps are 2h apart, the model's frequency is 1h"),
        ("irregular", "timestamps are irregular: a step of 2h before timestamps[10]"),
        ("short", "history too short: 20 point(s), the model needs at least 24"),
        ("too_many", "too many series: 4, at most 3 per request"),
        ("horizon_zero", "horizon must be at least 1 step"),
        ("horizon_cap", "horizon 25 is above this model's limit of 24 steps"),
        ("quantiles", "quantiles must lie strictly between 0 and 1, got [1.2]"),
        ("future_exog", "missing future exogenous values: 'temperature' has 34 values, needs 48"),
        ("exog_missing", "missing exogenous column 'temperature' (is 'temprature' a typo?)"),
        ("mixed_tz", "timestamps mix times with and without a UTC offset"),
        ("empty", "at least 1 item"),
    ],
)
def test_bad_requests_answer_422_naming_the_problem(
    client: httpx.Client, data: pd.DataFrame, case: str, message: str
) -> None:
    response = client.post("/forecast", content=_mutate(data, case), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(message in item["msg"] for item in detail), detail
    assert all(set(item) == {"loc", "msg", "type"} for item in detail)  # no echo of the (possibly huge) input


def test_body_over_the_cap_is_refused_before_parsing(client: httpx.Client) -> None:
    huge = b'{"series": [' + b" " * 300_000 + b"]}"
    response = client.post("/forecast", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "200000 bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size is counted
        yield b'{"series": ['
        for _ in range(30):
            yield b" " * 10_000
        yield b"]}"

    response = client.post("/forecast", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.get("/health").status_code == 200


def test_an_unexpected_error_is_a_500_without_a_traceback(
    server: Server, client: httpx.Client, data: pd.DataFrame
) -> None:
    model = server.app.state.holder.current

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    model.forecaster.predict = broken
    try:
        response = client.post("/forecast", json=series_body(data), headers={"x-request-id": "req-42"})
    finally:
        del model.forecaster.predict
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "request_id": "req-42"}
    assert "secret" not in response.text and response.headers["x-request-id"] == "req-42"


# ---------------------------------------------------------------------------------- MLflow protocol
def _frame_json(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(ds=frame["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S"))


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "inputs", "instances", "csv"])
def test_invocations_answer_as_mlflow_serving(client: httpx.Client, data: pd.DataFrame, pyfunc: Any, fmt: str) -> None:
    frame = pyfunc_input(data)
    params = {"horizon": 12, "quantiles": [0.1, 0.9]}
    as_json = _frame_json(frame)
    if fmt == "csv":
        response = client.post(
            "/invocations", content=as_json.to_csv(index=False), headers={"content-type": "text/csv"}
        )
        params = {}
    else:
        split = json.loads(as_json.to_json(orient="split", index=False))
        rows = [dict(zip(split["columns"], row, strict=True)) for row in split["data"]]
        data_part = {
            "dataframe_split": split,
            "dataframe_records": rows,
            "inputs": {c: [row[i] for row in split["data"]] for i, c in enumerate(split["columns"])},
            "instances": rows,
        }[fmt]
        response = client.post(
            "/invocations",
            content=json.dumps({fmt: data_part, "params": params}),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200, response.text
    got = pd.DataFrame(response.json()["predictions"])
    want = pyfunc.predict(frame, params=params or None)
    assert list(got.columns) == list(want.columns)
    # MLflow writes timestamps with Timestamp.isoformat()
    assert got["ds"].tolist() == [t.isoformat() for t in want["ds"]]
    assert_agree(got[["yhat", "q0.1", "q0.9"]].to_numpy(), want[["yhat", "q0.1", "q0.9"]].to_numpy())


def test_invocations_errors_are_mlflow_style(client: httpx.Client, data: pd.DataFrame) -> None:
    frame = _frame_json(pyfunc_input(data))
    split = json.loads(frame.to_json(orient="split", index=False))
    response = client.post("/invocations", json={"dataframe_split": split, "params": {"horizon": 0}})
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST" and "positive integer" in response.json()["message"]
    response = client.post("/invocations", json={"dataframe_split": split, "inputs": {}})
    assert response.status_code == 400 and "exactly one of the input fields" in response.json()["message"]
    response = client.post("/invocations", content=b"x", headers={"content-type": "application/xml"})
    assert response.status_code == 415
    response = client.post("/invocations", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "valid JSON" in response.json()["message"]


# ------------------------------------------------------------------------------------- operations
def test_health_ready_metadata(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["model"]["version"] == "1"
    meta = client.get("/metadata").json()
    assert (meta["name"], meta["version"], meta["alias"]) == ("small", "1", "champion")
    assert (meta["freq"], meta["input_window"], meta["horizon"], meta["quantiles"]) == ("1h", 24, 24, [0.1, 0.9])
    assert meta["exog_future"] == ["temperature"]
    assert meta["spec_hash"] and "mase" in meta["metrics"]["holdout"]
    docs = client.get("/openapi.json").json()
    assert "examples" in json.dumps(docs["components"]["schemas"]["ForecastRequest"])


def test_metrics_parse(client: httpx.Client, data: pd.DataFrame) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client.post("/forecast", json=series_body(data))
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests = {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for s in families["tidecast_requests"].samples
        if s.name == "tidecast_requests_total"
    }
    assert requests[("/forecast", "200")] >= 1
    assert requests.get(("/forecast", "422"), 0) >= 1
    latency = [s for s in families["tidecast_request_seconds"].samples if s.name.endswith("_count")]
    assert any(s.labels["endpoint"] == "/forecast" and s.value >= 1 for s in latency)
    assert [s.value for s in families["tidecast_model_version"].samples] == [1.0]
    assert "tidecast_model_swaps" in families


def test_served_forecasts_are_logged_to_the_prediction_store(
    server: Server, project: Spec, client: httpx.Client, data: pd.DataFrame
) -> None:
    from tidecast.serving.store import store_for

    assert server.app.state.prediction_log.flush(timeout=20)  # idle writer: this forecast is a batch of its own
    response = client.post("/forecast", json=series_body(data, cut=30), headers={"x-request-id": "logged-1"})
    assert response.status_code == 200
    assert server.app.state.prediction_log.flush(timeout=20)
    logged = store_for(project).predictions("small")
    mine = logged[logged["batch_id"] == "logged-1"]
    assert len(mine) == HORIZON and set(mine["source"]) == {"serve"} and set(mine["model_version"]) == {"1"}
    np.testing.assert_allclose(mine["yhat"].to_numpy(), response.json()["forecasts"][0]["yhat"])


def test_admin_endpoints_need_the_token(client: httpx.Client, project: Spec) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"authorization": "Basic abc"}).status_code == 401
    assert client.post("/admin/reload", headers={"authorization": "Bearer wrong"}).status_code == 403
    response = client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.json()["reloaded"] is False

    import asyncio

    from tidecast.serving.app import create_app

    async def ask_disabled() -> tuple[httpx.Response, httpx.Response]:
        # no token in the environment; ASGITransport does not run the lifespan, so no model is loaded
        transport = httpx.ASGITransport(app=create_app(project))
        async with httpx.AsyncClient(transport=transport, base_url="http://disabled") as c:
            return await c.post("/admin/reload", headers={"authorization": "Bearer x"}), await c.get("/ready")

    response, ready = asyncio.run(ask_disabled())
    assert response.status_code == 403
    assert response.json()["detail"] == "admin endpoints are disabled: set TIDECAST_ADMIN_TOKEN"
    assert ready.status_code == 503


# --------------------------------------------------------------------------------- batch prediction
def test_predict_cli_writes_csv_and_png_and_logs(
    project: Spec, data: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from tidecast.serving.store import store_for

    raw = pd.read_csv(project.root / "data" / "power.csv")
    raw.loc[raw.index[-HORIZON:], "power_kw"] = np.nan  # the last day: temperature known, power to forecast
    future = tmp_path / "future.csv"
    raw.to_csv(future, index=False)
    out, png = tmp_path / "fc.csv", tmp_path / "fc.png"
    before = len(store_for(project).predictions("small"))
    code = run_cli(
        "predict",
        "--model",
        "small",
        "--version",
        "1",
        "--spec",
        str(project.root),
        "--input",
        str(future),
        "--history",
        "2d",
        "--output",
        str(out),
        "--plot",
        str(png),
    )
    assert code == 0, capsys.readouterr()
    forecast = pd.read_csv(out, parse_dates=["ds"])
    assert list(forecast.columns) == ["unique_id", "ds", "yhat", "q0.1", "q0.9"] and len(forecast) == HORIZON
    last = pd.Timestamp(raw["timestamp"].iloc[-1]).tz_localize("Europe/Paris").tz_convert("UTC").tz_localize(None)
    assert forecast["ds"].iloc[-1] == last
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 200
        assert len(image.getcolors(1 << 16) or range(1000)) > 10  # drawn, not blank
    logged = store_for(project).predictions("small")
    assert len(logged) == before + HORIZON and logged["source"].iloc[-1] == "predict"
    assert "small v1" in capsys.readouterr().out


def test_predict_cli_unknown_model_exits_2(project: Spec, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("predict", "--model", "nope", "--spec", str(project.root)) == 2
    assert "no registered model 'nope'" in capsys.readouterr().err
    assert run_cli("predict", "--model", "small", "--version", "9", "--spec", str(project.root)) == 2
    assert "has no version 9 (versions: 1)" in capsys.readouterr().err
    assert run_cli("predict", "--model", "small", "--alias", "gold", "--spec", str(project.root)) == 2
    assert "has no alias 'gold'" in capsys.readouterr().err


def test_hot_swap_under_load_fails_no_request(
    server: Server, project: Spec, client: httpx.Client, data: pd.DataFrame
) -> None:
    from tidecast.tracking.registry import register_version
    from tidecast.tracking.store import active_uris, connect

    body = series_body(data)
    versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.base, timeout=30) as c:
            while not stop.is_set():
                try:
                    response = c.post("/forecast", json=body)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    versions.append(response.json()["model"]["version"])

    workers = [threading.Thread(target=hammer) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        with active_uris(project):
            registry = connect(project)
            v1 = registry.get_model_version("small", "1")
            v2 = register_version(registry, "small", v1.source, run_id=v1.run_id, tags=dict(v1.tags))
            registry.set_registered_model_alias("small", "champion", v2.version)
        deadline = time.monotonic() + 20
        while client.get("/metadata").json()["version"] != str(v2.version):
            assert time.monotonic() < deadline, "the server did not pick up the new champion"
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert not failures, failures[:5]
    assert versions.count("1") > 0 and versions.count(str(v2.version)) > 0
    assert versions.index(str(v2.version)) > versions.index("1")

    meta = client.get("/metadata").json()
    assert meta["version"] == str(v2.version) and meta["serving"]["swaps"] >= 1
    swaps = [line for line in client.get("/metrics").text.splitlines() if line.startswith("tidecast_model_swaps_total")]
    assert swaps and float(swaps[0].split()[-1]) >= 1

    # a version that cannot be loaded: the server keeps serving the old one and says why
    with active_uris(project):
        broken_dir = project.root / "broken-model"
        broken_dir.mkdir()
        v3 = registry.create_model_version("small", broken_dir.resolve().as_uri(), run_id=v1.run_id)
        registry.set_registered_model_alias("small", "champion", v3.version)
    response = client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503 and f"still serving v{v2.version}" in response.json()["detail"]
    assert client.post("/forecast", json=body).json()["model"]["version"] == str(v2.version)
    ready = client.get("/ready")  # not ready: the champion it should serve cannot be loaded
    assert ready.status_code == 503 and f"is v{v3.version}, which cannot be loaded" in ready.json()["reason"]
    assert f"still serving v{v2.version}" in ready.json()["reason"]
    assert "MLmodel" in client.get("/metadata").json()["serving"]["last_error"]
