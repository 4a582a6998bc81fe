"""Schemathesis against the real server: a small project is trained and registered in a real MLflow
store, ``create_app`` serves its champion on uvicorn (a free loopback port, in a thread), and every
operation of its ``/openapi.json`` is called with cases generated from the schema, valid and invalid
(``/admin/reload`` with the right token, a wrong one and none; ``/invocations`` as JSON and as CSV).

The whole module runs once per champion (``serving_helpers.CHAMPIONS``: a naive model, a LightGBM
model reading the known-in-future ``temperature``, a tiny torch MLP), so fuzzed input reaches real
feature building and real models, not only a baseline.

Property: no answer is a 5xx. Every case is counted; the counts are printed at the end of the module.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from serving_helpers import Server, champion_params, train_champion

from tests.fuzz.conftest import fuzz_settings
from tidecast.spec import Spec

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402

TOKEN = "fuzz-admin-token"
OPERATIONS = [
    ("POST", "/forecast"), ("POST", "/invocations"), ("GET", "/health"), ("GET", "/ready"),
    ("GET", "/metadata"), ("GET", "/metrics"), ("POST", "/admin/reload"),
]
AUTH = {"token": {"Authorization": f"Bearer {TOKEN}"}, "wrong-token": {"Authorization": "Bearer nope"}, "no-token": {}}
CALLS: Counter[tuple[str, str, int]] = Counter()


# ------------------------------------------------------------------------------------ the server
@pytest.fixture(scope="module", params=champion_params())
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spec]:
    """A trained project whose champion is ``small`` v1 (registry and prediction store under .tidecast/)."""
    from mlflow import MlflowClient

    champion = str(request.param)
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV", "TIDECAST_ADMIN_TOKEN"):
            mp.delenv(var, raising=False)
        base = tmp_path_factory.mktemp(f"schemathesis-{champion}")
        uri = f"sqlite:///{base / 'mlflow.db'}"
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)  # migrate the store once
        spec = train_champion(base / "proj", champion, days=14, template=base / "mlflow.db")
        yield spec
    shutil.rmtree(spec.root / ".tidecast" / "mlartifacts", ignore_errors=True)


@pytest.fixture(scope="module")
def base_url(trained: Spec) -> Iterator[str]:
    from tidecast.serving.app import create_app

    spec = trained.model_copy(deep=True)
    spec.root, spec.source_file = trained.root, trained.source_file
    spec.serving.poll_interval = 0  # load once; /admin/reload polls on demand
    spec.serving.max_series = 5
    spec.serving.max_body_bytes = 200_000
    with Server(create_app(spec, token=TOKEN)) as server:
        yield server.base
    print("\nschemathesis calls (method, path, status): " + ", ".join(
        f"{m} {p} {s}: {n}" for (m, p, s), n in sorted(CALLS.items())))
    print(f"schemathesis: {sum(CALLS.values())} calls, {sum(n for (_, _, s), n in CALLS.items() if s >= 500)} 5xx")


@pytest.fixture(scope="module")
def schema(base_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_the_schema_lists_every_operation(schema: Any) -> None:
    """A new endpoint must be added to OPERATIONS, so that it gets fuzzed too."""
    found = sorted((op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations())
    assert found == sorted(OPERATIONS)


def _fuzz(schema: Any, session: requests.Session, base_url: str, method: str, path: str, *,
          mode: GenerationMode, headers: dict[str, str] | None = None, media_type: str | None = None,
          examples: tuple[int, int] = (25, 400)) -> None:
    operation = schema[path][method]
    strategy = operation.as_strategy(mode, headers=headers or None, media_type=media_type)
    seen: Counter[int] = Counter()

    @fuzz_settings(*examples)
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, timeout=30)
        CALLS[(method, path, response.status_code)] += 1
        seen[response.status_code] += 1
        assert response.status_code < 500, (
            f"{method} {path} answered {response.status_code}: {response.text[:500]}\n"
            f"request: {case.as_curl_command()[:2000]}")

    check()
    assert sum(seen.values()) > 0


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_5xx_forecast(schema: Any, session: requests.Session, base_url: str, mode: GenerationMode) -> None:
    _fuzz(schema, session, base_url, "POST", "/forecast", mode=mode, examples=(30, 600))


@pytest.mark.parametrize(("method", "path"), [op for op in OPERATIONS if op[0] == "GET"])
def test_no_5xx_operations(schema: Any, session: requests.Session, base_url: str, method: str, path: str) -> None:
    """These take no input: schemathesis varies what it can (headers), nothing invalid to generate."""
    _fuzz(schema, session, base_url, method, path, mode=GenerationMode.POSITIVE, examples=(5, 50))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("media_type", ["application/json", "text/csv"])
def test_no_5xx_invocations(schema: Any, session: requests.Session, base_url: str, media_type: str,
                            mode: GenerationMode) -> None:
    _fuzz(schema, session, base_url, "POST", "/invocations", mode=mode, media_type=media_type, examples=(20, 500))


@pytest.mark.parametrize("auth", list(AUTH))
def test_no_5xx_admin_reload(schema: Any, session: requests.Session, base_url: str, auth: str) -> None:
    _fuzz(schema, session, base_url, "POST", "/admin/reload", mode=GenerationMode.POSITIVE, headers=AUTH[auth],
          examples=(6, 60))
    # and the token decides: a right one reloads, a wrong one is refused, none is asked for
    answer = session.post(f"{base_url}/admin/reload", headers=AUTH[auth], timeout=30)
    assert answer.status_code == {"token": 200, "wrong-token": 403, "no-token": 401}[auth], answer.text


def test_a_valid_forecast_is_answered(session: requests.Session, base_url: str, trained: Spec) -> None:
    """The fuzzing reaches a model that answers: one well-formed request gets its forecast."""
    import pandas as pd

    frame = pd.read_csv(Path(trained.root) / "data" / "power.csv")
    tail = frame.tail(48)
    body = {"timestamps": pd.to_datetime(tail["timestamp"]).dt.strftime("%Y-%m-%dT%H:%M:%S").tolist()[:24],
            "values": tail["power_kw"].tolist()[:24], "exogenous": {"temperature": tail["temperature"].tolist()}}
    response = session.post(f"{base_url}/forecast", json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert len(response.json()["forecasts"][0]["yhat"]) == 24


# ------------------------------------------------- near-valid requests: past the schema, into the model
NASTY = [float("nan"), 1e308, -1e308, 1e150, 5e-324, 0.0, -0.0, 1e15]


def _history(trained: Spec) -> dict[str, Any]:
    import pandas as pd

    frame = pd.read_csv(Path(trained.root) / "data" / "power.csv").tail(48)
    stamps = pd.date_range("2024-03-01", periods=48, freq="h")
    return {"timestamps": stamps.strftime("%Y-%m-%dT%H:%M:%S").tolist()[:24], "values": frame["power_kw"].tolist()[:24],
            "temperature": frame["temperature"].tolist()}


@pytest.fixture(scope="module")
def history(trained: Spec) -> dict[str, Any]:
    return _history(trained)


@fuzz_settings(30, 600)
@given(data=st.data())
def test_near_valid_forecasts_never_5xx(session: requests.Session, base_url: str, history: dict[str, Any],
                                        data: Any) -> None:
    """Well-formed bodies with one or two bad parts (huge or tiny values, unsorted or repeated times,
    mixed offsets, a wrong step, odd horizons and quantiles, missing or short exogenous values) reach
    the model: no 5xx, and a 200 answer holds finite forecasts only."""
    import json as _json

    values = list(history["values"])
    times = list(history["timestamps"])
    temperature = list(history["temperature"])
    body: dict[str, Any] = {}
    for change in data.draw(st.lists(st.sampled_from([
        "nasty_value", "nasty_temp", "unsorted", "repeat", "offsets", "step", "horizon", "quantiles", "short_temp",
        "no_temp", "extra_temp", "long", "id", "many"]), min_size=1, max_size=2, unique=True)):
        if change == "nasty_value":
            values[data.draw(st.integers(0, 23))] = data.draw(st.sampled_from(NASTY))
        elif change == "nasty_temp":
            if temperature:  # "no_temp" may have emptied it
                temperature[data.draw(st.integers(0, len(temperature) - 1))] = data.draw(st.sampled_from(NASTY))
        elif change == "unsorted":
            i = data.draw(st.integers(0, 22))
            times[i], times[i + 1] = times[i + 1], times[i]
        elif change == "repeat":
            i = data.draw(st.integers(1, 23))
            times[i] = times[i - 1]
        elif change == "offsets":
            times = [t + data.draw(st.sampled_from(["Z", "+00:00", "+01:00", "-05:00", ""])) for t in times]
        elif change == "step":
            import pandas as pd

            times = pd.date_range("2024-03-01", periods=24, freq=data.draw(st.sampled_from(["30min", "2h", "D"]))
                                  ).strftime("%Y-%m-%dT%H:%M:%S").tolist()
        elif change == "horizon":
            body["horizon"] = data.draw(st.one_of(st.integers(-5, 30), st.sampled_from([10**6, 2**63, 1.5, "24", None])))
        elif change == "quantiles":
            body["quantiles"] = data.draw(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                                             st.sampled_from([0.5, 1e-300, 1 - 1e-16])), max_size=4))
        elif change == "short_temp":
            temperature = temperature[: data.draw(st.integers(0, 47))]
        elif change == "no_temp":
            temperature = []
        elif change == "extra_temp":
            temperature = temperature + [1.0] * data.draw(st.integers(1, 1000))
        elif change == "long":
            times, values = times * 2, values * 2  # repeated times
        elif change == "many":
            body["many"] = True
        elif change == "id":
            body["id"] = data.draw(st.sampled_from(["series", "other", "", "x" * 300]))
    series = {"timestamps": times, "values": values, **({"id": body.pop("id")} if "id" in body else {})}
    if temperature:
        series["exogenous"] = {"temperature": temperature}
    many = body.pop("many", False)
    payload = {"series": [series] * (7 if many else 1), **body}
    text = _json.dumps(payload)  # NaN and Infinity as JavaScript writes them: the server must cope
    response = session.post(f"{base_url}/forecast", data=text, headers={"content-type": "application/json"}, timeout=30)
    CALLS[("POST", "/forecast (near-valid)", response.status_code)] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500], text[:1000])
    if response.status_code == 200:
        for forecast in response.json()["forecasts"]:
            numbers = [*forecast["yhat"], *(v for q in forecast["quantiles"].values() for v in q)]
            assert all(isinstance(v, float | int) and abs(v) < float("inf") for v in numbers), (
                "a 200 answer with null/NaN/inf forecasts", text[:1000], forecast)
