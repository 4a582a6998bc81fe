"""The power series of the drift example, with and without a change of regime.

``make_drift_power(drift=True)`` is ``tidecast.datasets.make_power`` (hourly, one customer, Paris
wall-clock times) where, from ``change`` (local midnight) on, the load is ``level`` times higher
and gains a midday plateau of ``plateau_kw`` (new equipment running 10:00-16:00): a level shift
and a change of the daily shape. ``drift=False`` gives the same series unchanged.

    python examples/drift/make_data.py            # writes data/power.csv (drifting), data/power_unchanged.csv
                                                  # and data/weather_forecast.csv (the 48 h after the last reading)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from tidecast.datasets import make_power, make_weather_forecast

START = "2024-04-01"
DAYS = 120
CHANGE = "2024-07-01 00:00"
LEVEL = 1.25
PLATEAU_KW = 12.0


def make_drift_power(
    *,
    drift: bool = True,
    days: int = DAYS,
    start: str = START,
    change: str = CHANGE,
    level: float = LEVEL,
    plateau_kw: float = PLATEAU_KW,
    seed: int = 7,
) -> pd.DataFrame:
    """Hourly ``timestamp, power_kw, temperature`` (see the module docstring)."""
    frame = make_power(days=days, seed=seed, freq="1h", start=start)
    if not drift:
        return frame
    wall = pd.to_datetime(frame["timestamp"])
    after = (wall >= pd.Timestamp(change)).to_numpy()
    hour = (wall.dt.hour + wall.dt.minute / 60.0).to_numpy()
    plateau = plateau_kw / (1.0 + np.exp(-(hour - 10.0) * 3.0)) / (1.0 + np.exp((hour - 16.0) * 3.0))
    values = frame["power_kw"].to_numpy(dtype=float)
    changed = np.round(values * level + plateau, 3)
    frame["power_kw"] = np.where(after & np.isfinite(values), changed, values)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("data"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    make_drift_power(drift=True).to_csv(args.out / "power.csv", index=False)
    make_drift_power(drift=False).to_csv(args.out / "power_unchanged.csv", index=False)
    # what `tidecast monitor` (without --as-of) reads for the next day's temperature: serving.future
    make_weather_forecast(days=DAYS, seed=7, freq="1h", start=START).to_csv(args.out / "weather_forecast.csv", index=False)
    print(
        f"wrote {args.out / 'power.csv'} (change at {CHANGE}), {args.out / 'power_unchanged.csv'} "
        f"and {args.out / 'weather_forecast.csv'}"
    )


if __name__ == "__main__":
    main()
