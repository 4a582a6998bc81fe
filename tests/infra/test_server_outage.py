"""The tracking server goes away in the middle of a training: the run stops with one line naming the
server and exit code 2; once the server is back, the re-run finishes and the registry is consistent
(no run left RUNNING, the champion loads, every version's run finished)."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from tests.infra.services import venv_env
from tests.infra.topology import CLI, ok, power_project, tidecast

MODEL = "infra-outage"


def test_tracking_server_stopped_mid_run(
    postgres: Any, mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    root = power_project(
        tmp_path_factory.mktemp("outage") / "p", postgres.url("tidecast"), project=MODEL, table="outage"
    )
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    full = venv_env(COLUMNS="250", NO_COLOR="1", **env)
    run = subprocess.Popen(
        [*CLI, "--env", "lightgbm", "run"],
        cwd=root,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the moment the training's MLflow run exists on the server, the server goes away
        deadline = time.monotonic() + 300
        running: list[Any] = []
        while not running and run.poll() is None and time.monotonic() < deadline:
            experiment = client.get_experiment_by_name(MODEL)
            if experiment is not None:
                running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
            time.sleep(0.05)
        assert running, f"no RUNNING run seen (exit {run.poll()}): {run.stderr.read() if run.stderr else ''}"
        mlflow_server.stop()
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
        if mlflow_server.process is not None and not mlflow_server.process.alive():
            mlflow_server.start()

    assert run.returncode == 2, f"exit {run.returncode}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    # the steps' progress lines, then one error line naming the server: no traceback, no retry noise
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    assert "Traceback" not in stderr and len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    assert not [line for line in lines if line.startswith("WARNING")], stderr[-3000:]
    assert mlflow_server.uri in errors[0] and "internal error" not in errors[0].lower(), errors[0]
    assert "went away" in errors[0] or "is unreachable" in errors[0], errors[0]  # said plainly, not a urllib3 dump
    assert len(errors[0]) < 300, errors[0]

    # the server is back: the re-run finishes, and the registry is consistent
    ok(tidecast("--env", "lightgbm", "run", cwd=root, **env))
    experiment = client.get_experiment_by_name(MODEL)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"], "a run was left RUNNING"
    assert running[0].info.run_id in {r.info.run_id for r in runs if r.info.status == "FAILED"}
    champion = client.get_model_version_by_alias(MODEL, "champion")
    for version in client.search_model_versions(f"name = '{MODEL}'"):
        assert client.get_run(version.run_id).info.status == "FINISHED", version
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{champion.version}")
    assert model.metadata.run_id == champion.run_id
