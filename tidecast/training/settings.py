"""What the training steps derive from the spec: the MASE season, the history a series needs, the
data checks at ingest, the cheap checks before a run, and the context every model is fit with."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
from tidecast.models.registry import kind_property
from tidecast.pipeline.executors import check_address
from tidecast.pipeline.executors.local import warm_up
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


BYTES_PER_ROW = 32
"""What a row of a data file takes, to guess a source's rows from its size before it is read (a
CSV row of examples/power: 31 bytes; Parquet takes fewer, so its rows are underestimated)."""

#: model libraries whose import name is not their distribution's (``libraries`` of a model class)
_MODULES = {"scikit-learn": "sklearn"}


def source_rows(spec: Spec) -> int | None:
    """A cheap guess of the rows of a local file source (or folder of files) from its size; None for
    URLs, databases and sources not found."""
    source = spec.data.source
    if "://" in source:  # a URL or a database
        return None
    path = Path(source) if Path(source).is_absolute() else Path(spec.root) / source
    try:
        if path.is_file():
            size = path.stat().st_size
        elif path.is_dir():
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        else:
            return None
    except OSError:
        return None
    return size // BYTES_PER_ROW


def warm_workers(spec: Spec, plans: Any, load: float | None = None) -> int:
    """How many worker processes to start ahead for the backtest: as many as its candidates will
    run in side by side (as the backtest decides it, with the rows guessed from the source's size)
    when the backtest will run and a core is idle; else 1 (none).

    Data below twice the side-by-side threshold is never guessed large enough. ``load`` (default:
    the 1-minute load average) must leave a core free: the warm-up only pays on cores that would
    idle while the data steps run; on a busy machine it would slow the run's own pre-run check
    and data steps (measured on the shared 2-core VM, load 3-4: 2-3 s lost).
    ``TIDECAST_WARM_UP=0`` turns it off, ``always`` on whatever the load (tests, benchmarks)."""
    mode = os.environ.get("TIDECAST_WARM_UP", "1")
    if mode == "0":
        return 1
    if plans is None or not any(p.will_run and p.name == "backtest" for p in plans):
        return 1
    if getattr(spec.executor, "kind", "local") != "local" or spec.backtest.n_jobs != 1:
        return 1
    candidates = [c for c in spec.models if c.kind != "ensemble"]
    if not any(int(kind_property(c.kind, "fit_cost", 0)) for c in candidates):
        return 1
    rows = source_rows(spec)
    if rows is None or rows < 2 * PARALLEL_CANDIDATES_ROWS[0]:
        return 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available on this platform
            load = 0.0
    if mode != "always" and load > (os.cpu_count() or 1) - 1:
        return 1
    return side_by_side(rows, len(candidates))


@dataclass(frozen=True)
class WarmWorker:
    """What a backtest worker process would import on its first task, done ahead: the training
    module its tasks come from, every candidate built once, and the libraries their kinds compute
    with (imported at their first fit otherwise). Errors are left for the backtest to meet."""

    spec: Spec

    def __call__(self) -> None:
        with contextlib.suppress(Exception):
            # loky measures a worker's memory after its first task and replaces the worker once it
            # holds 300 MB more (to contain leaks); measured after this warm-up rather than after a
            # candidate's backtest, the data and the allocator's retained pages of the first fit
            # would count as a leak, and the replacement would import everything again mid-backtest
            from joblib.externals.loky import process_executor

            process_executor._USE_PSUTIL = False  # this worker only: it collects garbage as usual
        importlib.import_module("tidecast.training.candidates")  # its tasks' module (imports settings)
        with contextlib.suppress(Exception):
            validate_candidates(self.spec)
        for candidate in self.spec.models:
            for library in kind_property(candidate.kind, "libraries", ()) or ():
                with contextlib.suppress(Exception):
                    importlib.import_module(_MODULES.get(library, library.replace("-", "_")))


def preflight(spec: Spec, plans: Any = None) -> None:
    """Cheap checks before any step runs: every candidate can be built from its kind and params, and
    a Dask scheduler named by ``executor.address`` answers (so that a wrong address fails in seconds,
    before the data steps, not when the backtest starts).

    ``plans`` (the run's :class:`~tidecast.pipeline.runner.StepPlan` list): the candidates are built
    only when a step of :data:`MODEL_STEPS` will run, so that a run with those steps cached (a
    no-op) imports no model library nor plugin. When the backtest will run its candidates side by
    side (:func:`warm_workers`), its worker processes start now and import what it needs
    (:class:`WarmWorker`) while the data steps run (once the candidates are known to build: a
    spec that fails here starts no process)."""
    if plans is None or any(p.will_run and p.name in MODEL_STEPS for p in plans):
        validate_candidates(spec)
    workers = warm_workers(spec, plans)
    if workers > 1:
        warm_up(workers, WarmWorker(spec))
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
