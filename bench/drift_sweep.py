"""The data-drift check alone, through a year: false alarms on the unchanged series, detection of a change.

For each of 12 starting days (every 30 days of a year of hourly ``make_power`` data, cleaned as
the example project cleans it), the reference profile is computed from the 60 days before, then:

* the drift check runs on each of the next 30 days (one-day windows) of the *unchanged* series:
  the days it flags are false alarms (no retraining in between, so the reference ages by up
  to a month: seasonal transitions, when the heating switches on or off, show up here);
* on the first day after the 60, the check runs on the series with a level shift (x1.25) and
  with the level shift plus a midday plateau (the drift example's change).

    python bench/drift_sweep.py                          # about a minute
    python bench/drift_sweep.py --margin 2.0 --min-tests 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tidecast.data.clean import clean
from tidecast.data.long_format import to_long
from tidecast.datasets import make_power
from tidecast.monitoring.drift import detect_drift
from tidecast.spec import parse_spec
from tidecast.training.reference import reference_profile

SPEC = {
    "project": "sweep",
    "data": {
        "source": "power.csv",
        "time_column": "timestamp",
        "target_column": "power_kw",
        "frequency": "1h",
        "timezone": "Europe/Paris",
        "exogenous": [{"name": "temperature", "known_in_future": True}],
    },
    "clean": {"gaps": {"method": "interpolate", "max_gap": "6h"}, "outliers": {"method": "hampel", "action": "clip", "threshold": 5, "window": "6h"}},
    "features": {"calendar": ["hour", "weekday", "holiday"], "holidays_country": "FR"},
    "forecast": {"input_window": "24h", "horizon": "24h"},
    "models": [{"name": "snaive", "kind": "seasonal_naive", "params": {"season_length": "1d"}}],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margin", type=float, default=None, help="calibration_margin (default: the spec's)")
    parser.add_argument("--min-tests", type=int, default=None, help="min_tests (default: the spec's)")
    args = parser.parse_args()
    spec = parse_spec(SPEC, root=Path("."))
    drift_spec = spec.monitoring.data_drift
    updates = {k: v for k, v in {"calibration_margin": args.margin, "min_tests": args.min_tests}.items() if v is not None}
    drift_spec = drift_spec.model_copy(update=updates)
    started = time.perf_counter()
    raw = make_power(days=400, seed=7, freq="1h")
    frame = clean(to_long(raw, spec.data, spec.target, source_name="power"), spec.clean, "1h").frame
    local_hour = frame["ds"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris").dt.hour.to_numpy(dtype=float)
    plateau = 12.0 / (1 + np.exp(-(local_hour - 10) * 3)) / (1 + np.exp((local_hour - 16) * 3))
    rows = []
    for start in range(0, 331, 30):
        t0 = frame["ds"].min() + pd.Timedelta(days=start)
        end = t0 + pd.Timedelta(days=60)
        reference = reference_profile(frame[(frame["ds"] >= t0) & (frame["ds"] < end)], spec)
        flagged = []
        for day in range(1, 31):
            as_of = end + pd.Timedelta(days=day)
            report = detect_drift(frame[frame["ds"] < as_of], reference, drift_spec, as_of=as_of)
            if report.drift:
                flagged.append(", ".join(sorted({c.column for c in report.columns if c.drift})))
        as_of = end + pd.Timedelta(days=1)
        part = frame[frame["ds"] < as_of].copy()
        after = (part["ds"] >= end).to_numpy()
        part.loc[after, "y"] *= 1.25
        level = detect_drift(part, reference, drift_spec, as_of=as_of).drift
        part.loc[after, "y"] += plateau[part.index[after]]
        both = detect_drift(part, reference, drift_spec, as_of=as_of).drift
        rows.append({
            "monitored from": str(end.date()),
            "false alarms /30": len(flagged),
            "columns": "; ".join(sorted(set(flagged))) or "-",
            "x1.25 day 1": "yes" if level else "no",
            "x1.25 + plateau day 1": "yes" if both else "no",
        })
    table = pd.DataFrame(rows)
    print(f"calibration_margin {drift_spec.calibration_margin}, min_tests {drift_spec.min_tests}, window {drift_spec.window}")
    print(table.to_string(index=False))
    print(
        f"false alarms: {table['false alarms /30'].sum()} of {30 * len(table)} daily checks "
        f"({(table['false alarms /30'] > 0).sum()} of {len(table)} months with any); "
        f"day-1 detection: x1.25 {(table['x1.25 day 1'] == 'yes').sum()}/{len(table)}, "
        f"x1.25 + plateau {(table['x1.25 + plateau day 1'] == 'yes').sum()}/{len(table)}; "
        f"{time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
