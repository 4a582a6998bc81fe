"""One project whose data, predictions and models all live on servers: the readings in a PostgreSQL
table read with ``data.query``, the prediction store in the same database, runs and registry on an
``mlflow server`` backed by PostgreSQL with proxied artifacts. The tests run in order on it:
train, serve, retrain under load (the server swaps with no failed request), predict, compare,
reproduce, the dashboard, and monitoring that joins the actuals from the database.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.infra.topology import CliServer, Load, load_table, ok, power_project, tidecast

MODEL = "infra-power"


@pytest.fixture(scope="module")
def project(postgres: Any, mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = power_project(tmp_path_factory.mktemp("tracking") / "power", postgres.url("tidecast"))
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri, "TIDECAST_ADMIN_TOKEN": "infra-admin-token"}
    return {"root": root, "env": env, "server": mlflow_server, "db": postgres.url("tidecast"), "logs": root.parent}


def client(project: dict[str, Any]) -> Any:
    from mlflow import MlflowClient

    uri = project["server"].uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(project: dict[str, Any]) -> str:
    return str(client(project).get_model_version_by_alias(MODEL, "champion").version)


def forecast_body(db_url: str) -> dict[str, Any]:
    """The last day of readings in the table as one /forecast request."""
    engine = sa.create_engine(db_url)
    try:
        rows = pd.read_sql("SELECT timestamp, power_kw FROM power_readings ORDER BY timestamp", engine).dropna()
    finally:
        engine.dispose()
    tail = rows.drop_duplicates("timestamp").tail(24)
    return {
        "series": [
            {
                "id": "series",
                "timestamps": tail["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist(),
                "values": tail["power_kw"].tolist(),
            }
        ]
    }


def test_trains_against_the_server_and_registers_the_champion(project: dict[str, Any]) -> None:
    ok(tidecast("run", cwd=project["root"], **project["env"]))
    assert champion(project) == "1"
    version = client(project).get_model_version(MODEL, "1")
    run = client(project).get_run(version.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri  # proxied by the server
    # the files are in the server's folder, none in the project's; no local store either
    assert list(project["server"].artifacts.rglob("MLmodel")), f"no model under {project['server'].artifacts}"
    assert not (project["root"] / ".tidecast" / "mlartifacts").exists()
    assert not (project["root"] / ".tidecast" / "mlflow.db").exists()
    # the training read the database: its data fingerprint is the SQL source's (URL + query)
    assert run.data.tags["tidecast.data_fingerprint"].startswith("sql:"), run.data.tags


def test_serve_loads_the_champion_and_swaps_under_load_with_no_failed_request(project: dict[str, Any]) -> None:
    root, env = project["root"], project["env"]
    body = forecast_body(project["db"])
    with CliServer("serve", root, project["logs"] / "serve.log", **env) as server:
        meta = httpx.get(server.base + "/metadata", timeout=10).json()
        assert str(meta["version"]) == "1" and meta["alias"] == "champion", meta
        with Load(server.base + "/forecast", body) as load:
            ok(tidecast("--env", "lightgbm", "run", cwd=root, **env))
            assert champion(project) == "2", "the second training (LightGBM) was not promoted"
            deadline = pd.Timestamp.now() + pd.Timedelta(seconds=60)
            while pd.Timestamp.now() < deadline and (not load.versions or load.versions[-1] != "2"):
                time.sleep(0.5)
        assert load.failures == [], load.failures[:5]
        assert "1" in load.versions and load.versions[-1] == "2", sorted(set(load.versions))
        first_two = load.versions.index("2")
        assert set(load.versions[first_two:]) == {"2"}  # once swapped, never back
        assert str(httpx.get(server.base + "/metadata", timeout=10).json()["version"]) == "2"


def test_predict_compare_reproduce_read_the_same_server(project: dict[str, Any]) -> None:
    root, env = project["root"], project["env"]
    out = root / "forecast.csv"
    ok(tidecast("predict", "--model", MODEL, "--output", str(out), cwd=root, **env))
    forecast = pd.read_csv(out)
    assert len(forecast) == 24 and forecast["yhat"].notna().all()
    # the batch forecast went to the PostgreSQL prediction store, with the champion's version
    engine = sa.create_engine(project["db"])
    try:
        logged = pd.read_sql("SELECT model_version, source FROM predictions WHERE source = 'predict'", engine)
    finally:
        engine.dispose()
    assert len(logged) == 24 and set(logged["model_version"]) == {"2"}

    compared = json.loads(ok(tidecast("compare", "--last", "5", "--format", "json", cwd=root, **env)))
    rows = compared if isinstance(compared, list) else compared.get("runs", compared)
    assert len({row["run_id"] for row in rows}) == 2, rows

    run_id = client(project).get_model_version(MODEL, "2").run_id
    reproduced = ok(tidecast("reproduce", run_id, "--format", "json", cwd=root, **env))
    report = json.loads(reproduced)
    assert report["matches"] is True and len(report["comparison"]) >= 2, reproduced


def test_dashboard_reads_the_registry_from_the_server(project: dict[str, Any]) -> None:
    with CliServer(
        "dashboard", project["root"], project["logs"] / "dashboard.log", ready="/", **project["env"]
    ) as dash:
        page = httpx.get(dash.base + "/", timeout=30)
        assert page.status_code == 200 and "_dash-config" in page.text
        deps = httpx.get(dash.base + "/_dash-dependencies", timeout=30).json()
        refresh = next(d for d in deps if "registry.children" in d["output"])
        payload = {
            "output": refresh["output"],
            "outputs": [
                {"id": o.split(".")[0], "property": o.split(".")[1]} for o in refresh["output"].strip(".").split("...")
            ],
            "inputs": [{"id": i["id"], "property": i["property"], "value": None} for i in refresh["inputs"]],
            "changedPropIds": [],
            "state": [],
        }
        response = httpx.post(dash.base + "/_dash-update-component", json=payload, timeout=120)
        assert response.status_code == 200, response.text[:2000]
        registry = json.dumps(response.json()["response"]["registry"])
        assert "registry-table" in registry and "champion" in registry, registry[:2000]
        errors = response.json()["response"].get("errors", {})
        assert "unreachable" not in json.dumps(errors), errors


def test_monitor_joins_the_actuals_from_the_database(project: dict[str, Any]) -> None:
    root, env = project["root"], project["env"]
    later = pd.read_parquet(root / "later.parquet")
    load_table(project["db"], later, replace=False)  # two more days of readings arrive in the table
    start = later["timestamp"].min()
    first_as_of = str(start)
    second_as_of = str(start + pd.Timedelta(days=1))
    ok(tidecast("monitor", "--as-of", first_as_of, "--no-retrain", cwd=root, **env))
    ok(tidecast("monitor", "--as-of", second_as_of, "--no-retrain", cwd=root, **env))
    engine = sa.create_engine(project["db"])
    try:
        actuals = pd.read_sql("SELECT ds FROM actuals", engine)
        monitored = pd.read_sql("SELECT ds FROM predictions WHERE source = 'monitor'", engine)
    finally:
        engine.dispose()
    assert len(monitored) == 48 and len(actuals) >= 48
    joined = set(pd.to_datetime(monitored["ds"])) & set(pd.to_datetime(actuals["ds"]))
    assert len(joined) >= 24  # the first monitor's forecast met the second one's actuals
    history = [json.loads(line) for line in (root / ".tidecast" / "monitor-history.jsonl").read_text().splitlines()]
    last = history[-1]
    assert last["status"] in ("ok", "drift"), last
    runs = client(project).search_runs(
        [client(project).get_experiment_by_name(f"{MODEL}-monitor").experiment_id], max_results=1
    )
    assert runs and "live_mae" in runs[0].data.metrics, runs[0].data.metrics if runs else None


def _row(table: str, step: str) -> str:
    """The line of ``step`` in ``tidecast status``'s table."""
    return next(line for line in table.splitlines() if line.replace("│", " ").split()[:1] == [step])


def test_new_rows_in_the_table_make_the_data_steps_stale(project: dict[str, Any]) -> None:
    """The ingest key covers the rows the query returns, not the query alone: after the monitor
    test's two new days arrived in the table, ``status`` says ingest is stale (no ``--force``)."""
    shown = ok(tidecast("status", cwd=project["root"], **project["env"]))
    ingest = _row(shown, "ingest")
    assert "data fingerprint changed" in ingest, shown
    ok(tidecast("run", "--until", "ingest", cwd=project["root"], **project["env"]))
    again = ok(tidecast("status", cwd=project["root"], **project["env"]))
    ingest = _row(again, "ingest")
    assert "stale" not in ingest, again
