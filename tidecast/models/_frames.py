"""Small frame helpers shared by the model adapters (not public API); the ones that know
nothing of models live in :mod:`tidecast.frames`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd
from pandas.tseries.offsets import Tick

from tidecast import calendar
from tidecast.errors import ModelError
from tidecast.frames import ID, POINT, TARGET, TIME, future_index, is_sorted, quantile_column


def default_season_length(freq: str) -> int:
    """One day in steps for sub-daily data, 7 for daily data, 5 for business days, 52 for weekly, 12 for
    monthly, 4 for quarterly, else 1 (:func:`tidecast.calendar.season_length`)."""
    return calendar.season_length(freq)



def check_frame(df: pd.DataFrame, name: str, *, what: str = "training data", target: bool = True) -> pd.DataFrame:
    """``df`` sorted by ``unique_id, ds`` with the required columns, ``unique_id`` as str."""
    required = [ID, TIME, TARGET] if target else [ID, TIME]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ModelError(f"candidate '{name}': the {what} lacks column(s) {', '.join(missing)}")
    if df.empty:
        raise ModelError(f"candidate '{name}': the {what} is empty")
    out = df.copy()
    ids = out[ID]
    if ids.dtype != object or pd.api.types.infer_dtype(ids, skipna=False) != "string":  # str ids: no conversion pass
        out[ID] = ids.astype(str)
    if not pd.api.types.is_datetime64_any_dtype(out[TIME]):
        out[TIME] = pd.to_datetime(out[TIME])
    if target:
        out[TARGET] = out[TARGET].astype(float)
    if is_sorted(out):  # the usual case (canonical frames, serving): no sort, same result
        return out.reset_index(drop=True)
    return out.sort_values([ID, TIME], kind="stable").reset_index(drop=True)


def history_arrays(df: pd.DataFrame, name: str, *, what: str = "history") -> tuple[np.ndarray, pd.DatetimeIndex, np.ndarray]:
    """``unique_id`` (str), ``ds`` and ``y`` of ``df`` as arrays sorted by ``unique_id, ds``: what
    :func:`check_frame` checks, without building a frame (the prediction hot path)."""
    missing = [c for c in (ID, TIME, TARGET) if c not in df.columns]
    if missing:
        raise ModelError(f"candidate '{name}': the {what} lacks column(s) {', '.join(missing)}")
    if df.empty:
        raise ModelError(f"candidate '{name}': the {what} is empty")
    ids = df[ID].to_numpy()
    if ids.dtype != object or pd.api.types.infer_dtype(ids, skipna=False) != "string":
        ids = df[ID].astype(str).to_numpy()
    column = df[TIME]
    times = pd.DatetimeIndex(column if pd.api.types.is_datetime64_any_dtype(column) else pd.to_datetime(column))
    try:
        y = df[TARGET].to_numpy(float)
    except (TypeError, ValueError):
        raise ModelError(f"candidate '{name}': the {what}'s column '{TARGET}' is not numeric") from None
    same = ids[1:] == ids[:-1]
    ns = times.asi8
    if not ((same | (ids[1:] > ids[:-1])).all() and (~same | (ns[1:] >= ns[:-1])).all()):
        codes, _ = pd.factorize(ids, sort=True)
        order = np.lexsort((ns, codes))  # stable, like sort_values(kind="stable")
        ids, times, y = ids[order], times[order], y[order]
    return ids, times, y


def regular_grid(
    df: pd.DataFrame, freq: str, name: str, *, runs: tuple[np.ndarray, np.ndarray] | None = None
) -> bool:
    """For ``df`` sorted by ``unique_id, ds`` (as :func:`check_frame` leaves it): a
    :class:`ModelError` naming the series and time of a duplicated timestamp; ``True`` when every
    series steps exactly ``freq`` from row to row; ``False`` when it does not, or when ``freq`` has
    no fixed length (months...), so the caller checks in its own way. ``runs``: the series' start
    and stop rows when the caller has them (:func:`series_bounds`), so the ids are not compared again."""
    offset = calendar.offset_of(freq)
    if not isinstance(offset, Tick) or len(df) < 2:
        return isinstance(offset, Tick)
    ids = df[ID].to_numpy()
    ns = pd.DatetimeIndex(df[TIME]).as_unit("ns").asi8
    if runs is None:
        same = ids[1:] == ids[:-1]
    else:
        same = np.ones(len(df) - 1, dtype=bool)
        same[runs[0][1:] - 1] = False
    steps = np.diff(ns)
    dup = np.flatnonzero(same & (steps == 0))
    if len(dup):
        row = int(dup[0]) + 1
        raise ModelError(
            f"candidate '{name}': the training data has several rows for series '{ids[row]}' at {df[TIME].iloc[row]}"
        )
    return bool((steps[same] == offset.nanos).all())


def level_of(q: float) -> float:
    """The central interval level (0-100) whose bound is quantile ``q``."""
    level = abs(2 * q - 1) * 100
    rounded = round(level, 10)
    return int(rounded) if float(rounded).is_integer() else rounded


def z_of(q: float) -> float:
    return NormalDist().inv_cdf(q)


def check_quantiles(quantiles: Sequence[float], name: str) -> list[float]:
    qs = [float(q) for q in quantiles]
    bad = [q for q in qs if not 0 < q < 1]
    if bad:
        raise ModelError(f"candidate '{name}': quantiles must lie strictly between 0 and 1, got {bad}")
    return qs


def no_intervals(name: str, quantiles: Sequence[float]) -> None:
    """Raise when quantiles are asked from a model without native intervals."""
    if quantiles:
        raise ModelError(
            f"candidate '{name}' has no native prediction intervals: wrap it in "
            "tidecast.models.conformal.ConformalForecaster to get quantiles"
        )


def finish(frame: pd.DataFrame, quantiles: Iterable[float]) -> pd.DataFrame:
    """Column order ``unique_id, ds, yhat, q...``, sorted, with clean dtypes."""
    cols = [ID, TIME, POINT] + [quantile_column(q) for q in quantiles]
    out = frame[cols].sort_values([ID, TIME], kind="stable").reset_index(drop=True)
    out[ID] = out[ID].astype(str)
    for c in cols[2:]:
        out[c] = out[c].astype(float)
    return out


def future_frame(last: pd.DataFrame, h: int, freq: str) -> pd.DataFrame:
    out = future_index(last, h, freq)
    out[ID] = out[ID].astype(str)
    return out


def require_future_exog(
    name: str, fut: pd.DataFrame, X_future: pd.DataFrame | None, columns: Sequence[str]
) -> pd.DataFrame:
    """``fut`` (``unique_id, ds`` of the horizon) joined with the needed ``X_future`` columns."""
    if not columns:
        return fut
    if X_future is None:
        raise ModelError(
            f"candidate '{name}': X_future with column(s) {', '.join(columns)} is needed for the forecast horizon"
        )
    missing = [c for c in columns if c not in X_future.columns]
    if missing:
        raise ModelError(f"candidate '{name}': X_future lacks column(s) {', '.join(missing)}")
    xf = X_future[[ID, TIME, *columns]].copy()
    xf[ID] = xf[ID].astype(str)
    xf[TIME] = pd.to_datetime(xf[TIME])
    out = fut.merge(xf.drop_duplicates([ID, TIME], keep="last"), on=[ID, TIME], how="left")
    holes = out[list(columns)].isna().any(axis=1)
    if holes.any():
        first = out.loc[holes].iloc[0]
        raise ModelError(
            f"candidate '{name}': X_future has no value for {', '.join(columns)} at "
            f"{first[TIME]} of series '{first[ID]}' ({int(holes.sum())} forecast step(s) missing)"
        )
    return out
