"""A real uvicorn server in a thread on a free loopback port, the CLI called in-process, and the
champions the serving suites are run with (trained by the real pipeline into a real MLflow store).

The serving, pyfunc-parity, server-fault and API-fuzz suites each run with every champion of
:data:`CHAMPIONS`: a naive model (no features), a LightGBM model reading the known-in-future
``temperature`` column and calendar features, and a tiny torch MLP (``kind: mlp``).
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``Server(app).start()`` ... ``.stop()``, or ``with Server(app) as server:``; ready once ``/ready`` is 200."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 60.0) -> Server:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not get ready within {timeout} s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def run_cli(*args: str) -> int:
    """``tidecast ARGS`` through :func:`tidecast.cli.main` in this process; its exit code."""
    from tidecast.cli import main

    argv, sys.argv = sys.argv, ["tidecast", *args]
    try:
        main()
        return 0
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = argv


# ------------------------------------------------------------------------------------ champions
#: champion -> the ``models:`` lines of its spec (the only candidates, so the champion is that model)
CHAMPIONS: dict[str, str] = {
    "naive": (
        "  - {name: naive, kind: naive}\n"
        "  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}\n"
    ),
    "lightgbm": "  - {name: lightgbm, kind: lightgbm, params: {n_estimators: 30, num_leaves: 15}}\n",
    "mlp": "  - {name: mlp, kind: mlp, params: {hidden: [16], epochs: 3, patience: 1}}\n",
}
#: the champions whose forecasts depend on the future ``temperature`` values
READS_EXOGENOUS = {"naive": False, "lightgbm": True, "mlp": True}
#: whatever wins becomes champion: these suites test serving, not the gate
ANY_GATE = "registry: {gate: {min_improvement: -1000.0}}\n"


def champion_params() -> list[Any]:
    """``params=`` of a champion fixture: the MLP needs torch (the ``neural`` extra)."""
    return [pytest.param(name, marks=[pytest.mark.neural] if name == "mlp" else [], id=name) for name in CHAMPIONS]


def train_champion(root: Path, champion: str, *, days: int, template: Path | None = None, extra: str = "") -> Any:
    """A project at ``root`` trained by the real pipeline (training steps + track): its registry holds
    ``small`` v1 as ``champion``, a model of kind ``champion``. ``template``: an empty, migrated
    MLflow SQLite file to start from (migrating one takes seconds). Returns the loaded spec."""
    from tests.conftest import make_project
    from tidecast.pipeline import run
    from tidecast.pipeline.dag import Pipeline
    from tidecast.spec import load_spec
    from tidecast.tracking.step import track
    from tidecast.training.steps import TRAINING_STEPS

    if champion == "mlp":
        pytest.importorskip("torch", reason="the MLP champion needs torch: pip install 'tidecast[neural]'")
    make_project(root, days=days, models=CHAMPIONS[champion], extra=ANY_GATE + extra)
    if template is not None:
        (root / ".tidecast").mkdir(parents=True, exist_ok=True)
        shutil.copy(template, root / ".tidecast" / "mlflow.db")
    spec = load_spec(root)
    result = run(Pipeline([*TRAINING_STEPS, track]), spec)  # training + registry, without the report
    registration = result.outputs["track"]["registration"]
    got = (registration["model_name"], registration["version"], registration["alias"])
    assert got == ("small", "1", "champion"), registration
    kind = result.outputs["select"]["kind"]
    assert kind in (("naive", "seasonal_naive") if champion == "naive" else (champion,)), kind
    return spec


def assert_agree(got: Any, want: Any, what: str = "forecast", *, tol: float = 1e-9) -> None:
    """Two forecasts agree to ``tol`` (relative, and absolute near zero)."""
    import numpy as np

    np.testing.assert_allclose(
        np.asarray(got, dtype=float), np.asarray(want, dtype=float), rtol=tol, atol=tol, err_msg=what
    )
