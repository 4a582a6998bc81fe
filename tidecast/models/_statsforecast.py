"""Helpers of the statsforecast models (:mod:`tidecast.models.statistical`): their parameters
checked against statsforecast's constructors, the fast STL settings, and a frame's tail taken
without a copy of the whole history when it is already in the canonical sorted form."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tidecast.errors import ModelError
from tidecast.frames import ID, TARGET, TIME

_SF_CLASS = {"autoets": "AutoETS", "autoarima": "AutoARIMA", "autotheta": "AutoTheta", "mstl": "MSTL"}
_OURS = {"alias", "prediction_intervals"}


def sf_class(kind: str) -> type:
    import statsforecast.models as sfm

    return getattr(sfm, _SF_CLASS[kind])


def accepted_params(cls: type) -> list[str]:
    """The keyword arguments of statsforecast's ``cls`` a candidate may set (not those tidecast sets)."""
    return [p for p in inspect.signature(cls).parameters if p not in _OURS and p != "self"]


def check_params(name: str, kind: str, params: dict[str, Any], extra: Sequence[str] = ()) -> None:
    accepted = accepted_params(sf_class(kind))
    for key in params:
        if key not in accepted and key not in extra:
            raise ModelError(
                f"candidate '{name}': {kind} does not accept parameter '{key}' "
                f"(accepted: {', '.join(sorted([*accepted, *extra]))})"
            )


def check_ets_model(name: str, kind: str, model: Any) -> None:
    ok = (
        isinstance(model, str)
        and len(model) == 3
        and model[0] in "AMZ"
        and model[1] in "NAMZ"
        and model[2] in "NAMZ"
    )
    if not ok:
        raise ModelError(
            f"candidate '{name}': parameter 'model' of {kind} must be three letters "
            f"(error A/M/Z, trend N/A/M/Z, season N/A/M/Z, e.g. 'ZZZ' or 'AAN'), got {model!r}"
        )


def fast_stl_kwargs(season: Sequence[int], user: dict[str, Any] | None) -> dict[str, Any]:
    """STL settings for MSTL: R's ``stl`` jumps (LOESS evaluated every ~tenth point, linear in
    between) for the trend and low-pass smoothers, under the user's ``stl_kwargs``.

    statsmodels evaluates every point by default (jump 1): on 28 days of 5-minute data with seasons
    [288, 2016] that is 27 s per fit instead of 2 s, for the same forecasts.
    """
    jump = max(1, math.ceil(min(season) / 10))
    return {"trend_jump": jump, "low_pass_jump": jump, **(user or {})}


def series_starts(df: pd.DataFrame) -> np.ndarray | None:
    """The first row of every series when ``df`` is already as :func:`check_frame` leaves it
    (``unique_id`` of str, ``ds`` datetime64[ns], rows sorted by ``unique_id, ds``), else None."""
    if len(df) < 2 or ID not in df.columns or TIME not in df.columns:
        return None
    if df[ID].dtype != object or df[TIME].dtype != np.dtype("datetime64[ns]"):
        return None
    if pd.api.types.infer_dtype(df[ID], skipna=False) != "string":
        return None
    values, ds = df[ID].to_numpy(), df[TIME].to_numpy()
    new = values[1:] != values[:-1]
    if new.any() and not np.all(values[1:][new] > values[:-1][new]):  # ids compared where they change
        return None
    if not np.all(new | (ds[1:] >= ds[:-1])):  # also False at NaT
        return None
    return np.flatnonzero(np.concatenate([[True], new]))


def checked_tail(df: pd.DataFrame, columns: list[str], steps: int | None) -> pd.DataFrame | None:
    """``tail_per_series(check_frame(df[columns]), steps)`` without check_frame's copy, sort and
    timestamp parsing of the whole history, when ``df`` is already as check_frame leaves it
    (``unique_id`` of str, ``ds`` datetime64[ns], rows sorted by ``unique_id, ds``, a numeric
    target); else None."""
    if TARGET not in df.columns or not pd.api.types.is_numeric_dtype(df[TARGET]):
        return None
    starts = series_starts(df)
    if starts is None:
        return None
    if steps is not None and len(df) > steps:
        ends = np.append(starts[1:], len(df))
        firsts = np.maximum(starts, ends - int(steps))
        if len(starts) == 1:
            df = df.iloc[int(firsts[0]) :]
        else:
            df = df.iloc[np.concatenate([np.arange(a, b) for a, b in zip(firsts, ends, strict=True)])]
    out = df[columns].copy()
    out[TARGET] = out[TARGET].astype(float)
    out.index = pd.RangeIndex(len(out))
    return out


def season_list(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]
