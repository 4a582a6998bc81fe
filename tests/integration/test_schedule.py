"""``tidecast schedule`` as a real process: a seconds-level schedule runs the monitor, SIGTERM stops it cleanly."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_project

MODELS = "  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}\n"


@pytest.fixture
def trained(tmp_path: Path, mlflow_template: Path) -> Path:
    from tidecast.monitoring.retrain import retrain
    from tidecast.spec import load_spec

    root = make_project(
        tmp_path / "proj", days=35, models=MODELS,
        extra='schedule: {monitor: "*/2 * * * * *", timezone: Europe/Paris, misfire_grace: 30}\n',
    )
    # the next day's weather forecast, as a live source holds it: future rows with the target empty
    from tidecast.datasets import make_power

    data = make_power(days=36, seed=3, freq="1h")
    data.loc[data.index[-24:], "power_kw"] = None
    data.to_csv(root / "data" / "power.csv", index=False)
    (root / ".tidecast").mkdir()
    shutil.copy(mlflow_template, root / ".tidecast" / "mlflow.db")
    assert retrain(load_spec(root), report=False)["promoted"]
    return root


def history(root: Path) -> list[dict]:
    path = root / ".tidecast" / "schedule-history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_schedule_runs_the_monitor_and_stops_on_sigterm(trained: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(var, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidecast.cli", "schedule", "--spec", str(trained)],
        cwd=trained, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 90
        done: list[dict] = []
        while time.monotonic() < deadline and proc.poll() is None:
            done = [h for h in history(trained) if h.get("job") == "monitor" and h.get("status") in ("ok", "failed")]
            if done:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        assert done, "no monitor job was recorded within 90 s"
        # the job ran; its verdict is the monitor's honest one: the data ended long before now (stale)
        assert done[0]["status"] == "ok" and done[0]["verdict"].startswith("stale: "), done[0]
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        waited = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "scheduled monitor '*/2 * * * * *'" in out and "scheduler stopped" in out
    assert waited < 30, f"took {waited:.1f} s to stop"
    # every job that started also finished (the running one was waited for), and one ran at a time
    runs = [h for h in history(trained) if h.get("status") in ("ok", "failed")]
    assert all(h["finished"] >= h["started"] for h in runs)
    spans = sorted((h["started"], h["finished"]) for h in runs)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    monitor_history = (trained / ".tidecast" / "monitor-history.jsonl").read_text().splitlines()
    assert len(monitor_history) == len(runs)
    # the project lock was released
    from tidecast.pipeline import ProjectLock

    with ProjectLock(trained / ".tidecast", timeout=0):
        pass
