"""Reproducible synthetic data sets for examples and tests.

>>> power = make_power(days=7)
>>> list(power.columns)
['timestamp', 'power_kw', 'temperature']

``python -m tidecast.datasets power --out examples/power/data/power.csv`` writes the reference
data set of ``examples/power`` (400 days of 5-minute readings, seed 7), and
``python -m tidecast.datasets weather-forecast --out examples/power/data/weather_forecast.csv`` the
temperature forecast for the 48 hours after its last reading.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tidecast.durations import freq_timedelta

__all__ = ["make_meters", "make_power", "make_weather_forecast"]

_TZ = "Europe/Paris"


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """An AR(1) path with stationary standard deviation ``sd``."""
    shocks = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sd)
    for i in range(1, n):  # a plain loop: ~0.05 s for 115k steps
        out[i] = phi * out[i - 1] + shocks[i]
    return out


def _bump(x: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - centre) / width) ** 2)


def _climate(day_of_year: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """The expected temperature (°C): yearly cycle (coldest mid-January), daily cycle (warmest mid-afternoon)."""
    return (
        12.5 - 8.5 * np.cos(2 * np.pi * (day_of_year - 15) / 365.25)
        + 4.0 * np.cos(2 * np.pi * (hour - 15.0) / 24.0)
    )


def _french_holidays(days: pd.DatetimeIndex) -> np.ndarray:
    import holidays

    years = range(days.year.min(), days.year.max() + 1)
    calendar = holidays.country_holidays("FR", years=years)
    return days.isin(pd.DatetimeIndex([pd.Timestamp(d) for d in calendar]))


def _pick_apart(rng: np.random.Generator, n: int, count: int, taken: np.ndarray, margin: int) -> list[int]:
    """``count`` positions in ``[margin, n - margin)`` at least ``margin`` steps from any taken one."""
    picked: list[int] = []
    for pos in rng.permutation(np.arange(margin, n - margin)):
        if len(picked) == count:
            break
        if not taken[pos - margin:pos + margin + 1].any():
            picked.append(int(pos))
            taken[pos] = True
    return picked


def make_power(days: int = 400, seed: int = 7, freq: str = "5min", start: str = "2024-01-01") -> pd.DataFrame:
    """Power readings of one commercial customer, as a meter would export them.

    Columns: ``timestamp`` (naive Europe/Paris wall-clock strings, so October repeats an hour and
    March skips one), ``power_kw`` and ``temperature`` (°C). The load has a daily profile (night
    low, morning and evening peaks), lower weekends and French public holidays, a heating load
    when it is cold, and AR(1) noise. Then it is damaged like real meter data: about 0.5 % of
    readings missing (single ones and a few gaps of up to one hour; some rows kept with an
    empty value), about 0.2 % of rows duplicated with a slightly different value, and about ten
    spikes of 3-5 times the value. The same seed gives the same frame.

    >>> make_power(days=2, seed=1).shape[1]
    3
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    rng = np.random.default_rng(seed)
    step = freq_timedelta(freq)
    begin = pd.Timestamp(start).tz_localize(_TZ)
    end = (pd.Timestamp(start) + pd.Timedelta(days=days)).tz_localize(_TZ)
    instants = pd.date_range(begin.tz_convert("UTC"), end.tz_convert("UTC"), freq=step, inclusive="left")
    local = instants.tz_convert(_TZ)
    n = len(local)

    hour = np.asarray(local.hour + local.minute / 60.0 + local.second / 3600.0, dtype="float64")
    local_days = local.tz_localize(None).normalize()
    weekday = np.asarray(local.weekday)
    day_of_year = np.asarray(local.dayofyear, dtype="float64")
    off_day = (weekday >= 5) | _french_holidays(local_days)

    # temperature: yearly cycle (coldest mid-January), daily cycle (warmest mid-afternoon), weather
    steps_per_day = pd.Timedelta("1D") / step
    weather = _ar1(rng, n, phi=float(np.exp(-1.0 / (3.0 * steps_per_day))), sd=3.0)
    temperature = _climate(day_of_year, hour) + weather + rng.normal(0.0, 0.15, n)

    # load: base + working-day activity with morning and evening peaks + heating/cooling
    activity = 1.0 / (1.0 + np.exp(-(hour - 7.0) * 2.5)) * 1.0 / (1.0 + np.exp((hour - 21.0) * 1.8))
    profile = 18.0 + 22.0 * activity + 14.0 * _bump(hour, 8.5, 1.2) + 17.0 * _bump(hour, 19.0, 1.6)
    weekend_profile = 18.0 + 9.0 * activity + 5.0 * _bump(hour, 10.5, 2.0) + 10.0 * _bump(hour, 19.5, 1.8)
    load = np.where(off_day, weekend_profile, profile)
    heating = 1.6 * np.clip(15.0 - temperature, 0.0, None) * (0.6 + 0.4 * activity)
    cooling = 1.2 * np.clip(temperature - 25.0, 0.0, None) * activity
    noise = _ar1(rng, n, phi=0.9, sd=0.04)
    power = (load + heating + cooling) * (1.0 + noise)
    power = np.clip(power, 0.5, None)

    frame = pd.DataFrame({
        "timestamp": local.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S"),
        "power_kw": np.round(power, 3),
        "temperature": np.round(temperature, 1),
    })

    # -- damage: missing readings (a few gaps of up to an hour, then single ones)
    taken = np.zeros(n, dtype=bool)
    target_missing = max(1, round(0.005 * n))
    per_hour = max(1, int(pd.Timedelta("1h") / step))
    n_gaps = min(8, max(1, n // 20000))
    drop = np.zeros(n, dtype=bool)
    for pos in _pick_apart(rng, n, n_gaps, taken.copy(), margin=per_hour * 3):
        length = int(rng.integers(max(1, per_hour // 4), per_hour + 1))
        drop[pos:pos + length] = True
    taken = drop.copy()
    singles = _pick_apart(rng, n, max(0, target_missing - int(drop.sum())), np.convolve(taken, np.ones(5), "same") > 0, 2)
    empty_value = rng.random(len(singles)) < 0.1
    for pos, empty in zip(singles, empty_value, strict=True):
        if empty:
            frame.loc[pos, "power_kw"] = np.nan
        else:
            drop[pos] = True
        taken[pos] = True

    # spikes: 3-5 times the value
    spikes = _pick_apart(rng, n, max(1, round(10 * n / 115200)), np.convolve(taken, np.ones(5), "same") > 0, 3)
    frame.loc[spikes, "power_kw"] = np.round(frame.loc[spikes, "power_kw"] * rng.uniform(3.0, 5.0, len(spikes)), 3)
    taken[spikes] = True

    # duplicated rows: same timestamp, slightly different value, right after the original
    free = np.flatnonzero(~taken & ~drop & frame["power_kw"].notna().to_numpy())
    duplicated = np.sort(rng.choice(free, size=min(len(free), max(1, round(0.002 * n))), replace=False))
    copies = frame.loc[duplicated].copy()
    copies["power_kw"] = np.round(copies["power_kw"] * (1.0 + rng.normal(0.0, 0.01, len(copies))), 3)

    order = np.concatenate([np.arange(n, dtype="float64"), duplicated + 0.5])
    damaged = pd.concat([frame, copies], ignore_index=True)
    keep = np.concatenate([~drop, np.ones(len(copies), dtype=bool)])
    damaged = damaged[keep].iloc[np.argsort(order[keep], kind="stable")]
    return damaged.reset_index(drop=True)


def make_weather_forecast(
    days: int = 400, seed: int = 7, freq: str = "5min", start: str = "2024-01-01", hours: int = 48
) -> pd.DataFrame:
    """The temperature forecast issued after the last reading of ``make_power(days, seed, freq, start)``.

    Columns: ``timestamp`` (naive Europe/Paris wall-clock strings, like the readings) and
    ``temperature`` (°C) for the ``hours`` after the last reading, one row per step: what a weather
    service would publish, so that a model with ``temperature`` known in the future can forecast
    the next day. The forecast is the climate (the yearly and daily cycles of :func:`make_power`)
    plus the last reading's departure from it, fading over about three days, plus a forecast error
    that grows with the lead time. The same arguments give the same frame.

    >>> fc = make_weather_forecast(days=3, seed=1, hours=2)
    >>> len(fc), list(fc.columns)
    (24, ['timestamp', 'temperature'])
    """
    if hours < 1:
        raise ValueError("hours must be at least 1")
    readings = make_power(days=days, seed=seed, freq=freq, start=start)
    step = freq_timedelta(freq)
    last = pd.Timestamp(readings["timestamp"].iloc[-1]).tz_localize(_TZ, ambiguous=False)
    last_utc = last.tz_convert("UTC")
    steps = int(pd.Timedelta(hours=hours) / step)
    instants = pd.date_range(last_utc + step, periods=steps, freq=step)
    local = instants.tz_convert(_TZ)

    def climate(times: pd.DatetimeIndex) -> np.ndarray:
        hour = np.asarray(times.hour + times.minute / 60.0 + times.second / 3600.0, dtype="float64")
        return _climate(np.asarray(times.dayofyear, dtype="float64"), hour)

    departure = float(readings["temperature"].iloc[-1]) - float(climate(pd.DatetimeIndex([last]))[0])
    lead = np.arange(1, steps + 1, dtype="float64")
    steps_per_day = pd.Timedelta("1D") / step
    fading = np.exp(-lead / (3.0 * steps_per_day))
    rng = np.random.default_rng([seed, 1])  # its own stream: the readings' draws stay as they are
    error = np.cumsum(rng.normal(0.0, 0.6 / np.sqrt(steps_per_day), steps))  # about ±0.6 °C after a day
    temperature = climate(local) + departure * fading + error
    return pd.DataFrame({
        "timestamp": local.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S"),
        "temperature": np.round(temperature, 1),
    })


def make_meters(n_series: int = 5, days: int = 60, freq: str = "h", seed: int = 0) -> pd.DataFrame:
    """Long-format readings of several meters with different start dates and lengths.

    Columns: ``series_id`` (``meter_001``...), ``timestamp`` (naive UTC), ``load`` and
    ``customer_type`` (``residential``, ``commercial`` or ``industrial``, constant per meter).

    >>> make_meters(3, days=10).groupby("series_id").size().size
    3
    """
    if n_series < 1 or days < 2:
        raise ValueError("n_series must be at least 1 and days at least 2")
    rng = np.random.default_rng(seed)
    step = freq_timedelta(freq)
    steps_per_day = max(1, int(pd.Timedelta("1D") / step))
    origin = pd.Timestamp("2024-01-01")
    kinds = ("residential", "commercial", "industrial")
    frames = []
    for i in range(n_series):
        kind = kinds[int(rng.integers(0, len(kinds)))]
        start_day = int(rng.integers(0, max(1, days // 3)))
        n_days = int(rng.integers(max(2, days // 2), days - start_day + 1))
        ds = pd.date_range(origin + pd.Timedelta(days=start_day), periods=n_days * steps_per_day, freq=step)
        hour = np.asarray(ds.hour + ds.minute / 60.0, dtype="float64")
        weekend = np.asarray(ds.weekday >= 5)
        scale = {"residential": 1.5, "commercial": 25.0, "industrial": 120.0}[kind] * rng.uniform(0.7, 1.3)
        if kind == "residential":
            shape = 0.4 + 0.5 * _bump(hour, 7.5, 1.0) + 1.0 * _bump(hour, 19.5, 2.0)
        elif kind == "commercial":
            shape = 0.3 + 0.9 * _bump(hour, 13.0, 4.0) * np.where(weekend, 0.4, 1.0)
        else:
            shape = 0.8 + 0.2 * (np.sin(2 * np.pi * hour / 24.0) > 0) * np.where(weekend, 0.5, 1.0)
        load = scale * shape * (1.0 + _ar1(rng, len(ds), phi=0.8, sd=0.05))
        frames.append(pd.DataFrame({
            "series_id": f"meter_{i + 1:03d}",
            "timestamp": ds,
            "load": np.round(np.clip(load, 0.0, None), 3),
            "customer_type": kind,
        }))
    return pd.concat(frames, ignore_index=True)


if __name__ == "__main__":
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m tidecast.datasets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="dataset", required=True)
    power_cmd = sub.add_parser("power", help="one customer's 5-minute power readings (examples/power)")
    power_cmd.add_argument("--out", required=True, type=Path)
    power_cmd.add_argument("--days", type=int, default=400)
    power_cmd.add_argument("--seed", type=int, default=7)
    power_cmd.add_argument("--freq", default="5min")
    weather_cmd = sub.add_parser(
        "weather-forecast", help="the temperature forecast after the last power reading (examples/power)"
    )
    weather_cmd.add_argument("--out", required=True, type=Path)
    weather_cmd.add_argument("--days", type=int, default=400, help="the readings' length (as for `power`)")
    weather_cmd.add_argument("--seed", type=int, default=7, help="the readings' seed (as for `power`)")
    weather_cmd.add_argument("--freq", default="5min")
    weather_cmd.add_argument("--hours", type=int, default=48, help="how far the forecast reaches")
    meters_cmd = sub.add_parser("meters", help="several meters in long format")
    meters_cmd.add_argument("--out", required=True, type=Path)
    meters_cmd.add_argument("--series", type=int, default=5)
    meters_cmd.add_argument("--days", type=int, default=60)
    meters_cmd.add_argument("--seed", type=int, default=0)
    meters_cmd.add_argument("--freq", default="h")
    args = parser.parse_args()

    if args.dataset == "power":
        data = make_power(days=args.days, seed=args.seed, freq=args.freq)
    elif args.dataset == "weather-forecast":
        data = make_weather_forecast(days=args.days, seed=args.seed, freq=args.freq, hours=args.hours)
    else:
        data = make_meters(n_series=args.series, days=args.days, freq=args.freq, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".parquet":
        data.to_parquet(args.out, index=False)
    else:
        data.to_csv(args.out, index=False)
    print(f"wrote {len(data)} rows to {args.out}")
