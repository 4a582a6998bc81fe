"""The backtest's worker pool started ahead (issue 19): the pre-run check starts the loky pool that
the backtest's side-by-side candidates will use and imports their libraries there while the data
steps run; the map that follows gets the very same processes, and tiny data or a run without a
backtest starts nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tidecast.pipeline.executors.local import LocalExecutor, _settle_warm_up, warm_up
from tidecast.spec import parse_spec
from tidecast.training.settings import BYTES_PER_ROW, PARALLEL_CANDIDATES_ROWS, WarmWorker, source_rows, warm_workers


@dataclass(frozen=True)
class _RecordPid:
    folder: str

    def __call__(self) -> None:
        Path(self.folder, str(os.getpid())).touch()


@dataclass(frozen=True)
class _Fails:
    def __call__(self) -> None:
        raise RuntimeError("a warm-up that fails")


def _pid(_: int) -> int:
    return os.getpid()


@dataclass(frozen=True)
class _Plan:
    name: str
    will_run: bool


def _plans(*running: str) -> list[_Plan]:
    steps = ("ingest", "clean", "features", "backtest", "select", "track", "explain", "report")
    return [_Plan(name, name in running) for name in steps]


def _spec(root: Path, rows: int, models: list[dict[str, Any]] | None = None, **extra: Any) -> Any:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "x.csv").write_bytes(b"x" * rows * BYTES_PER_ROW)  # only its size is read
    return parse_spec(
        {
            "project": "warm",
            "data": {"source": "data/x.csv", "time_column": "ds", "target_column": "y", "frequency": "1h"},
            "forecast": {"input_window": "2d", "horizon": "1d"},
            "models": models
            or [
                {"name": "snaive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
                {"name": "ets", "kind": "autoets", "fit_window": "14d"},
            ],
            **extra,
        },
        root=root,
    )


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="side by side needs two cores")
def test_the_map_after_a_warm_up_runs_in_the_warmed_processes(tmp_path: Path) -> None:
    assert warm_up(2, _RecordPid(str(tmp_path)))
    assert not warm_up(2, _RecordPid(str(tmp_path)))  # one at a time
    pids = set(LocalExecutor(2).map(_pid, list(range(6))))
    warmed = {int(p.name) for p in tmp_path.iterdir()}
    assert os.getpid() not in pids | warmed
    assert pids & warmed  # the map's tasks ran in the processes the warm-up started ...
    assert len(pids | warmed) <= 2  # ... and in no new one: the pool of two was reused


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="side by side needs two cores")
def test_a_failing_warm_up_fails_nothing(tmp_path: Path) -> None:
    assert warm_up(2, _Fails())
    assert LocalExecutor(2).map(_pid, [1, 2]) and LocalExecutor(2).map(abs, [-1, -2]) == [1, 2]
    _settle_warm_up()  # nothing left to wait for


def test_one_worker_is_no_warm_up(tmp_path: Path) -> None:
    assert not warm_up(1, _RecordPid(str(tmp_path)))
    assert not list(tmp_path.iterdir())


def test_rows_are_guessed_from_the_source_size(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 12_345)
    assert source_rows(spec) == 12_345
    url = spec.model_copy(update={"data": spec.data.model_copy(update={"source": "https://example.com/x.csv"})})
    assert source_rows(url) is None


def test_warm_workers_only_when_the_backtest_runs_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    large = _spec(tmp_path / "large", 4 * PARALLEL_CANDIDATES_ROWS[0])
    expected = min(os.cpu_count() or 1, 2)
    quiet, busy = 0.0, float(os.cpu_count() or 1)
    assert warm_workers(large, _plans(*(p.name for p in _plans())), quiet) == expected  # a cold run
    assert warm_workers(large, _plans("backtest", "select"), quiet) == expected
    assert warm_workers(large, _plans("backtest", "select"), busy) == 1  # no idle core to warm on
    assert warm_workers(large, _plans(), quiet) == 1  # a no-op
    assert warm_workers(large, _plans("track", "explain", "report"), quiet) == 1  # the backtest cached
    assert warm_workers(large, None, quiet) == 1  # a caller without plans (the monitor's retrain)
    tiny = _spec(tmp_path / "tiny", PARALLEL_CANDIDATES_ROWS[0] + 100)  # tests' many small pipelines
    assert warm_workers(tiny, _plans("backtest"), quiet) == 1
    fast = _spec(tmp_path / "fast", 4 * PARALLEL_CANDIDATES_ROWS[0], models=[
        {"name": "snaive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
        {"name": "naive", "kind": "naive"},
    ])
    assert warm_workers(fast, _plans("backtest"), quiet) == 1  # no slow candidate: the backtest stays in-process
    jobs = _spec(tmp_path / "jobs", 4 * PARALLEL_CANDIDATES_ROWS[0], backtest={"n_jobs": 2})
    assert warm_workers(jobs, _plans("backtest"), quiet) == 1  # folds in parallel instead
    monkeypatch.setenv("TIDECAST_WARM_UP", "0")
    assert warm_workers(large, _plans("backtest"), quiet) == 1
    monkeypatch.setenv("TIDECAST_WARM_UP", "1")
    monkeypatch.setenv("TIDECAST_PARALLEL_CANDIDATES", "0")
    assert warm_workers(large, _plans("backtest"), quiet) == 1


def test_the_warm_worker_imports_what_the_candidates_use(tmp_path: Path) -> None:
    import subprocess
    import sys

    spec = _spec(tmp_path, 100)
    code = (
        "import pickle, sys; from pathlib import Path; "
        f"pickle.loads(Path({str(tmp_path / 'w.pkl')!r}).read_bytes())(); "
        "print(all(m in sys.modules for m in ('statsforecast', 'tidecast.training.candidates')))"
    )
    import pickle

    (tmp_path / "w.pkl").write_bytes(pickle.dumps(WarmWorker(spec)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"


def test_always_warms_whatever_the_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    large = _spec(tmp_path, 4 * PARALLEL_CANDIDATES_ROWS[0])
    monkeypatch.setenv("TIDECAST_WARM_UP", "always")
    assert warm_workers(large, _plans("backtest"), float(os.cpu_count() or 1) + 8) == min(os.cpu_count() or 1, 2)


def _cli_project(root: Path, models: str, time_column: str = "ds") -> Path:
    import numpy as np
    import pandas as pd

    root.mkdir(parents=True)
    ds = pd.date_range("2020-01-01", periods=24_000, freq="1h")  # ~650 kB: guessed large enough to warm
    pd.DataFrame({"ds": ds.strftime("%Y-%m-%d %H:%M:%S"), "y": np.sin(np.arange(len(ds)) / 24.0)}).to_csv(root / "x.csv", index=False)
    (root / "tidecast.yaml").write_text(
        f"project: warm\ndata: {{source: x.csv, time_column: {time_column}, target_column: y, frequency: 1h}}\n"
        f"forecast: {{input_window: 2d, horizon: 1d}}\nmodels:\n{models}",
        encoding="utf-8",
    )
    return root


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="side by side needs two cores")
@pytest.mark.parametrize(
    ("case", "models", "time_column", "needle"),
    [
        ("bad param", "  - {name: ets, kind: autoets, params: {bogus: 1}}\n  - {name: n, kind: naive}\n", "ds", "bogus"),
        ("bad data", "  - {name: ets, kind: autoets}\n  - {name: n, kind: naive}\n", "when", "when"),
    ],
)
def test_a_run_that_fails_before_its_backtest_says_one_line(
    tmp_path: Path, case: str, models: str, time_column: str, needle: str
) -> None:
    """A bad candidate fails the pre-run check before any worker starts; data that fails at ingest
    fails after the warm-up began: either way one line, exit code 2, and no step's output cached."""
    import subprocess
    import sys

    project = _cli_project(tmp_path / "p", models, time_column)
    env = {**os.environ, "TIDECAST_WARM_UP": "always", "TIDECAST_PROGRESS": "0", "NO_COLOR": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("tidecast")), "run"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr + done.stdout
    assert len(lines) == 1 and needle in lines[0], (case, done.stderr)
    assert not list((project / ".tidecast" / "cache").glob("*/*/output*"))
