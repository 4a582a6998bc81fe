"""The frame schema every layer speaks, and the helpers on it that know nothing of models.

Data frames are in long format, as in statsforecast/mlforecast:

* history: ``unique_id`` (str), ``ds`` (tz-naive UTC timestamps on the spec's frequency), ``y``
  (float), then exogenous columns;
* future exogenous (``X_future``): ``unique_id``, ``ds`` and the known-in-future columns for the
  ``h`` steps after each series' last timestamp;
* forecasts: ``unique_id``, ``ds``, ``yhat`` and one column per requested quantile named by
  :func:`quantile_column` (``q0.1``, ``q0.9``...); :func:`quantile_of` is the one parser of such
  names.

A leaf: it imports nothing of tidecast but :mod:`tidecast.calendar`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
from pandas.tseries.offsets import Tick

from tidecast import calendar

ID, TIME, TARGET, POINT = "unique_id", "ds", "y", "yhat"

_QUANTILE_RE = re.compile(r"^q(\d*\.?\d+(?:e-?\d+)?)$")


def finite_float(value: object) -> float | None:
    """A cell, tag or metric as a finite float; None for text, a missing value, NaN or an infinity."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def quantile_column(q: float) -> str:
    """The forecast column holding quantile ``q``: ``quantile_column(0.1) == 'q0.1'``."""
    return f"q{q:g}"


def quantile_of(column: object) -> float | None:
    """The quantile a forecast column holds (``quantile_of('q0.1') == 0.1``), or ``None`` when
    ``column`` is not a quantile column (``yhat``, ``quality``, ``q1.5``, ``qx``...)."""
    match = _QUANTILE_RE.match(str(column))
    if match is None:
        return None
    q = float(match.group(1))
    return q if math.isfinite(q) and 0 < q < 1 else None


def quantile_columns(columns: Iterable[object]) -> list[str]:
    """The quantile columns among ``columns`` (a frame or its column names), by increasing quantile."""
    found = [(q, str(c)) for c in columns if (q := quantile_of(c)) is not None]
    return [c for _, c in sorted(found)]


def quantiles_in(columns: Iterable[object]) -> tuple[float, ...]:
    """The quantiles whose columns are among ``columns``, increasing."""
    return tuple(sorted(q for c in columns if (q := quantile_of(c)) is not None))


def is_sorted(df: pd.DataFrame) -> bool:
    """Whether ``df`` (``unique_id`` as str, ``ds`` timestamps) is already sorted by ``unique_id, ds``."""
    if len(df) < 2:
        return True
    ids = df[ID].to_numpy()
    same = ids[1:] == ids[:-1]
    if not (same | (ids[1:] > ids[:-1])).all():
        return False
    ns = pd.DatetimeIndex(df[TIME]).asi8  # one unit within a column: comparisons stay valid
    return bool((~same | (ns[1:] >= ns[:-1])).all())


def series_bounds(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop row of each run of equal ids in ``ids`` (rows grouped by series, e.g. sorted)."""
    if not len(ids):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    return np.r_[0, change], np.r_[change, len(ids)]


def contiguous_runs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`series_bounds` of ``ids`` when each id's rows are contiguous (a frame sorted by
    series), else ``None`` (an id in several runs: use a groupby)."""
    try:
        starts, stops = series_bounds(ids)
        return (starts, stops) if len(set(ids[starts].tolist())) == len(starts) else None
    except TypeError:
        return None


def tail_per_series(
    df: pd.DataFrame, steps: int | None, *, runs: tuple[np.ndarray, np.ndarray] | None = None
) -> pd.DataFrame:
    """The last ``steps`` rows of every series (all rows when ``steps`` is None), in their order.

    When each series' rows are contiguous (a frame sorted by series, the usual case) the rows are
    picked by position in numpy, several times faster than ``groupby(...).tail`` on millions of rows.
    ``runs``: those series' start and stop rows when the caller has them (:func:`series_bounds`)."""
    if steps is None or df.empty:
        return df.reset_index(drop=True)
    ids = df[ID].to_numpy()
    runs = contiguous_runs(ids) if runs is None else runs
    if runs is None:
        return df.groupby(ID, sort=False, observed=True).tail(int(steps)).reset_index(drop=True)
    starts, stops = runs
    lengths = stops - starts
    from_end = np.repeat(stops, lengths) - np.arange(len(ids))  # 1 on each series' last row
    keep = from_end <= int(steps)
    if keep.all():
        return df.reset_index(drop=True)
    return df.iloc[np.flatnonzero(keep)].reset_index(drop=True)


def stitch(stored: pd.DataFrame | None, history: pd.DataFrame, freq: str, keep: int | None) -> pd.DataFrame:
    """The stored training tail followed by ``history`` (history wins on overlapping ``ds``).

    The stored tail of a series is used only when it is contiguous with (or overlaps) that
    series' ``history``: after a gap the history alone is the series. Each series keeps at most
    its last ``keep`` rows.
    """
    if stored is None or stored.empty:
        return tail_per_series(history, keep)
    pieces = []
    stored_by_id = dict(tuple(stored.groupby(ID, sort=False, observed=True)))
    for uid, hist in history.groupby(ID, sort=False, observed=True):
        old = stored_by_id.get(uid)
        if old is not None and not old.empty and calendar.shift(old[TIME].max(), 1, freq) >= hist[TIME].min():
            old = old[old[TIME] < hist[TIME].min()]
            hist = pd.concat([old[[c for c in hist.columns if c in old.columns]], hist], ignore_index=True)
        pieces.append(hist)
    out = pd.concat(pieces, ignore_index=True)
    return tail_per_series(out, keep)


def future_index(last: pd.DataFrame, h: int, freq: str) -> pd.DataFrame:
    """``unique_id, ds`` rows for the ``h`` steps after each series' last timestamp in ``last``."""
    ends = last.groupby(ID, observed=True)[TIME].max()
    offset = calendar.offset_of(freq)
    if len(ends) and isinstance(offset, Tick) and isinstance(ends.dtype, np.dtype) and ends.dtype.kind == "M":
        # fixed steps, tz-naive: every series' timestamps at once (a frame per series costs ~3 ms each)
        firsts = ends.to_numpy().astype("datetime64[ns]")
        steps = np.arange(1, h + 1, dtype=np.int64) * offset.nanos
        flat = (firsts.view(np.int64)[:, None] + steps[None, :]).reshape(-1).view("datetime64[ns]")
        return pd.DataFrame({ID: np.repeat(ends.index.to_numpy(), h), TIME: flat})
    frames = [
        pd.DataFrame({ID: uid, TIME: calendar.future_dates(end, h, freq)})
        for uid, end in ends.items()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({ID: [], TIME: []})


def future_grid(ends: pd.DatetimeIndex, h: int, freq: str) -> pd.DatetimeIndex:
    """The ``h`` timestamps after each of ``ends``, flat (``len(ends) * h``, series-major), like
    :func:`future_index` but without a frame per series."""
    offset = calendar.offset_of(freq)
    if isinstance(offset, Tick):
        ends = ends.as_unit("ns")
        steps = np.arange(1, h + 1, dtype=np.int64) * offset.nanos
        flat = (ends.asi8[:, None] + steps[None, :]).reshape(-1)
        grid = pd.DatetimeIndex(flat.view("datetime64[ns]"))
        return grid.tz_localize("UTC").tz_convert(ends.tz) if ends.tz is not None else grid
    parts = [calendar.future_dates(end, h, freq) for end in ends]
    return parts[0].append(parts[1:]) if parts else pd.DatetimeIndex([], tz=ends.tz)
