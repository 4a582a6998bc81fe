"""The CLI as a real subprocess against the services of :mod:`tests.infra.services`, and the small
projects the infra tests run (hourly power in a PostgreSQL table, meters in a Parquet file)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from tests.infra.services import Process, free_port, venv_env, wait_until

CLI = [sys.executable, "-m", "tidecast.cli"]
TRAIN_DAYS = 28  # the rows in the table at training time; monitoring inserts the next days

METERS_SPEC = """\
project: {project}
data:
  source: data/meters.parquet
  series_column: series_id
  time_column: timestamp
  target_column: load
  frequency: h
  static_columns: [customer_type]
clean:
  duplicates: mean
  gaps: {{method: interpolate, max_gap: 6h}}
features:
  lags: [1, 2, 24, 48]
  calendar: [hour, weekday, weekend]
forecast: {{input_window: 2d, horizon: 24h}}
backtest: {{folds: {folds}, n_jobs: 2}}
selection: {{metric: mase, scope: global}}
models:
{models}
executor: {executor}
"""


def meters_spec(project: str, *, folds: int, models: list[str], executor: str) -> str:
    """The spec of an hourly meters project (``data/meters.parquet``: series_id, timestamp, load,
    customer_type) with these candidates (one YAML mapping each) and executor: the cluster test's
    and ``bench/many_series.py --cluster``'s."""
    return METERS_SPEC.format(
        project=project, folds=folds, models="\n".join(f"  - {m}" for m in models), executor=executor
    )


POWER_SPEC = """\
project: {project}
data:
  source: {db_url}
  query: SELECT timestamp, power_kw FROM {table} ORDER BY timestamp
  time_column: timestamp
  target_column: power_kw
  frequency: 1h
  timezone: Europe/Paris
clean:
  gaps: {{method: interpolate, max_gap: 6h}}
  outliers: {{method: hampel, action: clip, threshold: 5, window: 6h}}
features:
  lags: [1, 2, 24]
  calendar: [hour, weekday]
forecast: {{input_window: 24h, horizon: 24h, quantiles: [0.1, 0.9]}}
backtest: {{folds: 2}}
selection: {{metric: mase}}
models:
  - {{name: seasonal_naive, kind: seasonal_naive, params: {{season_length: 1d}}}}
predictions: {{url: {db_url}}}
serving: {{poll_interval: 1}}
monitoring: {{data_drift: {{window: 1d}}}}
envs:
  lightgbm:   # the second training: a better candidate, which the gate promotes
    models:
      - {{name: seasonal_naive, kind: seasonal_naive, params: {{season_length: 1d}}}}
      - {{name: lightgbm, kind: lightgbm, params: {{n_estimators: 30, num_leaves: 15}}}}
"""


def tidecast(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """``tidecast ARGS`` in a subprocess with the virtualenv's environment plus ``env``."""
    full = venv_env(COLUMNS="250", NO_COLOR="1", **env)
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, env=full, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def power_frame(days: int) -> pd.DataFrame:
    """Hourly power readings (naive Europe/Paris wall-clock times), as a meter exports them."""
    from tidecast.datasets import make_power

    frame = make_power(days=days, seed=3, freq="1h")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


def load_table(db_url: str, frame: pd.DataFrame, *, replace: bool, table: str = "power_readings") -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        frame.to_sql(table, engine, if_exists="replace" if replace else "append", index=False)
    finally:
        engine.dispose()


def power_project(root: Path, db_url: str, *, project: str = "infra-power", table: str = "power_readings") -> Path:
    """The project folder (only a spec: its data is in ``table`` of the database, which holds
    ``TRAIN_DAYS`` of readings; the next days are in ``later.parquet``, to insert later)."""
    root.mkdir(parents=True, exist_ok=True)
    frame = power_frame(TRAIN_DAYS + 3)
    cut = frame["timestamp"] < frame["timestamp"].min().normalize() + pd.Timedelta(days=TRAIN_DAYS)
    load_table(db_url, frame[cut], replace=True, table=table)
    (root / "tidecast.yaml").write_text(POWER_SPEC.format(db_url=db_url, project=project, table=table))
    frame[~cut].to_parquet(root / "later.parquet", index=False)  # the readings that arrive later
    return root


class CliServer:
    """``tidecast serve`` or ``tidecast dashboard`` as a process of its own on a free port."""

    def __init__(self, command: str, project: Path, log: Path, *args: str, ready: str = "/ready", **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ready = ready
        argv = [*CLI, command, "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.process = Process(command, argv, cwd=project, log=log, env=venv_env(**env))

    def __enter__(self) -> CliServer:
        self.process.start()

        def up() -> bool:
            assert self.process.alive(), self.process.log.read_text()[-3000:]
            return httpx.get(self.base + self.ready, timeout=5).status_code == 200

        wait_until(up, 180, f"tidecast {self.process.name}", log=self.process.log)
        return self

    def __exit__(self, *_: object) -> None:
        self.process.stop()


class Load:
    """A thread that POSTs ``body`` to ``url`` in a loop until stopped (or ``limit`` requests)."""

    def __init__(self, url: str, body: dict[str, Any], limit: int = 5000) -> None:
        self.url, self.body, self.limit = url, body, limit
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and len(self.versions) + len(self.failures) < self.limit:
                try:
                    response = client.post(self.url, json=self.body)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                else:
                    self.versions.append(str(response.json()["model"]["version"]))
                time.sleep(0.02)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
