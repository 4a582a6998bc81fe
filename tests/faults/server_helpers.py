"""Helpers of the server fault and security tests: a trained project, extra registry versions with
answers of their own, a real ``tidecast serve`` subprocess, and threads of clients that record
every outcome.

Nothing here is mocked: the project is trained by the real pipeline into a real MLflow SQLite
registry, the server is the ``tidecast`` console script on a free loopback port, and the clients
speak HTTP to it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pandas as pd

from tidecast.frames import quantile_of
from tidecast.spec import Spec, load_spec

TOKEN = "faults-admin-token-7c1e9a4b"
WINDOW = HORIZON = 24
BIN = Path(sys.executable).parent
MODELS = "  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}\n"
SERVING = "serving: {poll_interval: 0.3, max_series: 5, max_body_bytes: 200000}\n"

# Shifted forecasters are pickled by value: the server subprocess loads them without the tests on its path
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# ------------------------------------------------------------------------------------ the project
def train_project(
    root: Path, *, template: Path | None = None, days: int = 14, champion: str = "seasonal_naive"
) -> Spec:
    """A project trained by the real pipeline: its registry has ``small`` v1 as ``champion``.

    ``template``: an empty, migrated MLflow SQLite file to start from (migrating one takes seconds).
    ``champion``: ``seasonal_naive`` (the default, the cheapest), or one of ``serving_helpers.CHAMPIONS``
    (``lightgbm`` reads the known-in-future temperature; ``mlp`` is a tiny torch network).
    """
    if champion != "seasonal_naive":
        from serving_helpers import train_champion

        return train_champion(root, champion, days=days, template=template, extra=SERVING)
    from tests.conftest import make_project
    from tidecast.pipeline import run
    from tidecast.pipeline.dag import Pipeline
    from tidecast.tracking.step import track
    from tidecast.training.steps import TRAINING_STEPS

    make_project(root, days=days, models=MODELS, extra=SERVING)
    if template is not None:
        (root / ".tidecast").mkdir(parents=True, exist_ok=True)
        shutil.copy(template, root / ".tidecast" / "mlflow.db")
    spec = load_spec(root)
    result = run(Pipeline([*TRAINING_STEPS, track]), spec)
    registration = result.outputs["track"]["registration"]
    assert (registration["version"], registration["alias"]) == ("1", "champion"), registration
    return spec


def registry(spec: Spec) -> Any:
    from tidecast.tracking.store import connect

    return connect(spec)


def version_folder(spec: Spec, version: str) -> Path:
    """The local folder holding a registered version's MLmodel and artifacts."""
    from tidecast.serving.loader import _local_path

    uri = registry(spec).get_model_version_download_uri(spec.model_name, version)
    folder = _local_path(str(uri))
    assert folder is not None and (folder / "MLmodel").is_file(), uri
    return folder


class Shifted:
    """A forecaster answering ``inner``'s forecasts plus ``offset`` (point and quantiles): a version
    whose answers are told apart from the one it was made from."""

    def __init__(self, inner: Any, offset: float) -> None:
        self.inner = inner
        self.offset = float(offset)

    def predict(self, h: int, **kwargs: Any) -> pd.DataFrame:
        out = self.inner.predict(h, **kwargs)
        for column in out.columns:
            if column == "yhat" or quantile_of(column) is not None:
                out[column] = out[column] + self.offset
        return out


def register_shifted(spec: Spec, offset: float, folder: Path, *, base: str = "1") -> str:
    """Copy version ``base``'s model folder to ``folder`` with a :class:`Shifted` forecaster and register it.

    Returns the new version (not aliased)."""
    from tidecast.tracking.pyfunc import MODEL_FILE

    source = version_folder(spec, base)
    shutil.copytree(source, folder)
    pickle_file = folder / "artifacts" / MODEL_FILE
    with open(pickle_file, "rb") as handle:
        inner = cloudpickle.load(handle)
    with open(pickle_file, "wb") as handle:
        cloudpickle.dump(Shifted(inner, offset), handle)
    client = registry(spec)
    base_mv = client.get_model_version(spec.model_name, base)
    mv = client.create_model_version(
        spec.model_name, folder.resolve().as_uri(), run_id=base_mv.run_id, tags=dict(base_mv.tags)
    )
    return str(mv.version)


def set_champion(spec: Spec, version: str) -> None:
    from tidecast.tracking.store import retry_locked

    client = registry(spec)
    retry_locked(lambda: client.set_registered_model_alias(spec.model_name, "champion", version))


def data_frame(spec: Spec) -> pd.DataFrame:
    frame = pd.read_csv(spec.root / "data" / "power.csv", parse_dates=["timestamp"])
    return frame.rename(columns={"timestamp": "ds", "power_kw": "y"})


def series_body(data: pd.DataFrame, *, cut: int = 48, sid: str = "series") -> dict[str, Any]:
    """One series: the model's window of history ending ``cut`` rows before the end, temperature for history + horizon."""
    end = len(data) - cut
    hist = data.iloc[end - WINDOW : end]
    return {
        "id": sid,
        "timestamps": hist["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist(),
        "values": hist["y"].tolist(),
        "exogenous": {"temperature": data["temperature"].iloc[end - WINDOW : end + HORIZON].tolist()},
    }


# ------------------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(token: str | None = TOKEN) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV", "TIDECAST_ADMIN_TOKEN"):
        env.pop(var, None)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    env["OMP_NUM_THREADS"] = "1"
    if token is not None:
        env["TIDECAST_ADMIN_TOKEN"] = token
    return env


class ServeProcess:
    """``tidecast serve`` on ``port`` in a session of its own; its output goes to ``log``."""

    def __init__(
        self,
        root: Path,
        port: int,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        serve_args: Sequence[str] = (),
    ) -> None:
        self.root, self.port, self.log = root, port, log
        self.env = env if env is not None else server_env()
        self.args, self.serve_args = list(args), list(serve_args)  # before and after ``serve``
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: list[int] = []

    def start(self, timeout: float = 90.0) -> float:
        """Start the server and wait until ``/ready`` answers 200; returns when it did (monotonic)."""
        command = [str(BIN / "tidecast"), *self.args, "serve", *self.serve_args, "--spec", str(self.root)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                command, env=self.env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 90.0) -> float:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}):\n{self.output()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the server was not ready within {timeout} s:\n{self.output()[-3000:]}")

    def child_pids(self) -> list[int]:
        """The server's child processes (the prediction-log writer)."""
        import psutil

        assert self.proc is not None
        return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]

    def kill9(self) -> None:
        """SIGKILL the server process alone (not its children: they must notice by themselves)."""
        assert self.proc is not None
        self.children = self.child_pids()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM (a graceful shutdown), then SIGKILL of the whole session if it hangs; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        return proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_gone(pids: Sequence[int], timeout: float = 15.0) -> list[int]:
    """Wait until none of ``pids`` runs (zombies count as gone); the ones still running."""
    import psutil

    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        still = []
        for pid in alive:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    still.append(pid)
            except psutil.NoSuchProcess:
                pass
        alive = still
        if alive:
            time.sleep(0.1)
    return alive


def wait_for(predicate: Any, timeout: float, what: str, pause: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(pause)


# ------------------------------------------------------------------------------------ the clients
@dataclass
class Outcome:
    thread: int
    started: float
    ended: float
    kind: str  # "ok", "mismatch", "http-<status>", "conn:<exception>"
    version: str | None = None


@dataclass
class Hammer:
    """``threads`` clients POSTing ``body`` to ``/forecast`` back to back, each on its own keep-alive
    connection, recording every outcome. ``expected`` maps a model version to its forecasts: a 200
    answer is "ok" only when its forecasts are exactly those of the version it names."""

    base: str
    body: dict[str, Any]
    expected: dict[str, Any]
    threads: int = 3
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]
        self._payload = json.dumps(self.body).encode()

    def _run(self, index: int) -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                version = None
                try:
                    response = client.post("/forecast", content=self._payload, headers=headers)
                except httpx.HTTPError as exc:
                    kind = f"conn:{type(exc).__name__}"
                else:
                    if response.status_code == 200:
                        answer = response.json()
                        version = answer["model"]["version"]
                        kind = "ok" if answer["forecasts"] == self.expected.get(version) else "mismatch"
                    else:
                        kind = f"http-{response.status_code}"
                with self._lock:
                    self.outcomes.append(Outcome(index, started, time.monotonic(), kind, version))
                if kind.startswith("conn:"):
                    time.sleep(0.02)  # the server is down: do not spin

    def start(self) -> Hammer:
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)
        with self._lock:
            return sorted(self.outcomes, key=lambda o: o.started)

    def count(self, kind: str = "ok") -> int:
        with self._lock:
            return sum(o.kind == kind for o in self.outcomes)


def forecasts_of(base: str, body: dict[str, Any]) -> tuple[str, Any]:
    """(model version, forecasts) of one request."""
    response = httpx.post(f"{base}/forecast", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    return answer["model"]["version"], answer["forecasts"]


def shifted(forecasts: Any, offset: float) -> Any:
    """What a :class:`Shifted` version answers, from its base version's answer (same float arithmetic)."""
    out = []
    for item in forecasts:
        moved = dict(item)
        moved["yhat"] = [v + offset for v in item["yhat"]]
        moved["quantiles"] = {q: [v + offset for v in values] for q, values in item["quantiles"].items()}
        out.append(moved)
    return out
