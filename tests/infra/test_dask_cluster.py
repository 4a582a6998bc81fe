"""The meters example on a Dask cluster of separate processes: ``dask scheduler`` and two
``dask worker`` processes started from folders of their own, which do not see the project
(``shared_storage: false``). Its leaderboard is the local one (LightGBM, trained data-parallel
through mlforecast's Dask path, within the tolerance below); a worker killed mid-backtest loses no
work and leaves nothing partial in the cache; the re-run completes.

Tolerance: data-parallel LightGBM bins each worker's rows on their own (docs/scale-out.md, "What is
not identical, and why"), so its MASE is close to the single-machine one, not equal: within 10 %
here (measured: 0.694 against 0.684 on 200 meters, /work/shared/FIELD_NOTES.md). Every other
candidate is computed per series and must match to the last digit.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.infra.services import DaskCluster, venv_env
from tests.infra.topology import CLI, meters_spec, ok, tidecast

SERIES = 120
MODELS = [
    "{name: naive, kind: naive}",
    "{name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}",
    "{name: lightgbm, kind: lightgbm, params: {n_estimators: 50, num_leaves: 15}}",
]


def meters_project(root: Path, executor: str) -> Path:
    from tidecast.datasets import make_meters

    (root / "data").mkdir(parents=True)
    make_meters(n_series=SERIES, days=21, freq="h", seed=0).to_parquet(root / "data" / "meters.parquet", index=False)
    (root / "tidecast.yaml").write_text(meters_spec("infra-meters", folds=3, models=MODELS, executor=executor))
    return root


def leaderboard(root: Path) -> pd.DataFrame:
    """The last training's leaderboard as logged to the project's MLflow store."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / '.tidecast' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("infra-meters")
    run = client.search_runs(
        [experiment.experiment_id], "tags.`tidecast.kind` = 'training'", order_by=["attributes.start_time DESC"]
    )[0]
    path = client.download_artifacts(run.info.run_id, "leaderboard.json", str(root))
    board = pd.DataFrame(json.loads(Path(path).read_text()))
    return board.set_index("candidate").sort_index()


def committed_partial(root: Path) -> list[str]:
    """What a complete cache does not hold: temporary folders left behind, entries without ``meta.json``."""
    cache = root / ".tidecast" / "cache"
    leftovers = [str(p) for p in cache.glob("*/.tmp-*")]
    for entry in cache.glob("*/*"):
        if entry.is_dir() and not entry.name.startswith(".") and not (entry / "meta.json").is_file():
            leftovers.append(str(entry))
    return leftovers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    started = DaskCluster(tmp_path_factory.mktemp("dask"), n_workers=2)
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture(scope="module")
def local_board(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = meters_project(tmp_path_factory.mktemp("meters-local") / "p", "{kind: local}")
    ok(tidecast("run", "--until", "track", cwd=root))  # explain and report are not the subject here
    return leaderboard(root)


@pytest.fixture(scope="module")
def on_cluster(cluster: DaskCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    executor = f"{{kind: dask, address: '{cluster.address}', shared_storage: false}}"
    root = meters_project(tmp_path_factory.mktemp("meters-cluster") / "p", executor)
    out = ok(tidecast("run", "--until", "track", cwd=root))
    assert "lightgbm" in out
    return root


def test_the_cluster_gives_the_local_leaderboard(local_board: pd.DataFrame, on_cluster: Path) -> None:
    board = leaderboard(on_cluster)
    assert list(board["rank"].sort_values().index) == list(local_board["rank"].sort_values().index)
    assert (board["status"] == "ok").all(), board
    for name in ("naive", "seasonal_naive"):  # per-series models: the same numbers
        pd.testing.assert_series_equal(board.loc[name, ["mase", "mae"]], local_board.loc[name, ["mase", "mae"]])
    local, dist = local_board.loc["lightgbm", "mase"], board.loc["lightgbm", "mase"]
    assert abs(dist - local) <= 0.10 * local, (dist, local)
    assert local < local_board.loc["seasonal_naive", "mase"]  # LightGBM wins, on both


def test_a_worker_killed_mid_backtest(cluster: DaskCluster, on_cluster: Path) -> None:
    from distributed import Client

    run = subprocess.Popen(
        [*CLI, "run", "--force", "backtest", "--until", "track"], cwd=on_cluster, env=venv_env(COLUMNS="250", NO_COLOR="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = cluster.workers[0]
    try:
        with Client(cluster.address, timeout=10) as client:
            deadline = time.monotonic() + 300
            busy = False
            while not busy and run.poll() is None and time.monotonic() < deadline:
                busy = any(client.processing().values())  # only the backtest runs: its tasks are on the workers
                time.sleep(0.05)
        assert busy, f"no task seen on the workers (exit {run.poll()})"
        victim.kill()
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    if run.returncode != 0:  # the run may stop, with one line, if the lost worker held LightGBM's training
        assert run.returncode == 2, f"exit {run.returncode}\n{stdout[-3000:]}\n{stderr[-3000:]}"
        errors = [line for line in stderr.splitlines() if line.lower().startswith("error")]
        assert "Traceback" not in stderr and len(errors) == 1, stderr[-3000:]
    assert committed_partial(on_cluster) == []
    cluster.wait_workers(1)
    rerun = ok(tidecast("run", "--until", "track", cwd=on_cluster))
    assert committed_partial(on_cluster) == []
    status = ok(tidecast("status", cwd=on_cluster))
    for step in ("ingest", "clean", "features", "backtest", "select", "track"):
        assert re.search(rf"│ {step} +│ fresh ", status), status
    board = leaderboard(on_cluster)
    assert (board["status"] == "ok").all() and board["rank"].min() == 1, (rerun, board)
