"""Many-series benchmark: tidecast's backtest (local and Dask executors) against statsforecast /
mlforecast called directly on the same data and folds, and darts / sktime on a subset.

N hourly series of DAYS days (same timestamps), 24-step horizon, 3 folds of 24 steps each, plus
the 24-step holdout tidecast keeps out of every fold (the direct calls are given the data
without it, so both forecast the same 3 x 24 steps of every series).

    python bench/many_series.py                      # N = 100, 1000 (LightGBM), 100 (AutoETS)
    BENCH_N=100,1000,10000 BENCH_ETS_N=100,1000 python bench/many_series.py
    BENCH_CMP_PYTHON=/path/to/python-with-darts-and-sktime python bench/many_series.py
    BENCH_PLAN="autoets:100 lightgbm:100 others lightgbm:1000" BENCH_DEADLINE_S=400 python bench/many_series.py

``BENCH_PLAN`` orders the work (``model:N`` items, optionally ``:direct+local`` for some runners
only; ``others``, or one of ``darts``, ``sktime``, ``sktime-ets``: the libraries on a subset of the
first AutoETS size); with ``BENCH_DEADLINE_S`` a run that would pass the deadline is cut
and the ones after it are skipped, so that the table always prints. ``BENCH_JSONL`` appends each
measurement as a JSON line when it completes.

Prints one table: seconds, seconds per series, the ratio to the direct call, peak RSS (of the
process tree: the bench process and every worker, sampled 5 times a second), the number of
forecast rows and their MAE (the same work on both sides), and how time grows with N (the
exponent b of seconds ~ N^b between consecutive sizes: 1 is linear). Every configuration runs in
its own subprocess so that peak memory is its own.

The comparison libraries (``BENCH_OTHERS``, default ``darts,sktime,sktime-ets``):

* ``darts``: ``darts.models.AutoETS`` (statsforecast's AutoETS inside), ``historical_forecasts``
  with ``retrain=True`` series by series;
* ``sktime``: ``StatsForecastAutoETS`` in ``sktime.forecasting.model_evaluation.evaluate``;
* ``sktime-ets``: sktime's own ``AutoETS(auto=True)`` (statsmodels' ETS), same evaluate loop,
  on ``BENCH_CMP_ETS_SERIES`` series (default 3: one fit takes tens of seconds).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

H, FOLDS, SEASON = 24, 3, 24
DAYS = int(os.environ.get("BENCH_DAYS", "60"))
LGBM = {"n_estimators": 50, "num_leaves": 31, "learning_rate": 0.1}
LAGS = [1, 24, 168]
CMP_SUBSET = int(os.environ.get("BENCH_CMP_SERIES", "10"))
CMP_ETS_SUBSET = int(os.environ.get("BENCH_CMP_ETS_SERIES", "3"))


def make_data(n: int, days: int = DAYS, seed: int = 0) -> pd.DataFrame:
    """``n`` hourly series (daily cycle of random phase, level 5-100, 5 % noise), sorted by id, time."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=days * 24, freq="h")
    hour = np.asarray(ds.hour, float)
    level = rng.uniform(5, 100, n)[:, None]
    phase = rng.uniform(0, 24, n)[:, None]
    y = level * (1 + 0.3 * np.sin(2 * np.pi * (hour[None, :] - phase) / 24)) + rng.normal(0, 1, (n, len(ds))) * level * 0.05
    ids = np.array([f"s{i:05d}" for i in range(n)], dtype=object)
    return pd.DataFrame({"unique_id": np.repeat(ids, len(ds)), "ds": np.tile(ds.to_numpy(), n), "y": y.ravel()})


class _PeakRss:
    """Samples the RSS of this process plus all its descendants, keeping the peak of the sum."""

    def __init__(self, every: float = 0.2) -> None:
        import psutil

        self._proc = psutil.Process()
        self._every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += p.memory_info().rss
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def __enter__(self) -> _PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# ------------------------------------------------------------------------------------- runners
def run_tidecast(n: int, model: str, executor: str) -> dict[str, Any]:
    import lightgbm  # noqa: F401  -- the model libraries are imported before the clock starts, as for the direct calls
    import mlforecast  # noqa: F401
    import statsforecast.models  # noqa: F401

    from tidecast.spec import parse_spec
    from tidecast.training import candidate_results

    df = make_data(n)
    candidate = (
        {"name": "autoets", "kind": "autoets", "params": {"season_length": SEASON}}
        if model == "autoets"
        else {"name": "lightgbm", "kind": "lightgbm", "params": {**LGBM, "lags": LAGS, "scaling": "none"}}  # as the direct call
    )
    spec = parse_spec(
        {
            "project": "bench",
            "data": {"source": "unused.parquet", "frequency": "h", "series_column": "unique_id",
                     "time_column": "ds", "target_column": "y"},
            "features": {"lags": LAGS, "calendar": []},
            "forecast": {"input_window": "7d", "horizon": f"{H}h", "quantiles": []},  # point forecasts, as the direct calls
            "backtest": {"folds": FOLDS, "n_jobs": -1},
            "selection": {"metric": "mae"},
            "models": [candidate],
            "executor": {"kind": executor} if executor == "local" else {"kind": "dask", "n_workers": os.cpu_count()},
        },
        root=Path("."),
    )
    import tempfile

    from tidecast.data.partitions import partition_count, write_partitions

    with tempfile.TemporaryDirectory(prefix="bench-parts-") as tmp:
        # what the pipeline's features step leaves on disk: Parquet partitions of whole series, which
        # the backtest's workers read themselves (before the clock, as the direct calls' data is in memory)
        parts = write_partitions(df, tmp, partition_count(n, len(df), os.cpu_count() or 1, spec.executor.partition_rows))
        del df
        started = time.perf_counter()
        out = candidate_results(parts, spec)
        seconds = time.perf_counter() - started
    board = out["leaderboard"]
    if board["status"].iloc[0] != "ok":
        raise RuntimeError(board["error"].iloc[0])
    fc = out["results"][candidate["name"]].backtest.forecasts
    return {"seconds": seconds, "rows": len(fc), "mae": float((fc["y"] - fc["yhat"]).abs().mean())}


def run_direct(n: int, model: str) -> dict[str, Any]:
    df = make_data(n)
    df = df[df["ds"] <= df["ds"].max() - pd.Timedelta(hours=H)]  # tidecast's holdout
    from lightgbm import LGBMRegressor  # imports before the clock starts, as for tidecast
    from mlforecast import MLForecast
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    started = time.perf_counter()
    if model == "autoets":
        sf = StatsForecast(models=[AutoETS(season_length=SEASON)], freq="h", n_jobs=-1)
        cv = sf.cross_validation(df=df, h=H, n_windows=FOLDS, step_size=H)
        col = "AutoETS"
    else:
        mlf = MLForecast(models=[LGBMRegressor(verbose=-1, random_state=0, **LGBM)], freq="h", lags=LAGS)
        cv = mlf.cross_validation(df=df, h=H, n_windows=FOLDS, step_size=H)
        col = "LGBMRegressor"
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(cv), "mae": float((cv["y"] - cv[col]).abs().mean())}


_CMP_CODE = r"""
import sys, time, json, numpy as np, pandas as pd, warnings, logging
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
lib, path, H, FOLDS, SEASON = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
df = pd.read_parquet(path)
df = df[df["ds"] <= df["ds"].max() - pd.Timedelta(hours=H)]
errors = []
if lib == "darts":  # imports before the clock starts, as for the other runners
    import darts
    from darts import TimeSeries
    from darts.models import AutoETS
    version = darts.__version__
else:
    import sktime
    from sktime.forecasting.model_evaluation import evaluate
    from sktime.forecasting.model_selection import ExpandingWindowSplitter
    from sktime.performance_metrics.forecasting import MeanAbsoluteError
    from sktime.forecasting.ets import AutoETS
    from sktime.forecasting.statsforecast import StatsForecastAutoETS
    version = sktime.__version__
started = time.perf_counter()
if lib == "darts":
    for uid, g in df.groupby("unique_id"):
        s = TimeSeries.from_dataframe(g, time_col="ds", value_cols="y", freq="h")
        fcs = AutoETS(season_length=SEASON).historical_forecasts(
            s, start=len(s) - FOLDS * H, forecast_horizon=H, stride=H, retrain=True, last_points_only=False,
            verbose=False)
        for fc in fcs:
            actual = s.slice_intersect(fc)
            errors.append(np.abs(actual.values().ravel() - fc.values().ravel()))
else:
    if lib == "sktime":
        make = lambda: StatsForecastAutoETS(season_length=SEASON)
    else:
        make = lambda: AutoETS(auto=True, sp=SEASON)
    for uid, g in df.groupby("unique_id"):
        y = g.set_index("ds")["y"].asfreq("h")
        cv = ExpandingWindowSplitter(fh=list(range(1, H + 1)), initial_window=len(y) - FOLDS * H, step_length=H)
        res = evaluate(make(), cv, y, scoring=MeanAbsoluteError())
        errors.extend(np.full(H, v) for v in res["test_MeanAbsoluteError"])
seconds = time.perf_counter() - started
allerr = np.concatenate(errors)
print(json.dumps({"seconds": seconds, "rows": int(allerr.size), "mae": float(allerr.mean()), "version": version}))
"""


def run_other(lib: str, n: int) -> dict[str, Any]:
    python = os.environ.get("BENCH_CMP_PYTHON") or sys.executable
    if not Path(python).exists():
        raise RuntimeError(f"no python with {lib} at {python} (set BENCH_CMP_PYTHON)")
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_cmp_{n}_{os.getpid()}.parquet"
    make_data(n).to_parquet(path, index=False)
    try:
        done = subprocess.run(
            [python, "-c", _CMP_CODE, lib, str(path), str(H), str(FOLDS), str(SEASON)],
            capture_output=True, text=True,
        )
    finally:
        path.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(kind: str, n: int, model: str) -> None:
    """One configuration, in a fresh process: prints a JSON line with seconds and peak RSS."""
    with _PeakRss() as rss:
        if kind in ("local", "dask"):
            out = run_tidecast(n, model, kind)
        elif kind == "direct":
            out = run_direct(n, model)
        else:
            out = run_other(kind, n)
    print(json.dumps({**out, "peak_rss_mb": rss.peak / 2**20}))


def measure(kind: str, n: int, model: str, timeout: float) -> dict[str, Any]:
    if timeout <= 5:
        return {"error": "skipped (deadline)"}
    import signal

    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(n), model],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,  # its own process group
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its workers
        proc.communicate()
        return {"error": f"cut at {timeout:.0f} s (deadline)"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers a finished child left behind (loky's idle pool)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"error": tail[:160]}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------------------- table
def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    names = ["statsforecast", "mlforecast", "lightgbm", "dask", "distributed", "pandas", "numpy", "numba"]
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} -")
    return f"Python {platform.python_version()}, " + ", ".join(parts)


RUNNERS = ("direct", "local", "dask")
LIBS = ("darts", "sktime", "sktime-ets")


def _plan(others: list[str]) -> list[tuple[str, int, list[str]]]:
    """``(model, N, runners)`` in order: from ``BENCH_PLAN`` (``autoets:100``, ``lightgbm:1000:direct+local``,
    ``others`` or one library's name), else AutoETS sizes, the libraries, LightGBM sizes."""
    text = os.environ.get("BENCH_PLAN")
    if not text:
        sizes = [int(x) for x in os.environ.get("BENCH_N", "100,1000").split(",") if x]
        ets_sizes = [int(x) for x in os.environ.get("BENCH_ETS_N", "100").split(",") if x]
        text = " ".join([*(f"autoets:{n}" for n in ets_sizes), "others", *(f"lightgbm:{n}" for n in sizes)])
    plan: list[tuple[str, int, list[str]]] = []
    for item in text.split():
        if item == "others":
            plan.append(("others", 0, others))
        elif item in LIBS:
            plan.append(("others", 0, [item]))
        else:
            model, _, rest = item.partition(":")
            n, _, kinds = rest.partition(":")
            plan.append((model, int(n), kinds.split("+") if kinds else list(RUNNERS)))
    return plan


def _row(model: str, n: int, kind: str, series: int, r: dict[str, Any]) -> dict[str, Any]:
    label = {"direct": "statsforecast" if model == "autoets" else "mlforecast"}.get(kind, kind)
    if kind in ("local", "dask"):
        label = f"tidecast {kind}"
    return {"model": model, "n": n, "kind": kind, "runner": label, "series": series, **r}


def main() -> None:
    others = [x for x in os.environ.get("BENCH_OTHERS", "darts,sktime,sktime-ets").split(",") if x]
    deadline = time.monotonic() + float(os.environ.get("BENCH_DEADLINE_S", "86400"))
    jsonl = os.environ.get("BENCH_JSONL")
    plan = _plan(others)
    first_ets = next((n for model, n, _ in plan if model == "autoets"), 100)
    rows: list[dict[str, Any]] = []
    started = time.strftime("%Y-%m-%d %H:%M")
    for model, n, kinds in plan:
        if model == "others":
            jobs = [(lib, min(first_ets, CMP_ETS_SUBSET if lib == "sktime-ets" else CMP_SUBSET), "autoets") for lib in kinds]
            group_n = first_ets
        else:
            jobs = [(kind, n, model) for kind in kinds]
            group_n = n
        for kind, series, what in jobs:
            r = measure(kind, series, what, deadline - time.monotonic())
            row = _row(what, group_n, kind, series, r)
            rows.append(row)
            print("...", json.dumps(row), file=sys.stderr, flush=True)
            if jsonl:
                with open(jsonl, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    print(render(rows, started))


def render(rows: list[dict[str, Any]], when: str = "") -> str:
    """The markdown table of ``rows`` (as ``main`` collects them)."""
    direct = {(r["model"], r["n"]): r for r in rows if r["kind"] == "direct" and "seconds" in r}
    local = {(r["model"], r["n"]): r for r in rows if r["kind"] == "local" and "seconds" in r}
    previous: dict[tuple[str, str], dict[str, Any]] = {}
    out = [
        f"many-series backtest: {DAYS} days hourly, h={H}, {FOLDS} folds; {platform.machine()}, "
        f"{os.cpu_count()} cores, {when}; {_versions()}",
        "",
        "| model | N | runner | series | seconds | ms/series | x direct | tidecast faster per series | "
        "peak RSS MB | growth b (s ~ N^b) | forecasts | MAE | note |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def fmt(v: Any, f: str) -> str:
        return "–" if v is None else f"{v:{f}}"

    for r in rows:
        ok = "seconds" in r
        secs = r.get("seconds")
        per = secs / r["series"] if ok else None
        base = direct.get((r["model"], r["n"]))
        ratio = secs / base["seconds"] if ok and base and r["kind"] in ("local", "dask") else None
        faster = None
        ref = local.get((r["model"], r["n"]))
        if ok and ref and r["kind"] not in ("direct", "local", "dask"):
            faster = per / (ref["seconds"] / ref["series"])
        growth = None
        key = (r["model"], r["kind"])
        if ok and key in previous and r["kind"] in ("direct", "local", "dask"):
            p = previous[key]
            if r["series"] != p["series"]:
                growth = math.log(secs / p["seconds"]) / math.log(r["series"] / p["series"])
        if ok and r["kind"] in ("direct", "local", "dask"):
            previous[key] = r
        note = r.get("error", "") or (f"{r['runner']} {r['version']}" if "version" in r else "")
        out.append(
            f"| {r['model']} | {r['n']} | {r['runner']} | {r['series']} | {fmt(secs, '.1f')} | "
            f"{fmt(None if per is None else per * 1000, '.1f')} | {fmt(ratio, '.2f')} | {fmt(faster, '.1f')} | "
            f"{fmt(r.get('peak_rss_mb'), '.0f')} | {fmt(growth, '.2f')} | {fmt(r.get('rows'), 'd')} | "
            f"{fmt(r.get('mae'), '.3f')} | {note} |"
        )
    return "\n".join(out)


# ------------------------------------------------------------------------- a cluster of processes
# ``python bench/many_series.py --cluster --series 10000,30000,100000 [--days 14] [--folds 2]``
#
# The whole pipeline (``tidecast run --until track``, a CLI subprocess: the "client") on a Dask
# cluster of separate processes: ``dask scheduler`` and two ``dask worker --nthreads 1 --no-nanny``,
# each started from a temporary folder of its own (tests/infra/services.py's DaskCluster), which do
# not see the project (``executor: {kind: dask, address: ..., shared_storage: false}``), on a
# generated meters-like dataset (hourly, DAYS days at most, ragged starts, customer_type static).
# Candidates: seasonal naive (per series) and one global LightGBM (mlforecast's Dask path).
# Per size it records wall time and CPU time (user + system) of the client, the scheduler and each
# worker, each process's peak RSS (sampled twice a second), the scheduler's task count and
# transitions, the lock's per-step seconds and peak memory, and the partition I/O: the features
# step's partitions read back whole and written again, by this process, as the client does with
# shared_storage: false. Prints one JSON line per size and a markdown table at the end.
CLUSTER_MODELS = [
    "{name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}",
    "{name: lightgbm, kind: lightgbm, params: {n_estimators: 50, num_leaves: 31}}",
]


def make_meters_fast(n: int, days: int = 14, seed: int = 0) -> pd.DataFrame:
    """Meters like ``tidecast.datasets.make_meters`` (three customer types, daily shapes, AR(1) noise,
    ragged starts: each meter starts within the first DAYS // 4 days and runs to the end), vectorised
    over the meters so that 100,000 of them take seconds, not minutes."""
    rng = np.random.default_rng(seed)
    steps = days * 24
    ds = pd.date_range("2024-01-01", periods=steps, freq="h")
    hour = np.asarray(ds.hour, float)[None, :]
    weekend = np.asarray(ds.weekday >= 5)[None, :]
    kind = rng.integers(0, 3, n)
    scale = np.array([1.5, 25.0, 120.0])[kind] * rng.uniform(0.7, 1.3, n)

    def bump(centre: float, width: float) -> np.ndarray:
        return np.exp(-0.5 * ((hour - centre) / width) ** 2)

    shapes = np.stack([
        np.broadcast_to(0.4 + 0.5 * bump(7.5, 1.0) + 1.0 * bump(19.5, 2.0), (1, steps))[0],
        (0.3 + 0.9 * bump(13.0, 4.0) * np.where(weekend, 0.4, 1.0))[0],
        (0.8 + 0.2 * (np.sin(2 * np.pi * hour / 24.0) > 0) * np.where(weekend, 0.5, 1.0))[0],
    ])
    noise = np.empty((n, steps))
    noise[:, 0] = rng.normal(0, 0.05, n)
    eps = rng.normal(0, 0.05, (n, steps))
    for t in range(1, steps):
        noise[:, t] = 0.8 * noise[:, t - 1] + eps[:, t]
    load = np.round(np.clip(scale[:, None] * shapes[kind] * (1.0 + noise), 0.0, None), 3)
    start = rng.integers(0, max(1, days // 4), n) * 24
    keep = np.arange(steps)[None, :] >= start[:, None]
    ids = np.array([f"meter_{i + 1:06d}" for i in range(n)], dtype=object)
    types = np.array(["residential", "commercial", "industrial"], dtype=object)[kind]
    rows = keep.sum(axis=1)
    return pd.DataFrame({
        "series_id": np.repeat(ids, rows),
        "timestamp": np.broadcast_to(ds.to_numpy(), (n, steps))[keep],
        "load": load[keep],
        "customer_type": np.repeat(types, rows),
    })


class _ProcWatch:
    """Peak RSS and last CPU times (user + system, children included) of named processes, sampled
    every ``every`` seconds; a process's descendants are summed into it."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.pids: dict[str, int] = {}
        self.peak_mb: dict[str, float] = {}
        self.cpu_s: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def sample(self) -> None:
        import psutil

        for name, pid in list(self.pids.items()):
            rss, cpu = 0, 0.0
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc = psutil.Process(pid)
                for p in [proc, *proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        rss += p.memory_info().rss
                        t = p.cpu_times()
                        cpu += t.user + t.system
            if rss:
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), rss / 2**20)
                self.cpu_s[name] = max(self.cpu_s.get(name, 0.0), cpu)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> _ProcWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _scheduler_stats(dask_scheduler: Any) -> dict[str, Any]:
    """Runs on the scheduler: tasks per prefix (count, compute seconds) and the transition count."""
    prefixes = {}
    for name, tp in dask_scheduler.task_prefixes.items():
        durations = dict(tp.all_durations)
        prefixes[name] = {"tasks": int(tp.state_counts.get("memory", 0) + tp.state_counts.get("erred", 0)),
                          "compute_s": float(durations.get("compute", 0.0)),
                          "transfer_s": float(durations.get("transfer", 0.0))}
    return {"transitions": int(dask_scheduler.transition_counter), "prefixes": prefixes}


def _partition_io(project: Path) -> dict[str, Any]:
    """The features step's partitions read whole and written again (seconds, bytes)."""
    import tempfile

    folders = sorted((project / ".tidecast" / "cache" / "features").glob("*/output.parts"))
    if not folders:
        return {}
    files = sorted(folders[-1].glob("part-*.parquet"))
    size = sum(f.stat().st_size for f in files)
    t0, c0 = time.perf_counter(), time.process_time()
    frames = [pd.read_parquet(f) for f in files]
    read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = sum(len(f) for f in frames)
    with tempfile.TemporaryDirectory(prefix="bench-io-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        for i, frame in enumerate(frames):
            frame.to_parquet(Path(tmp) / f"part-{i:05d}.parquet", index=False)
        write_s, write_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"parts": len(files), "rows": rows, "mb": size / 2**20, "read_s": read_s, "read_cpu_s": read_cpu,
            "write_s": write_s, "write_cpu_s": write_cpu}


def run_cluster(n: int, days: int = 14, folds: int = 2, keep: Path | None = None) -> dict[str, Any]:
    """One size on a fresh scheduler + two workers; see the block comment above."""
    import shutil
    import tempfile

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.infra
    from tests.infra.services import DaskCluster, venv_env
    from tests.infra.topology import meters_spec

    root = Path(tempfile.mkdtemp(prefix=f"bench-cluster-{n}-"))
    project = root / "project"
    (project / "data").mkdir(parents=True)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    frame = make_meters_fast(n, days)
    rows = len(frame)
    frame.to_parquet(project / "data" / "meters.parquet", index=False)
    del frame
    gen_s = time.perf_counter() - t0
    cluster = DaskCluster(root / "dask", n_workers=2)
    out: dict[str, Any] = {"series": n, "days": days, "folds": folds, "rows": rows, "data_s": gen_s}
    try:
        cluster.start()
        executor = f"{{kind: dask, address: '{cluster.address}', shared_storage: false}}"
        (project / "tidecast.yaml").write_text(
            meters_spec("bench-cluster", folds=folds, models=CLUSTER_MODELS, executor=executor)
        )
        with _ProcWatch() as watch:
            assert cluster.scheduler is not None
            watch.watch("scheduler", cluster.scheduler.pid)
            for i, worker in enumerate(cluster.workers):
                watch.watch(f"worker{i}", worker.pid)
            watch.sample()
            base_cpu = dict(watch.cpu_s)  # start-up, before the run
            started = time.perf_counter()
            client = subprocess.Popen(
                [sys.executable, "-m", "tidecast.cli", "run", "--until", "track"], cwd=project,
                env=venv_env(COLUMNS="200", NO_COLOR="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            watch.watch("client", client.pid)
            log: list[str] = []
            assert client.stdout is not None
            for line in client.stdout:  # read as it comes: a full pipe would stall the client
                log.append(line)
            _, status, usage = os.wait4(client.pid, 0)
            client.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - started
            watch.sample()
        (root / "client.log").write_text("".join(log))
        out["wall_s"] = wall
        out["exit"] = client.returncode
        if client.returncode != 0:
            out["error"] = "".join(log)[-600:]
        out["cpu_s"] = {name: watch.cpu_s.get(name, 0.0) - base_cpu.get(name, 0.0) for name in watch.cpu_s}
        out["cpu_s"]["client"] = usage.ru_utime + usage.ru_stime  # exact, from wait4 (its reaped children included)
        out["peak_rss_mb"] = watch.peak_mb
        from distributed import Client

        with Client(cluster.address, timeout=10) as dc:
            stats = dc.run_on_scheduler(_scheduler_stats)
        out["transitions"] = stats["transitions"]
        out["tasks"] = sum(p["tasks"] for p in stats["prefixes"].values())
        out["task_compute_s"] = sum(p["compute_s"] for p in stats["prefixes"].values())
        out["prefixes"] = {k: v for k, v in stats["prefixes"].items() if v["tasks"]}
        lock = yaml.safe_load((project / "tidecast.lock").read_text()) if (project / "tidecast.lock").exists() else {}
        out["steps"] = {name: {"s": rec.get("duration_s"), "peak_mb": rec.get("peak_rss_mb")}
                        for name, rec in (lock or {}).get("steps", {}).items()}
        out["partition_io"] = _partition_io(project)
        out["load"] = [load_start, os.getloadavg()]
    finally:
        cluster.stop()
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
        else:
            out["kept"] = str(root)
    return out


def render_cluster(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per size (wall, CPU per role, per-series cost, peak RSS, tasks), then the steps."""
    head = [
        "| series | rows | wall s | ms/series wall | CPU s all | ms/series CPU | client CPU s | scheduler CPU s | "
        "worker CPU s (each) | peak RSS MB client / scheduler / workers | tasks | transitions | "
        "partition read + write s (MB) | load 1-min start-end |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "wall_s" not in r:
            head.append(f"| {r['series']} | – | – | – | – | – | – | – | – | – | – | – | – | {r.get('error', '')[:80]} |")
            continue
        cpu = r["cpu_s"]
        workers = [v for k, v in sorted(cpu.items()) if k.startswith("worker")]
        total = sum(cpu.values())
        rss = r["peak_rss_mb"]
        wrss = " / ".join(f"{v:,.0f}" for k, v in sorted(rss.items()) if k.startswith("worker"))
        io = r.get("partition_io") or {}
        io_txt = f"{io.get('read_s', 0):.1f} + {io.get('write_s', 0):.1f} ({io.get('mb', 0):,.0f})" if io else "–"
        head.append(
            f"| {r['series']:,} | {r['rows']:,} | {r['wall_s']:.0f} | {1000 * r['wall_s'] / r['series']:.2f} | "
            f"{total:.0f} | {1000 * total / r['series']:.2f} | {cpu.get('client', 0):.0f} | {cpu.get('scheduler', 0):.1f} | "
            f"{' / '.join(f'{w:.0f}' for w in workers)} | {rss.get('client', 0):,.0f} / {rss.get('scheduler', 0):,.0f} / {wrss} | "
            f"{r['tasks']:,} | {r['transitions']:,} | {io_txt} | "
            f"{r['load'][0][0]:.1f}-{r['load'][1][0]:.1f} |"
        )
    steps = sorted({s for r in results for s in r.get("steps", {})},
                   key=["ingest", "clean", "features", "backtest", "select", "track"].index)
    head += ["", "| series | " + " | ".join(f"{s} s (peak MB)" for s in steps) + " |",
             "|---:|" + "---:|" * len(steps)]
    for r in results:
        if "steps" in r:
            cells = []
            for s in steps:
                rec = r["steps"].get(s) or {}
                cells.append(f"{rec.get('s') or 0:.1f} ({rec.get('peak_mb') or 0:,.0f})")
            head.append(f"| {r['series']:,} | " + " | ".join(cells) + " |")
    return "\n".join(head)


def cluster_main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="many_series.py --cluster")
    ap.add_argument("--series", default="10000", help="comma-separated sizes, e.g. 10000,30000,100000")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--jsonl", default=os.environ.get("BENCH_JSONL"))
    ap.add_argument("--keep", action="store_true", help="keep each size's temporary folder (logs, project)")
    args = ap.parse_args(argv)
    results = []
    for n in [int(x) for x in args.series.split(",") if x]:
        r = run_cluster(n, args.days, args.folds, keep=Path("/") if args.keep else None)
        results.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps(r) + "\n")
    print(f"cluster: scheduler + 2 workers (1 thread each), {platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M')}; {_versions()}\n")
    print(render_cluster(results))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "--cluster":  # the pipeline on a scheduler + 2 worker processes
        cluster_main(sys.argv[2:])
    elif len(sys.argv) > 2 and sys.argv[1] == "--render":  # the table again from a BENCH_JSONL file
        print(render([json.loads(line) for line in Path(sys.argv[2]).read_text().splitlines() if line.strip()]))
    else:
        main()
