"""The production topology, for real: PostgreSQL, an MLflow tracking server on it, a Dask cluster of
separate processes. ``make test-infra`` runs this folder (``scripts/infra-deps.sh`` first installs
the PostgreSQL server from the distribution and the ``infra`` extra); it sets
``TIDECAST_INFRA=1``, under which a skipped test is a failure. Without it (``make test``) these
tests are skipped: they install system packages and take minutes.

Every service listens on 127.0.0.1 on a free port, runs from a folder of its own and is stopped by
its pid when the session ends, whether the tests passed or not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

INFRA = os.environ.get("TIDECAST_INFRA") == "1"
HERE = Path(__file__).resolve().parent


def _ours(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if INFRA:
        return
    skip = pytest.mark.skip(reason="starts PostgreSQL, an MLflow server and a Dask cluster: make test-infra")
    for item in items:
        if _ours(item):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``make test-infra`` a skip is a failure: the topology must run, not be skipped."""
    report = yield
    if INFRA and _ours(item) and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under TIDECAST_INFRA=1 (make test-infra), which allows no skip: {report.longrepr}"
    return report


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A PostgreSQL server with the databases ``mlflow`` and ``tidecast``."""
    from tests.infra.services import PG_PASSWORD, Postgres

    server = Postgres()
    old = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = PG_PASSWORD  # libpq reads it: no password in any URL or spec
    try:
        yield server.start()
    finally:
        server.stop()
        if old is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = old


@pytest.fixture(scope="session")
def mlflow_server(postgres: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """``mlflow server`` on the ``mlflow`` database, artifacts proxied into a local folder."""
    from tests.infra.services import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), postgres.url("mlflow"))  # type: ignore[attr-defined]
    try:
        yield server.start()
    finally:
        server.stop()
