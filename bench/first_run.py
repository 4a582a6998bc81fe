"""Time `make demo`'s pipeline: the cold run and the no-op re-run of examples/power (issue 19).

Copies examples/power and examples/plugins into a temporary folder (the spec's relative
``plugin_paths: [../plugins]`` keeps working; the committed example is never touched), removes the
copy's ``.tidecast`` and ``tidecast.lock``, then runs ``tidecast run`` there as a user would:

* the **cold run**: every step executes; wall time, CPU time (this run's process and its children,
  user + sys) and each step's seconds and share from the ``tidecast.lock`` it writes;
* each candidate's share of the backtest: its wall seconds there (grid/search included) and the
  fold fits' and forecasts' seconds, read from the backtest step's cached output (with candidates
  side by side in worker processes, the seconds overlap: their sum exceeds the step's);
* the **no-op run**, ``--noop N`` times: nothing changed, every step cached; wall time of each
  (best and median), and whether it imported a model library (``-X importtime`` of one more run).

Usage (from the repository root)::

    .venv/bin/python bench/first_run.py [--noop 5] [--days N] [--keep DIR] [--markdown]

``--days N`` keeps only the last N days of the copy's data (a quick check of the same pipeline
on a loaded machine; not the reference scenario's figures).

The machine's core count and load average are printed with the figures: compare runs made in the
same conditions only.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TIDECAST = ROOT / ".venv" / "bin" / "tidecast"
MODEL_LIBRARIES = ("lightgbm", "statsforecast", "statsmodels", "mlforecast", "sklearn", "scipy", "torch", "dask", "numba", "mlflow", "shap")


def _load() -> str:
    with open("/proc/loadavg", encoding="utf-8") as handle:
        return " ".join(handle.read().split()[:3])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def copy_example(target: Path, days: int | None = None) -> Path:
    """examples/power and examples/plugins side by side under ``target``, without state or lock
    (with ``days``, only the last ``days`` days of the readings)."""
    for name in ("power", "plugins"):
        shutil.copytree(ROOT / "examples" / name, target / name, ignore=shutil.ignore_patterns(".tidecast"))
    project = target / "power"
    (project / "tidecast.lock").unlink(missing_ok=True)
    if days:
        import pandas as pd

        data = project / "data" / "power.csv"
        frame = pd.read_csv(data)
        frame.iloc[-288 * days :].to_csv(data, index=False)
    return project


def run_cli(project: Path, *args: str, python_flags: tuple[str, ...] = ()) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """``tidecast run`` in ``project``: (wall seconds, CPU seconds of the process tree, the result)."""
    env = {**os.environ, "COLUMNS": "120", "TIDECAST_PROGRESS": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, *python_flags, str(TIDECAST), "run", *args] if python_flags else [str(TIDECAST), "run", *args]
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"tidecast run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, _children_cpu() - cpu, done


def step_seconds(project: Path) -> dict[str, float]:
    """Each step's duration as the cold run recorded it in ``tidecast.lock``."""
    lock = yaml.safe_load((project / "tidecast.lock").read_text(encoding="utf-8"))
    return {name: float(record.get("duration_s") or 0.0) for name, record in (lock.get("steps") or {}).items()}


def candidate_seconds(project: Path) -> list[tuple[str, float, float, float]]:
    """Each candidate's (name, backtest seconds, fit seconds, predict seconds) from the backtest
    step's cached output of the cold run, slowest first."""
    import joblib

    outputs = sorted((project / ".tidecast" / "cache" / "backtest").glob("*/output.joblib"), key=lambda p: p.stat().st_mtime)
    if not outputs:
        return []
    out = joblib.load(outputs[-1])
    details = out["details"] if isinstance(out, dict) else out.details
    results = out["results"] if isinstance(out, dict) else out.results
    rows = []
    for name, entry in results.items():
        seconds = float((details.get(name) or {}).get("seconds") or 0.0)
        rows.append((name, seconds, float(entry.fit_seconds or 0.0), float(entry.predict_seconds or 0.0)))
    return sorted(rows, key=lambda row: -row[1])


def side_by_side(stdout: str) -> dict[str, str]:
    """The steps the cold run ran beside another (``  track  ran  7.5 s, beside explain``)."""
    return dict(re.findall(r"^\s*(\w+)\s+ran\s+[\d.]+ s, beside ([\w, ]+?)\s*$", stdout, flags=re.MULTILINE))


def imported_libraries(stderr: str) -> list[str]:
    """The model libraries a ``-X importtime`` run imported (top-level package names)."""
    found = set()
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)", line)
        if match and match.group(1).split(".")[0] in MODEL_LIBRARIES:
            found.add(match.group(1).split(".")[0])
    return sorted(found)


STARTUP = """
import sys, time
t0 = time.perf_counter()
import tidecast.cli
from tidecast.flows import training_pipeline
from tidecast.training import preflight
from tidecast.spec import load_spec
t1 = time.perf_counter()
spec = load_spec(None)
training_pipeline()
preflight(spec, [])  # every step cached: what a no-op's pre-run check does
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {time.process_time():.3f}")
"""


def startup(project: Path) -> tuple[float, float, float]:
    """A no-op's start-up in a fresh process: (imports s, pre-run check s, CPU s)."""
    done = subprocess.run([sys.executable, "-c", STARTUP], cwd=project, capture_output=True, text=True, check=True)
    imports, check, cpu = (float(v) for v in done.stdout.split())
    return imports, check, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noop", type=int, default=5, help="no-op re-runs to time (default 5)")
    parser.add_argument("--days", type=int, default=None, help="keep only the last N days of the data (quick check)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this (new) folder and keep it")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="tidecast-first-run-"))
    work.mkdir(parents=True, exist_ok=True)
    project = copy_example(work, args.days)
    print(f"{os.cpu_count()} cores, load average {_load()} at start, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    try:
        wall, cpu, cold = run_cli(project)
        load_cold = _load()
        steps = step_seconds(project)
        per_candidate = candidate_seconds(project)
        noops = []
        for _ in range(max(0, args.noop)):
            noop_wall, _, _ = run_cli(project)
            noops.append(noop_wall)
        _, _, traced = run_cli(project, python_flags=("-X", "importtime"))
        started = startup(project)
        load_end = _load()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    total = sum(steps.values())
    bar = "|" if args.markdown else " "
    print(f"\ncold run: {wall:.1f} s wall, {cpu:.1f} s CPU (user+sys, every process), load average {load_cold} after")
    print(f"{bar} step {bar} seconds {bar} share of the run {bar}".strip() if args.markdown else "step        seconds   share")
    if args.markdown:
        print("|---|---:|---:|")
    for name, seconds in steps.items():
        share = f"{seconds / wall:.0%}"
        print(f"| {name} | {seconds:.1f} | {share} |" if args.markdown else f"{name:<10} {seconds:8.1f} {share:>7}")
    beside = side_by_side(cold.stdout)
    # steps side by side overlap: the run's own table counts the overlap once (its "outside the steps")
    printed = re.search(r"outside the steps\W+([\d.]+)", cold.stdout)
    outside = float(printed.group(1)) if printed else max(0.0, wall - total)
    if beside:
        print("steps side by side (their seconds overlap): " + ", ".join(f"{a} beside {b}" for a, b in beside.items()))
    print(f"| outside the steps (start-up, planning, printing) | {outside:.1f} | {outside / wall:.0%} |" if args.markdown
          else f"{'outside':<10} {outside:8.1f} {outside / wall:>7.0%}")
    if per_candidate:
        print("\n| candidate | backtest s | fits s | forecasts s |\n|---|---:|---:|---:|" if args.markdown
              else "\ncandidate        backtest s   fits s  forecasts s")
        for name, seconds, fit, predict in per_candidate:
            print(f"| {name} | {seconds:.1f} | {fit:.1f} | {predict:.1f} |" if args.markdown
                  else f"{name:<16} {seconds:10.1f} {fit:8.1f} {predict:12.1f}")
    if noops:
        print(
            f"\nno-op run: best {min(noops):.2f} s, median {statistics.median(noops):.2f} s over {len(noops)} "
            f"(load average {load_end} after)"
        )
    print(f"no-op start-up: imports {started[0]:.2f} s, pre-run check {started[1]:.2f} s, {started[2]:.2f} s CPU")
    libraries = imported_libraries(traced.stderr)
    print(f"model libraries a no-op imports: {', '.join(libraries) if libraries else 'none'}")


if __name__ == "__main__":
    main()
