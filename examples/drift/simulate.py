"""Simulate monitoring the drift example day by day, then a month of the unchanged series.

1. *Drift*: a copy of the project (``data/power.csv``: from 2024-07-01 the load is 25 % higher with a
   midday plateau) is trained on the data before 2024-06-24, then ``tidecast monitor`` runs once a
   day (``as_of`` = local midnight) through the change; it prints each verdict, when drift was first
   flagged, and what the retrain did. It also runs the drift check alone every 3 hours of the
   first day after the change, to measure the detection delay below one day.
2. *No change*: the same with ``data/power_unchanged.csv`` over 30 days, counting alarms (runs
   whose verdict is not ``ok``) and retrains.

    python examples/drift/simulate.py                 # about 3-6 minutes on a laptop
    python examples/drift/simulate.py --json results.json --workdir /tmp/drift-sim

The figures are recorded in docs/monitoring.md and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_data import CHANGE, make_drift_power  # noqa: E402

from tidecast.monitoring.drift import detect_drift, load_reference  # noqa: E402
from tidecast.monitoring.retrain import retrain  # noqa: E402
from tidecast.monitoring.run import monitor  # noqa: E402
from tidecast.monitoring.run_spec import monitor_spec, parse_as_of  # noqa: E402
from tidecast.monitoring.steps import monitor_pipeline  # noqa: E402
from tidecast.pipeline import run as run_pipeline  # noqa: E402
from tidecast.serving.history import read_history  # noqa: E402
from tidecast.spec import load_spec  # noqa: E402
from tidecast.tracking.registry import champion_version  # noqa: E402

TRAIN_AS_OF = "2024-06-24 00:00"


def project(workdir: Path, name: str, *, drift: bool) -> Any:
    """A copy of the example in ``workdir/name`` with its data; returns its spec."""
    root = workdir / name
    if root.exists():
        shutil.rmtree(root)
    (root / "data").mkdir(parents=True)
    shutil.copy(HERE / "tidecast.yaml", root / "tidecast.yaml")
    make_drift_power(drift=drift).to_csv(root / "data" / "power.csv", index=False)
    return load_spec(root)


ALARMS = ("drift", "retrained", "retrain_failed")
"""Statuses that are drift alarms (``unknown``/``stale``: a check could not run, or the feed stopped)."""


def days(start: str, count: int) -> list[str]:
    first = pd.Timestamp(start)
    return [str((first + pd.Timedelta(days=k)).date()) + " 00:00" for k in range(1, count + 1)]


def run_days(spec: Any, as_ofs: list[str], *, report: bool, label: str) -> list[dict[str, Any]]:
    rows = []
    for as_of in as_ofs:
        started = time.perf_counter()
        result = monitor(spec, as_of=as_of, report=report)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "as_of": as_of,
                "status": result.status,
                "verdict": result.verdict,
                "data_drift": bool(result.data_drift.get("drift")),
                "model_drift": bool(result.model_drift.get("alarm")),
                "retrained_version": (result.retrain or {}).get("version"),
                "promoted": bool((result.retrain or {}).get("promoted")),
                "champion": result.champion_after,
                "seconds": round(seconds, 1),
            }
        )
        mark = {"ok": " ", "drift": "!", "retrained": "R", "retrain_failed": "X"}.get(result.status, "?")
        print(f"[{label}] {as_of} {mark} v{result.champion_after} ({seconds:4.1f} s) {result.verdict}", flush=True)
    return rows


def detection_delay(spec: Any, change: str, step_hours: int = 3) -> dict[str, Any]:
    """The first ``as_of`` (every ``step_hours`` after the change) at which the drift check fires, run
    against the champion trained before the change."""
    mv = champion_version(spec)
    reference = load_reference(f"models:/{spec.model_name}/{mv.version}", spec=spec)
    change_utc = parse_as_of(change, spec)
    pipeline = monitor_pipeline()
    for hours in range(step_hours, 49, step_hours):
        as_of = change_utc + pd.Timedelta(hours=hours)
        mspec = monitor_spec(spec, as_of=as_of.tz_localize("UTC"))
        features = run_pipeline(pipeline, mspec, until="monitor_features").outputs["monitor_features"]
        report = detect_drift(features, reference, spec.monitoring.data_drift, as_of=as_of)
        if report.drift:
            return {"hours_after_change": hours, "verdict": report.summary()}
    return {"hours_after_change": None, "verdict": "not detected within 48 h"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="Where the project copies go (default: a temp folder).")
    parser.add_argument("--days-after", type=int, default=10, help="Days monitored after the change.")
    parser.add_argument("--month-days", type=int, default=30, help="Days monitored on the unchanged series.")
    parser.add_argument("--json", type=Path, default=None, help="Write the figures here.")
    parser.add_argument("--report", action="store_true", help="Build the run report at each (re)training (slower).")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tidecast-drift-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"working in {workdir}")
    started = time.perf_counter()

    # 1. drift
    spec = project(workdir, "drift", drift=True)
    first = retrain(spec, as_of=parse_as_of(TRAIN_AS_OF, spec).tz_localize("UTC"), report=args.report)
    print(f"[drift] trained on data before {TRAIN_AS_OF}: v{first['version']} {first['alias']}")
    delay = detection_delay(spec, CHANGE)
    print(f"[drift] drift check fires {delay['hours_after_change']} h after the change: {delay['verdict']}")
    change_day = pd.Timestamp(CHANGE)
    n_before = (change_day - pd.Timestamp(TRAIN_AS_OF)).days
    drift_rows = run_days(spec, days(TRAIN_AS_OF, n_before + args.days_after), report=args.report, label="drift")
    flagged = next((r for r in drift_rows if r["status"] in ALARMS), None)
    flagged_at = pd.Timestamp(flagged["as_of"]) if flagged else None
    before = [r for r in drift_rows if pd.Timestamp(r["as_of"]) <= change_day]
    promoted = [r for r in drift_rows if r["promoted"]]
    retrains = [r for r in drift_rows if r["retrained_version"]]

    # 2. no change
    still = project(workdir, "unchanged", drift=False)
    base = retrain(still, as_of=parse_as_of(TRAIN_AS_OF, still).tz_localize("UTC"), report=args.report)
    print(f"[unchanged] trained on data before {TRAIN_AS_OF}: v{base['version']} {base['alias']}")
    month_rows = run_days(still, days(TRAIN_AS_OF, args.month_days), report=args.report, label="unchanged")

    figures = {
        "change": CHANGE,
        "trained_on_data_before": TRAIN_AS_OF,
        "drift": {
            "false_alarms_before_change": sum(r["status"] in ALARMS for r in before),
            "first_flag_as_of": flagged["as_of"] if flagged else None,
            "detection_delay_hours_daily_runs": (flagged_at - change_day).total_seconds() / 3600 if flagged_at is not None else None,
            "detection_delay_hours_3h_checks": delay["hours_after_change"],
            "first_flag_verdict": flagged["verdict"] if flagged else None,
            "retrains": [{"as_of": r["as_of"], "version": r["retrained_version"], "promoted": r["promoted"]} for r in retrains],
            "first_promotion": promoted[0]["as_of"] if promoted else None,
            "runs": drift_rows,
        },
        "unchanged": {
            "days": args.month_days,
            "alarms": sum(r["status"] in ALARMS for r in month_rows),
            "data_drift_flags": sum(r["data_drift"] for r in month_rows),
            "model_drift_alarms": sum(r["model_drift"] for r in month_rows),
            "retrains": sum(bool(r["retrained_version"]) for r in month_rows),
            "runs": month_rows,
        },
        "history_lines": {"drift": len(read_history(spec)), "unchanged": len(read_history(still))},
        "seconds": round(time.perf_counter() - started, 1),
    }
    d, u = figures["drift"], figures["unchanged"]
    print()
    print(f"change at {CHANGE} (local); model trained on data before {TRAIN_AS_OF}")
    print(f"drift scenario: {d['false_alarms_before_change']} alarm(s) before the change; first flagged at {d['first_flag_as_of']} "
          f"({d['detection_delay_hours_daily_runs']} h after the change with daily runs, "
          f"{d['detection_delay_hours_3h_checks']} h with 3-hourly checks)")
    for r in d["retrains"]:
        print(f"  retrain at {r['as_of']}: v{r['version']} {'promoted to champion' if r['promoted'] else 'challenger'}")
    print(f"unchanged series: {u['alarms']} alarm(s) in {u['days']} daily runs "
          f"({u['data_drift_flags']} data drift, {u['model_drift_alarms']} model drift, {u['retrains']} retrains)")
    print(f"{figures['seconds']} s in all")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
