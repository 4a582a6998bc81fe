"""The hot path of ``POST /forecast``: validated JSON arrays → model frames → forecaster → JSON arrays.

It computes what :func:`tidecast.tracking.pyfunc.forecast_with` computes (the pyfunc's prediction:
the last ``input_window`` points of each series as history, the future exogenous rows, the card's
time features, then ``forecaster.predict``), but builds the frames straight from numpy arrays that
the request models already checked, instead of validating a caller's DataFrame row by row.

What repeats between requests (conformal offsets, holiday calendars, a horizon's time features)
is cached by the models themselves, so the pyfunc and this path both get it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.durations import format_delta as _human
from tidecast.errors import closest
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column
from tidecast.tracking.pyfunc import DEFAULT_SERIES, add_card_time_features, check_finite

if TYPE_CHECKING:
    from tidecast.serving.model import LoadedModel
    from tidecast.serving.schemas import ForecastRequest

log = logging.getLogger("tidecast.serving")



# ---------------------------------------------------------------------------------- problems
@dataclass
class Problem:
    """One 422 item, in FastAPI's shape (``loc``, ``msg``, ``type``)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def to_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class InputProblems(Exception):
    """The request cannot be served by this model; ``problems`` says why (answered as 422)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.msg for p in problems))
        self.problems = problems


# ------------------------------------------------------------------------------------ frames
@dataclass
class SeriesArrays:
    """One series of a request, as arrays: ``ns`` (int64 UTC nanoseconds), ``y`` and exogenous columns."""

    id: str
    ns: np.ndarray
    y: np.ndarray
    exog: dict[str, np.ndarray] = field(default_factory=dict)
    aware: bool = False


@dataclass
class Prepared:
    """What the forecaster is called with, plus what the answer needs."""

    series: list[SeriesArrays]
    history: pd.DataFrame
    future: pd.DataFrame | None
    horizon: int
    quantiles: list[float]
    aware: bool


def default_series_id(card: dict[str, Any]) -> str | None:
    """The id of a series sent without one: the model's only series, else None (must be named)."""
    ids = card.get("series_ids") or []
    if len(ids) > 1:
        return None
    return str(ids[0]) if ids else DEFAULT_SERIES


def max_horizon(model: LoadedModel) -> int:
    """The longest horizon served: the trained horizon (multi-output models cannot go further)."""
    return model.horizon


def _human_step(ns: int) -> str:
    return _human(pd.Timedelta(int(ns), unit="ns"))


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns)).isoformat()


def check_series(
    model: LoadedModel, series: list[SeriesArrays], horizon: int, loc0: tuple = ("body", "series")
) -> None:
    """Raise :class:`InputProblems` for what the served model cannot forecast from ``series``."""
    card = model.card
    freq = model.freq
    step = calendar.info(freq).nominal.value  # the average step of a calendar frequency (for messages)
    fixed = calendar.is_fixed(freq)
    window = model.input_window
    needs_future = list(card.get("exog_future") or [])
    past = list(card.get("exog_past") or [])
    problems: list[Problem] = []
    for i, s in enumerate(series):
        loc = (*loc0, i)
        label = f"series {s.id!r}"
        n = len(s.ns)
        if n > 1:
            steps = np.diff(s.ns)
            if fixed:
                off = steps != step
            else:  # one anchor of the calendar frequency to the next
                pos = calendar.positions(pd.Timestamp(int(s.ns[0])), pd.DatetimeIndex(s.ns.view("datetime64[ns]")), freq)
                off = (np.diff(pos) != 1) | (pos[1:] < 0)
            if off.any():
                if (steps == steps[0]).all():
                    msg = f"{label}: timestamps are {_human_step(steps[0])} apart, the model's frequency is {freq}"
                else:
                    j = int(np.flatnonzero(off)[0]) + 1
                    msg = (
                        f"{label}: timestamps are irregular: a step of {_human_step(steps[j - 1])} before "
                        f"timestamps[{j}] ({_iso(s.ns[j])}); the model's frequency is {freq} (fill the gaps)"
                    )
                problems.append(Problem((*loc, "timestamps"), msg))
        if n < window:
            problems.append(
                Problem(
                    (*loc, "values"),
                    f"{label}: history too short: {n} point(s), the model needs at least {window} "
                    f"(its input window, {_human_step(window * step)})",
                )
            )
        for column in (*past, *needs_future):
            if column not in s.exog:
                close = closest(column, s.exog)
                hint = f" (is {close!r} a typo?)" if close else ""
                needed = f"{n} history + {horizon} future" if column in needs_future else f"{n} history"
                problems.append(
                    Problem(
                        (*loc, "exogenous"),
                        f"{label}: missing exogenous column {column!r}{hint}; this model needs {needed} values of it",
                    )
                )
        for column in past:
            values = s.exog.get(column)
            if values is not None and len(values) < n:
                problems.append(
                    Problem(
                        (*loc, "exogenous", column),
                        f"{label}: exogenous {column!r} has {len(values)} values, needs {n} (one per timestamp)",
                    )
                )
        for column in needs_future:
            values = s.exog.get(column)
            if values is not None and len(values) < n + horizon:
                short = n + horizon - len(values)
                problems.append(
                    Problem(
                        (*loc, "exogenous", column),
                        f"{label}: missing future exogenous values: {column!r} has {len(values)} values, needs "
                        f"{n + horizon} ({n} for the history + {horizon} for the horizon; {short} missing)",
                    )
                )
    if problems:
        raise InputProblems(problems)


def build_frames(
    model: LoadedModel, series: list[SeriesArrays], horizon: int
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(history, X_future) as ``forecast_with`` hands them to the forecaster (checked input assumed)."""
    card = model.card
    window = model.input_window
    fixed = calendar.is_fixed(model.freq)
    step = calendar.info(model.freq).nominal.value
    needs_future = list(card.get("exog_future") or [])
    past = list(card.get("exog_past") or [])
    exog_cols = [*past, *needs_future]
    hist_ids, hist_ns, hist_y = [], [], []
    hist_x: dict[str, list[np.ndarray]] = {c: [] for c in exog_cols}
    fut_ids, fut_ns = [], []
    fut_x: dict[str, list[np.ndarray]] = {c: [] for c in needs_future}
    offsets = np.arange(1, horizon + 1, dtype=np.int64) * step
    for s in series:
        n = len(s.ns)
        lo = max(0, n - window)
        hist_ids.append(np.full(n - lo, s.id, dtype=object))
        hist_ns.append(s.ns[lo:n])
        hist_y.append(s.y[lo:n])
        for c in exog_cols:
            hist_x[c].append(s.exog[c][lo:n])
        fut_ids.append(np.full(horizon, s.id, dtype=object))
        fut_ns.append(
            s.ns[n - 1] + offsets if fixed
            else calendar.future_dates(pd.Timestamp(int(s.ns[n - 1])), horizon, model.freq).as_unit("ns").asi8
        )
        for c in needs_future:
            fut_x[c].append(s.exog[c][n : n + horizon])
    cat = np.concatenate
    history = pd.DataFrame(
        {
            ID: cat(hist_ids),
            TIME: cat(hist_ns).view("datetime64[ns]"),
            TARGET: cat(hist_y).astype(float, copy=False),
            **{c: cat(hist_x[c]).astype(float, copy=False) for c in exog_cols},
        }
    )
    time_cols = list(card.get("time_feature_columns") or [])
    if not needs_future and not time_cols:
        return history, None
    future = pd.DataFrame(
        {
            ID: cat(fut_ids),
            TIME: cat(fut_ns).view("datetime64[ns]"),
            **{c: cat(fut_x[c]).astype(float, copy=False) for c in needs_future},
        }
    )
    return history, future


def predict_frames(
    model: LoadedModel, history: pd.DataFrame, future: pd.DataFrame | None, horizon: int, quantiles: list[float]
) -> pd.DataFrame:
    """The forecaster's answer (``unique_id, ds, yhat, q…``), exactly as ``forecast_with`` computes it
    (a forecast that is not finite raises ``ValueError``, as there)."""
    card = model.card
    if card.get("time_feature_columns"):
        history = add_card_time_features(history, card)
        if future is not None:
            future = add_card_time_features(future, card)
    out = model.forecaster.predict(horizon, history=history, X_future=future, quantiles=quantiles)
    columns = [ID, TIME, POINT, *(quantile_column(q) for q in quantiles)]
    missing = [c for c in columns if c not in out.columns]
    if missing:
        raise ValueError(f"the forecaster returned no column(s) {', '.join(missing)}")
    if list(out.columns) != columns:
        out = out[columns]
    if not isinstance(out.index, pd.RangeIndex) or out.index.start != 0 or out.index.step != 1:
        out = out.reset_index(drop=True)
    if out[ID].dtype != object:
        out[ID] = out[ID].astype(str)
    check_finite(out, columns[2:])
    return out


# ---------------------------------------------------------------------------------- requests
def prepare(model: LoadedModel, request: ForecastRequest, *, max_series: int) -> Prepared:
    """The request as model frames, or :class:`InputProblems` naming what this model cannot serve."""
    problems: list[Problem] = []
    if len(request.series) > max_series:
        problems.append(
            Problem(
                ("body", "series"),
                f"too many series: {len(request.series)}, at most {max_series} per request (serving.max_series)",
            )
        )
    cap = max_horizon(model)
    horizon = request.horizon if request.horizon is not None else model.horizon
    if horizon > cap:
        problems.append(Problem(("body", "horizon"), f"horizon {horizon} is above this model's limit of {cap} steps"))
    quantiles = list(request.quantiles) if request.quantiles is not None else model.quantiles
    default_id = default_series_id(model.card)
    arrays: list[SeriesArrays] = []
    for i, s in enumerate(request.series):
        uid = s.id if s.id is not None else default_id
        if uid is None:
            n_ids = len(model.card.get("series_ids") or [])
            problems.append(
                Problem(("body", "series", i, "id"), f"series[{i}]: id is required, this model knows {n_ids} series")
            )
            uid = f"#{i}"
        arrays.append(SeriesArrays(uid, s._ns, s._y, s._exog, s._aware))
    if problems:
        raise InputProblems(problems)
    check_series(model, arrays, horizon)
    history, future = build_frames(model, arrays, horizon)
    return Prepared(arrays, history, future, horizon, quantiles, any(s.aware for s in arrays))


def answer(model: LoadedModel, prepared: Prepared, out: pd.DataFrame) -> dict[str, Any]:
    """The JSON-able answer: numpy arrays are left as they are (orjson writes them directly)."""
    ids = out[ID].to_numpy()
    times = out[TIME].to_numpy()
    point = out[POINT].to_numpy(dtype=float)
    qcols = [(f"{q:g}", out[quantile_column(q)].to_numpy(dtype=float)) for q in prepared.quantiles]
    if len(prepared.series) == 1 and (len(ids) == 0 or ids[0] == ids[-1]):
        groups = {prepared.series[0].id: slice(None)}
    else:
        groups = out.groupby(ID, sort=False).indices
    forecasts = []
    requested = [s.id for s in prepared.series]
    # series the model adds to the request's (a reconciled model's aggregates: feeders, total...) come after
    known = set(requested)
    added = [str(uid) for uid in groups if uid not in known] if len(groups) > len(requested) else []
    for sid in requested + added:
        idx = groups.get(sid)
        if idx is None:
            idx = slice(0, 0)
        forecasts.append(
            {
                "id": sid,
                "timestamps": np.ascontiguousarray(times[idx]),
                "yhat": np.ascontiguousarray(point[idx]),
                "quantiles": {name: np.ascontiguousarray(values[idx]) for name, values in qcols},
            }
        )
    return {"model": {"name": model.name, "version": model.version, "alias": model.alias}, "forecasts": forecasts}


# ----------------------------------------------------------------------------------- warm-up
def warm_up(model: LoadedModel) -> None:
    """Forecast once from synthetic history so lazy state (networks, caches) is built before traffic."""
    card = model.card
    uid = default_series_id(card) or str((card.get("series_ids") or ["series"])[0])
    try:
        end = pd.Timestamp(card.get("trained_until") or "2024-01-01").value
    except (ValueError, TypeError):
        end = pd.Timestamp("2024-01-01").value
    n, h = model.input_window, model.horizon
    ns = calendar.past_dates(pd.Timestamp(end), n, model.freq).as_unit("ns").asi8
    y = 1.0 + 0.1 * np.sin(np.arange(n) / 10.0)
    exog = {c: np.zeros(n + h) for c in [*(card.get("exog_past") or []), *(card.get("exog_future") or [])]}
    series = [SeriesArrays(uid, ns, y, exog)]
    try:
        history, future = build_frames(model, series, h)
        predict_frames(model, history, future, h, model.quantiles)
    except Exception as exc:  # synthetic input: a model may reject it without being broken
        log.warning("warm-up forecast of %s v%s failed (%s: %s)", model.name, model.version, type(exc).__name__, exc)


__all__ = [
    "InputProblems",
    "Prepared",
    "Problem",
    "SeriesArrays",
    "answer",
    "build_frames",
    "check_series",
    "default_series_id",
    "max_horizon",
    "predict_frames",
    "prepare",
    "warm_up",
]
