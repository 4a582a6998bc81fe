"""The lag-feature settings of the mlforecast models (:mod:`tidecast.models.ml`): default lags,
rolling windows in steps, the frequency as mlforecast takes it, and the check that a frame is
already in the canonical sorted form (so a backtest fold is taken as it is)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.durations import to_steps
from tidecast.errors import ModelError, SpecError
from tidecast.frames import ID, TIME

STATS = ("mean", "std", "min", "max")


def natural_lag(freq: str) -> int:
    """The lag added to 1, 2, 3 by default: a day of steps for fixed frequencies, the season for calendar ones."""
    if calendar.is_fixed(freq):
        return int(pd.Timedelta(days=1) // calendar.info(freq).nominal)
    return calendar.season_length(freq)


def mlforecast_freq(freq: str) -> Any:
    """``freq`` as mlforecast takes it: the string pandas knows, or the offset of ``C:US`` (holidays)."""
    return calendar.offset_of(freq) if ":" in freq else freq


def model_steps(value: Any, freq: str, field: str, name: str) -> int:
    try:
        steps = to_steps(value, freq, field=field)
    except SpecError as exc:
        raise ModelError(f"candidate '{name}': {exc.message}") from None
    return steps


def norm_rolling(rolling: Any, freq: str, name: str) -> list[tuple[int, tuple[str, ...]]]:
    """``[(window_steps, stats), ...]`` from spec objects or dicts."""
    out = []
    for i, item in enumerate(rolling or []):
        if isinstance(item, dict):
            window, stats = item.get("window"), item.get("stats", ["mean"])
        else:
            window, stats = getattr(item, "window", None), getattr(item, "stats", ["mean"])
        if window is None:
            raise ModelError(f"candidate '{name}': rolling[{i}] needs a window")
        w = model_steps(window, freq, f"rolling[{i}].window", name)
        if w < 1:
            raise ModelError(f"candidate '{name}': rolling[{i}].window must be at least one step")
        bad = [s for s in stats if s not in STATS]
        if bad:
            raise ModelError(f"candidate '{name}': rolling[{i}].stats: unknown {bad} (use {', '.join(STATS)})")
        out.append((w, tuple(stats)))
    return out


Runs = tuple[np.ndarray, np.ndarray]
"""The start and stop row of every series of a frame sorted by series (:func:`series_bounds`)."""


def canonical_starts(df: pd.DataFrame) -> np.ndarray | None:
    """The first row of every series when ``df`` is already as :func:`check_frame` leaves it
    (``unique_id`` of str, ``ds`` datetime64, rows sorted by ``unique_id, ds``), else ``None``.

    The ids are compared row to row once; their type and order are checked on each series' first
    row only (a row equal to a str is a str), which is what makes a backtest fold's millions of rows
    cheap to take as they are."""
    if df.empty or df[ID].dtype != object:
        return None
    dtype = df[TIME].dtype
    if not (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        return None
    ids = df[ID].to_numpy()
    new = ids[1:] != ids[:-1]
    starts = np.flatnonzero(np.concatenate(([True], new)))
    firsts = ids[starts]
    if pd.api.types.infer_dtype(firsts, skipna=False) != "string" or not np.all(firsts[1:] > firsts[:-1]):
        return None
    ns = df[TIME].to_numpy().view(np.int64)  # NaT the smallest, as check_frame's sortedness test reads it
    if not np.all(new | (ns[1:] >= ns[:-1])):
        return None
    return starts
