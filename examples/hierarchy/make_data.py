"""Write data/grid.csv: 12 hourly meters under 3 feeders under 2 substations, 60 days, and the
substations' own readings (rows whose series id is the substation), which add up to their meters.

    python examples/hierarchy/make_data.py [--days 60] [--seed 0] [--no-substation-rows]

Each meter has a daily profile of its kind (residential, commercial), a weekly pattern and AR(1)
noise; a feeder-wide factor (a shared weather effect) makes the meters of one feeder move together,
which is what reconciliation can exploit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

FEEDERS = {"F1": "S1", "F2": "S1", "F3": "S2"}
METERS_PER_FEEDER = 4


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    shocks = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return out


def build(days: int = 60, seed: int = 0, substation_rows: bool = True) -> pd.DataFrame:
    """The long frame: ``series_id, feeder, substation, timestamp, load``."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-03-01", periods=days * 24, freq="h")
    hour = np.asarray(ds.hour, dtype=float)
    weekend = np.asarray(ds.weekday >= 5)
    frames = []
    number = 0
    for feeder, substation in FEEDERS.items():
        shared = 1.0 + _ar1(rng, len(ds), phi=0.97, sd=0.08)  # the feeder's weather
        for _ in range(METERS_PER_FEEDER):
            number += 1
            if number % 3:
                shape = 0.4 + 0.6 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2) + np.exp(-0.5 * ((hour - 19.5) / 2) ** 2)
                scale = rng.uniform(1.0, 2.0)
            else:
                shape = 0.3 + 0.9 * np.exp(-0.5 * ((hour - 13.0) / 4.0) ** 2) * np.where(weekend, 0.4, 1.0)
                scale = rng.uniform(10.0, 20.0)
            load = scale * shape * shared * (1.0 + _ar1(rng, len(ds), phi=0.7, sd=0.06))
            frames.append(pd.DataFrame({
                "series_id": f"meter_{number:02d}", "feeder": feeder, "substation": substation,
                "timestamp": ds, "load": np.round(np.clip(load, 0.0, None), 3),
            }))
    frame = pd.concat(frames, ignore_index=True)
    if substation_rows:
        sums = frame.groupby(["substation", "timestamp"], as_index=False)["load"].sum()
        sums = sums.assign(series_id=sums["substation"], feeder=None, load=sums["load"].round(3))
        frame = pd.concat([frame, sums[frame.columns]], ignore_index=True)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-substation-rows", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "grid.csv")
    args = parser.parse_args()
    frame = build(args.days, args.seed, substation_rows=not args.no_substation_rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"{args.out}: {frame['series_id'].nunique()} series, {len(frame):,} rows")


if __name__ == "__main__":
    main()
