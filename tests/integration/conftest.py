"""Fixtures of the tracking tests: a real MLflow SQLite store per test, copied from one migrated template."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from tracking_helpers import make_spec

from tidecast.spec import Spec


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite store, made once (creating the schema takes seconds)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)
    return db


@pytest.fixture
def new_project(tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch):
    """``new_project(name="proj", **make_spec kwargs) -> Spec`` with its own copy of the migrated store."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)

    def make(name: str = "proj", **kwargs: Any) -> Spec:
        spec = make_spec(tmp_path / name, **kwargs)
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(mlflow_template, spec.state_dir / "mlflow.db")
        return spec

    return make
