"""What the training steps derive from the spec: the MASE season, the history a series needs, the
data checks at ingest, the cheap checks before a run, and the context every model is fit with."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pandas as pd

from tidecast import calendar
from tidecast.data.clean import check_anchors, check_duplicates, check_spacing
from tidecast.data.sources import source_label
from tidecast.durations import freq_timedelta
from tidecast.errors import BacktestError, DataError
from tidecast.evaluation.folds import folds_for_spec
from tidecast.frames import ID, TIME
from tidecast.models.base import FitContext
from tidecast.pipeline.executors import check_address
from tidecast.spec import Spec
from tidecast.training.factories import validate_candidates

Progress = Callable[..., None]


def _noop(*_: Any, **__: Any) -> None:
    return None


PARALLEL_CANDIDATES_ROWS = (5_000, 5_000_000)
"""Candidates' work runs side by side between these many rows: below, a process's start and imports
cost more than it saves; above, each process would hold the data."""


def side_by_side(rows: int, tasks: int) -> int:
    """How many worker processes run ``tasks`` independent pieces of a step side by side (a
    candidate's backtest, permutation importance, the winner's held-out fit next to its refit):
    up to one per core, for two or more tasks on neither tiny nor large data; else 1 (in turn).
    ``TIDECAST_PARALLEL_CANDIDATES=0`` turns it off. The numbers are the same either way."""
    if os.environ.get("TIDECAST_PARALLEL_CANDIDATES", "1") == "0" or tasks < 2:
        return 1
    low, high = PARALLEL_CANDIDATES_ROWS
    if not low <= rows <= high:
        return 1
    return max(1, min(os.cpu_count() or 1, tasks))


def season_length(spec: Spec) -> int:
    """The seasonal-naive season used to scale MASE: one day of steps below daily data, a week for daily,
    the calendar's season for calendar frequencies (5 business days, 52 weeks, 12 months, 4 quarters)."""
    if not calendar.is_fixed(spec.data.frequency):
        return calendar.season_length(spec.data.frequency)
    step = freq_timedelta(spec.data.frequency)
    day = pd.Timedelta(days=1)
    if step < day and day % step == pd.Timedelta(0):
        return int(day / step)
    if step == day:
        return 7
    return 1


def min_history(spec: Spec) -> int:
    """Steps a series needs to take part: the spec's clean.min_length, else input window + horizon."""
    if spec.clean.min_length is not None:
        return spec.steps(spec.clean.min_length, "clean.min_length")
    window, horizon = spec.forecast_steps()
    return window + horizon


def validate_history(frame: pd.DataFrame, spec: Spec) -> None:
    """Fail at ingest, before anything is cached, when the data cannot serve the spec: readings
    spaced unlike ``data.frequency``, or too little history for the input window, the backtest
    folds and the held-out stretch; with ``clean.duplicates: error``, a repeated (series, time) pair."""
    if spec.clean.duplicates == "error":
        check_duplicates(frame, label=source_label(spec.data.source))
    ordered = frame.sort_values([ID, TIME], kind="stable")
    check_spacing(ordered, freq_timedelta(spec.data.frequency), spec.data.frequency)
    check_anchors(ordered, spec.data.frequency)
    window, _ = spec.forecast_steps()
    try:
        folds_for_spec(ordered.drop_duplicates([ID, TIME]), spec, min_train=window)
    except BacktestError as exc:
        where = ""
        if spec.backtest.holdout is not None and spec.holdout_steps() > spec.forecast_steps()[1]:
            default = spec.model_copy(update={"backtest": spec.backtest.model_copy(update={"holdout": None})})
            try:  # the folds fit with the default holdout: the field to fix is backtest.holdout
                folds_for_spec(ordered.drop_duplicates([ID, TIME]), default, min_train=window)
                where = f"backtest.holdout ({spec.backtest.holdout!r}, {spec.holdout_steps()} steps) is longer than the data allows: "
            except BacktestError:
                pass
        raise DataError(f"{spec.data.source}: {where}history too short: {exc.message}") from None


#: The steps that build the candidates' models: only when one of them runs is a candidate built before.
MODEL_STEPS = frozenset({"backtest", "select", "explain"})


def preflight(spec: Spec, plans: Any = None) -> None:
    """Cheap checks before any step runs: every candidate can be built from its kind and params, and
    a Dask scheduler named by ``executor.address`` answers (so that a wrong address fails in seconds,
    before the data steps, not when the backtest starts).

    ``plans`` (the run's :class:`~tidecast.pipeline.runner.StepPlan` list): the candidates are built
    only when a step of :data:`MODEL_STEPS` will run, so that a run with those steps cached (a
    no-op) imports no model library nor plugin."""
    if plans is None or any(p.will_run and p.name in MODEL_STEPS for p in plans):
        validate_candidates(spec)
    if spec.executor.kind == "dask" and spec.executor.address:
        check_address(spec.executor.address)


def fit_context(spec: Spec, frame: pd.DataFrame | None = None) -> FitContext:
    """What every model is told about the data: frequency, horizon, input window, feature roles.

    ``exog_future`` holds the user's known-in-future columns only: models derive the calendar and
    Fourier columns from ``ds`` themselves (``ctx.features``), the same way at serving time.
    """
    window, horizon = spec.forecast_steps()
    exog = spec.data.exogenous_columns
    return FitContext(
        freq=spec.data.frequency,
        horizon=horizon,
        input_window=window,
        exog_future=tuple(c.name for c in exog if c.known_in_future),
        exog_past=tuple(c.name for c in exog if not c.known_in_future),
        static=tuple(spec.data.static_columns),
        seed=spec.seed,
        features=spec.features,
        holidays_country=spec.features.holidays_country,
        timezone=spec.data.timezone,
    )
