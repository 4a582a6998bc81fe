"""Backtest every candidate of a spec, select the winner, refit it: the work behind the model steps.

Everything here speaks the Forecaster protocol only; the pipeline steps call these functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.durations import freq_timedelta
from tidecast.errors import BacktestError, DataError, ModelError, TidecastError
from tidecast.models.base import ID, POINT, TARGET, TIME, FitContext, Forecaster, quantile_column
from tidecast.spec import CandidateSpec, Spec

Progress = Callable[..., None]


def _noop(*_: Any, **__: Any) -> None:
    return None


# ------------------------------------------------------------------------------ derived settings
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
    from tidecast.data.clean import check_anchors, check_duplicates, check_spacing
    from tidecast.evaluation.folds import folds_for_spec

    if spec.clean.duplicates == "error":
        from tidecast.data.sources import source_label

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
        from tidecast.pipeline.executors import check_address

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


# ------------------------------------------------------------------------------------ candidates
@dataclass(frozen=True)
class ModelFactory:
    """Builds a fresh, fully wrapped Forecaster for one candidate and one set of parameters (picklable)."""

    candidate: CandidateSpec
    params: dict[str, Any]
    freq: str
    transform: str
    root: str
    plugin_paths: tuple[str, ...] = ()

    def __call__(self) -> Forecaster:
        from pathlib import Path

        from tidecast.models.plugins import add_search_path
        from tidecast.models.registry import build_forecaster
        from tidecast.models.transform import TransformedForecaster

        for folder in self.plugin_paths:
            add_search_path(Path(self.root) / folder)
        model = build_forecaster(
            self.candidate.name,
            self.candidate.kind,
            self.params,
            freq=self.freq,
            fit_window=self.candidate.fit_window,
            search_path=Path(self.root),
        )
        if self.transform != "none":
            model = TransformedForecaster(model, self.transform)
        return model


def factory_for(candidate: CandidateSpec, params: dict[str, Any], spec: Spec) -> ModelFactory:
    return ModelFactory(
        candidate, params, spec.data.frequency, spec.target.transform, str(spec.root), tuple(spec.plugin_paths)
    )


def validate_candidates(spec: Spec) -> None:
    """Build every candidate once before any work, so that a typo fails in a second, not an hour in."""
    from tidecast.evaluation.search import grid, is_searched

    if not spec.models:
        raise ModelError("models: the spec lists no candidate models (add at least a seasonal_naive)")
    for candidate in spec.models:
        if candidate.kind == "ensemble":  # built from its members' backtests (tidecast.evaluation.ensembles)
            continue
        params = candidate.params
        first = params if not is_searched(params) else (grid(params)[0] if not _has_ranges(params) else None)
        if first is not None:
            factory_for(candidate, first, spec)()


def _has_ranges(params: dict[str, Any]) -> bool:
    from tidecast.spec import RangeParam

    return any(isinstance(v, RangeParam | dict) and not isinstance(v, list) for v in params.values())


class _NoModel:
    """A placeholder inner model: only the residual arithmetic of ConformalForecaster is used."""

    name = "residuals"


def _conformal_cross_fold(forecasts: pd.DataFrame, quantiles: list[float]) -> pd.DataFrame:
    """Honest intervals for models without their own: each fold's quantiles come from the *other*
    folds' residuals at the same horizon step (pooled over series)."""
    from tidecast.models.conformal import ConformalForecaster

    out = []
    for fold in sorted(forecasts["fold"].unique()):
        part = forecasts[forecasts["fold"] == fold].copy()
        others = forecasts[forecasts["fold"] != fold]
        if others.empty:  # a single fold: calibrating in-sample is the only option
            others = part
        # pooled over series (per_series=False): one id for all rows spares the per-series tables the
        # calibrator would otherwise build and never use (minutes at 10,000 series)
        pooled = others[["step", TARGET, POINT]].assign(**{ID: "*"})
        calibrator = ConformalForecaster(_NoModel(), pooled, per_series=False)  # type: ignore[arg-type]
        offsets = calibrator.offsets(quantiles)
        rows = np.minimum(part["step"].to_numpy(int), calibrator.horizon) - 1
        for j, q in enumerate(quantiles):
            part[quantile_column(q)] = part[POINT].to_numpy(float) + offsets[rows, j]
        out.append(part)
    return pd.concat(out, ignore_index=True)


@dataclass(frozen=True)
class ConformalFactory:
    """A model factory whose models get conformal quantiles from fixed backtest residuals."""

    inner: Callable[[], Forecaster]
    residuals: pd.DataFrame
    force: bool = False

    def __call__(self) -> Forecaster:
        from tidecast.models.conformal import ConformalForecaster

        return ConformalForecaster(self.inner(), self.residuals, force=self.force)


LOCAL_KINDS = frozenset({
    "naive", "seasonal_naive", "window_average", "autoets", "autoarima", "autotheta", "mstl",
    "croston", "adida", "imapa", "tsb",
})
"""Built-in kinds fitted series by series: their backtests split into series partitions x folds.
Every other kind (lightgbm, sklearn, mlp, plugins) is a global model, fit on all series at once."""

PARTITION_MAX_SERIES = 2000
"""No series partition holds more series than this (bounds one task's memory)."""


def series_partitions(frame: pd.DataFrame, n_workers: int) -> list[list[Any]] | None:
    """How a per-series model's backtest is split: ``None`` (one piece) for one worker and few
    series, else about two partitions per worker, of at most :data:`PARTITION_MAX_SERIES` series.
    The forecasts do not depend on it (each series is fit on its own)."""
    from tidecast.evaluation.backtest import partition_series

    ids = pd.unique(frame[ID])
    n = len(ids)
    wanted = max(2 * n_workers if n_workers > 1 else 1, -(-n // PARTITION_MAX_SERIES))
    wanted = min(wanted, n)
    return None if wanted <= 1 else partition_series(ids, wanted)


class _Data:
    """The backtest's data: the partitions on disk (when the features step wrote them), the
    ``unique_id, ds, y`` columns this process needs for folds and scores, and every column, read
    only when a global model needs them all."""

    def __init__(self, data: Any, spec: Spec) -> None:
        from tidecast.data.partitions import PartitionedFrame

        self.source = data if isinstance(data, PartitionedFrame) and spec.hierarchy is None else None
        frame = data.to_pandas() if isinstance(data, PartitionedFrame) else data  # a hierarchy needs every node
        self._full = None if self.source is not None else with_aggregates(frame, spec)
        self.light = self.source.to_pandas([ID, TIME, TARGET]) if self.source is not None else self._full
        from tidecast.pipeline.executors import shares_files

        self.shared_storage = shares_files(spec.executor)

    @property
    def full(self) -> pd.DataFrame:
        if self._full is None:
            self._full = self.source.to_pandas()  # type: ignore[union-attr]
        return self._full

    def for_kind(self, kind: str) -> Any:
        """What the backtest of a candidate of ``kind`` reads: the partitions (the workers read
        their rows there), unless a global model's workers cannot see them."""
        if self.source is not None and (kind in LOCAL_KINDS or self.shared_storage):
            return self.source
        return self.full


def _backtest_one(
    factory: ModelFactory, data: _Data | pd.DataFrame, ctx: FitContext, folds: list[Any], spec: Spec, executor: Any
) -> tuple[Any, Any]:
    from tidecast.evaluation.backtest import backtest as run_backtest
    from tidecast.evaluation.metrics import evaluate

    if not isinstance(data, _Data):
        data = _Data(data, spec)
    frame = data.light
    quantiles = list(spec.forecast.quantiles)
    conformal = bool(quantiles)  # every candidate's intervals are calibrated (tidecast.evaluation.calibration)
    partitions = (
        series_partitions(frame, int(getattr(executor, "n_workers", 1) or 1))
        if factory.candidate.kind in LOCAL_KINDS
        else None
    )
    from tidecast.models import distributed  # executor.global_models: lightgbm through mlforecast's Dask path

    on_cluster = distributed.plan_training(spec, factory.candidate.kind, factory.params, executor).distributed
    if on_cluster:
        client = distributed.dask_client(executor)
        result = distributed.backtest_distributed(
            factory, distributed.source_for(data, ctx, client), ctx, folds, client=client,
            quantiles=() if conformal else quantiles,
        )
    else:
        result = run_backtest(
            factory, data.for_kind(factory.candidate.kind), ctx, folds, quantiles=() if conformal else quantiles,
            executor=executor, partitions=partitions, shared_storage=data.shared_storage,
            keep_last_model=True,  # the explain step reuses it instead of refitting (tidecast.reporting.explain)
        )
    if result.errors:
        raise ModelError(f"candidate '{factory.candidate.name}': {result.errors[0]}")
    if conformal:
        _calibrate(result, factory, data, ctx, folds, spec, executor, partitions, distributed=on_cluster)
    m = season_length(spec)
    evaluation = evaluate(result.forecasts, result.scales(frame, m), season_length=m, quantiles=quantiles)
    return result, evaluation


def _calibrate(
    result: Any, factory: ModelFactory, data: _Data, ctx: FitContext, folds: list[Any], spec: Spec, executor: Any,
    partitions: Any, *, distributed: bool = False,
) -> None:
    """Calibrated quantiles on ``result``'s folds, fit without look-ahead (calibration windows
    before the first fold, then each earlier fold); the windows' residuals kept on ``result``."""
    from tidecast.evaluation.calibration import calibrate_folds, calibration_forecasts, calibration_windows

    window, _ = spec.forecast_steps()
    n_windows = 0 if distributed else int(getattr(spec.backtest, "calibration_windows", 10))
    windows = calibration_windows(folds, data.light, ctx, n_windows, min_train=window)
    calibration, _errors = calibration_forecasts(
        factory, data.for_kind(factory.candidate.kind), ctx, windows, executor=executor, partitions=partitions,
        shared_storage=data.shared_storage,
    )
    result.calibration = calibration
    result.forecasts, _fallback = calibrate_folds(result.forecasts, calibration, list(spec.forecast.quantiles))


def candidate_results(frame: pd.DataFrame, spec: Spec, *, progress: Progress = _noop) -> dict[str, Any]:
    """Backtest every candidate (grid or Optuna search where params ask for it) and build the leaderboard."""
    from tidecast.evaluation.backtest import make_folds
    from tidecast.evaluation.search import grid, is_searched, optuna_search
    from tidecast.evaluation.selection import CandidateResult, leaderboard
    from tidecast.models.distributed import plan_training
    from tidecast.pipeline.executors import make_executor

    validate_candidates(spec)
    data = _Data(frame, spec)
    frame = data.light  # unique_id, ds, y (every column without partitions on disk)
    ctx = fit_context(spec, frame)
    window, horizon = spec.forecast_steps()
    bt = spec.backtest
    folds = make_folds(
        frame,
        h=horizon,
        folds=bt.folds,
        step=spec.steps(bt.step, "backtest.step") if bt.step is not None else horizon,
        window=bt.window,
        train_window=spec.steps(bt.train_window, "backtest.train_window") if bt.train_window is not None else None,
        gap=spec.steps(bt.gap, "backtest.gap"),
        holdout=spec.holdout_steps(),
        freq=spec.data.frequency,
        min_train=window,
    )
    executor = make_executor(spec.executor, bt.n_jobs)
    metric = spec.selection.metric
    entries: list[Any] = []
    details: dict[str, Any] = {}
    total = len(spec.models)
    try:
        for index, candidate in enumerate(spec.models):
            if candidate.kind == "ensemble":  # combined from the others' forecasts after the loop
                continue
            progress(index, total, f"backtesting {candidate.name}")
            started = time.perf_counter()
            trials: list[dict[str, Any]] = []

            def score(params: dict[str, Any], candidate: CandidateSpec = candidate) -> tuple[float, Any, Any]:
                factory = factory_for(candidate, params, spec)
                result, evaluation = _backtest_one(factory, data, ctx, folds, spec, executor)
                value = float(evaluation.aggregate[metric])
                return value, result, evaluation

            best: tuple[float, dict[str, Any], Any, Any] | None = None
            error: str | None = None
            try:
                if candidate.search is not None:
                    cache: dict[str, tuple[Any, Any]] = {}

                    def objective(params: dict[str, Any], cache: dict = cache) -> float:  # type: ignore[type-arg]
                        value, result, evaluation = score(params)
                        cache[repr(sorted(params.items()))] = (result, evaluation)
                        return value

                    search = optuna_search(objective, candidate.params, candidate.search)
                    trials = [
                        {"params": t.params, "value": t.value, "seconds": t.seconds, "error": t.error}
                        for t in search.trials
                    ]
                    result, evaluation = cache[repr(sorted(search.best_params.items()))]
                    best = (search.best_value, search.best_params, result, evaluation)
                else:
                    combos = grid(candidate.params) if is_searched(candidate.params) else [dict(candidate.params)]
                    for params in combos:
                        try:
                            value, result, evaluation = score(params)
                        except TidecastError as exc:
                            trials.append({"params": params, "value": None, "seconds": None, "error": str(exc)})
                            if len(combos) == 1:
                                raise
                            continue
                        trials.append({"params": params, "value": value, "seconds": None, "error": None})
                        if best is None or value < best[0]:
                            best = (value, params, result, evaluation)
                    if best is None:
                        raise ModelError(f"candidate '{candidate.name}': every parameter combination failed")
            except (TidecastError, Exception) as exc:  # a candidate that fails is recorded, the others go on
                error = str(exc) if isinstance(exc, TidecastError) else f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - started
            if best is None:
                entries.append(
                    CandidateResult(
                        name=candidate.name, kind=candidate.kind, params=dict(candidate.params), evaluation=None,
                        backtest=None, error=error, fit_seconds=seconds, predict_seconds=0.0, trials=len(trials),
                    )
                )
                continue
            _, params, result, evaluation = best
            entries.append(
                CandidateResult(
                    name=candidate.name, kind=candidate.kind, params=params, evaluation=evaluation, backtest=result,
                    error=None, fit_seconds=result.fit_seconds, predict_seconds=result.predict_seconds,
                    trials=len(trials),
                )
            )
            details[candidate.name] = {
                "params": params, "trials": trials, "seconds": seconds,
                "training": plan_training(spec, candidate.kind, params, executor).label,
            }
    finally:
        executor.close()
    from tidecast.evaluation.ensembles import ensemble_entries

    combined, ensembles = ensemble_entries(entries, frame, spec, folds)  # from the stored fold forecasts
    entries = [*entries, *combined]
    reconciled = None
    if spec.hierarchy is not None:
        progress(total, total, "reconciling")
        entries, reconciled = _with_reconciled(entries, data.full, spec)
    progress(total, total, "ranked")
    board = leaderboard(entries, metric)
    out = {
        "leaderboard": board,
        "metric": metric,
        "folds": [f.__dict__ for f in folds],
        "season_length": season_length(spec),
        "results": {e.name: e for e in entries},
        "details": details,
    }
    if reconciled is not None:
        out["hierarchy"] = reconciled
    if ensembles:
        out["ensembles"] = ensembles
    if spec.selection.scope == "per_series":
        out["per_series"] = per_series_selection(entries, board, frame, spec)
        counts = out["per_series"]["counts"]
        board.insert(board.columns.get_loc("fit_seconds"), "series_won", [int(counts.get(c, 0)) for c in board["candidate"]])
    return out


def hierarchy_of(frame: pd.DataFrame, spec: Spec) -> Any:
    """The :class:`~tidecast.data.hierarchy.Hierarchy` of a frame with the spec's level columns."""
    from tidecast.data.hierarchy import Hierarchy

    assert spec.hierarchy is not None
    return Hierarchy.from_frame(frame, spec.hierarchy.levels, spec.hierarchy.total)


def with_aggregates(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """With ``hierarchy:``, ``frame`` holding every aggregate node (the clean step adds them; a frame
    of bottom series only, as a caller may pass, gets them summed here). Unchanged otherwise."""
    if spec.hierarchy is None:
        return frame
    structure = hierarchy_of(frame, spec)
    if set(structure.aggregates) <= set(pd.unique(frame[ID].astype(str))):
        return frame
    return structure.expand(frame)


def _with_reconciled(entries: list[Any], frame: pd.DataFrame, spec: Spec) -> tuple[list[Any], dict[str, Any]]:
    """``hierarchy:``: the base candidates plus each one reconciled by every method, and the
    per-level scores of all of them (see :mod:`tidecast.evaluation.reconcile`)."""
    from tidecast.evaluation.reconcile import per_level_table, reconciled_entries

    assert spec.hierarchy is not None
    structure = hierarchy_of(frame, spec)
    m, quantiles = season_length(spec), list(spec.forecast.quantiles)
    entries = [*entries, *reconciled_entries(
        entries, frame, structure, list(spec.hierarchy.methods), season_length=m, quantiles=quantiles
    )]
    table = per_level_table(entries, frame, structure, season_length=m, quantiles=quantiles)
    return entries, {"structure": structure.to_dict(), "methods": list(spec.hierarchy.methods), "per_level": table}


def _reconciled_factory(winner: str, backtested: dict[str, Any], frame: pd.DataFrame, spec: Spec) -> tuple[Any, str] | None:
    """For a reconciled winner (``<candidate>/<method>``): the factory of its model and its kind."""
    from tidecast.evaluation.reconcile import split_name
    from tidecast.models.reconciled import ReconciledFactory

    parts = split_name(winner) if spec.hierarchy is not None else None
    if parts is None:
        return None
    base, method = parts
    entry = backtested["results"][base]
    candidate = next(c for c in spec.models if c.name == base)
    make_base = _with_intervals(factory_for(candidate, entry.params, spec), entry, list(spec.forecast.quantiles))
    errors = entry.backtest.forecasts[[ID, "fold", TIME, TARGET, POINT]].copy()
    factory = ReconciledFactory(make_base, hierarchy_of(frame, spec), method, errors=errors, name=winner)
    return factory, f"{candidate.kind}/{method}"


def per_series_selection(entries: list[Any], board: pd.DataFrame, frame: pd.DataFrame, spec: Spec) -> dict[str, Any]:
    """``selection.scope: per_series``: each series' best candidate, the fallback for the series no
    backtest could judge, how many series each candidate wins, and the aggregate metrics of the
    per-series choice (next to those of the global winner)."""
    from tidecast.evaluation.metrics import evaluate
    from tidecast.evaluation.selection import per_series_winners, select_winner

    metric = spec.selection.metric
    names = [e.name for e in entries]
    fallback = spec.selection.fallback or select_winner(board, metric)
    if fallback not in names:
        raise ModelError(f"selection.fallback: no candidate named '{fallback}' (candidates: {', '.join(names)})")
    if not next(e for e in entries if e.name == fallback).ok:
        raise ModelError(f"selection.fallback: candidate '{fallback}' failed its backtest")
    winners = per_series_winners(entries, metric)
    mapping = {str(u): str(c) for u, c in zip(winners[ID], winners["candidate"], strict=True)}
    unjudged = sorted({str(u) for u in pd.unique(frame[ID])} - set(mapping))
    counts = {name: 0 for name in names}
    for name in mapping.values():
        counts[name] += 1
    counts[fallback] += len(unjudged)
    by_name = {e.name: e for e in entries}
    pieces = []
    for name in sorted(set(mapping.values())):
        ids = [u for u, c in mapping.items() if c == name]
        fc = by_name[name].backtest.forecasts
        pieces.append(fc[fc[ID].astype(str).isin(ids)])
    combined = pd.concat(pieces, ignore_index=True).sort_values(["fold", ID, TIME], kind="stable", ignore_index=True)
    m = season_length(spec)
    some = next(e for e in entries if e.ok)
    evaluation = evaluate(combined, some.backtest.scales(frame, m), season_length=m, quantiles=list(spec.forecast.quantiles))
    global_winner = select_winner(board, metric)
    return {
        "mapping": mapping,
        "winners": winners,
        "fallback": fallback,
        "unjudged": unjudged,
        "counts": counts,
        "aggregate": {k: float(v) for k, v in evaluation.aggregate.items()},
        "global_winner": global_winner,
        "global_aggregate": dict(by_name[global_winner].evaluation.aggregate),
    }


@dataclass(frozen=True)
class PerSeriesFactory:
    """Builds a :class:`~tidecast.models.per_series.PerSeriesForecaster` from the candidates' factories."""

    factories: dict[str, Callable[[], Forecaster]]
    mapping: dict[str, str]
    fallback: str

    def __call__(self) -> Forecaster:
        from tidecast.models.per_series import PerSeriesForecaster

        return PerSeriesForecaster(self.factories, self.mapping, fallback=self.fallback)  # type: ignore[return-value]


def _baseline_name(spec: Spec, board: pd.DataFrame) -> str | None:
    if spec.selection.baseline:
        return spec.selection.baseline
    ok = board[board["status"] == "ok"]
    for name, kind in zip(ok["candidate"], ok["kind"], strict=False):
        if kind == "seasonal_naive":
            return str(name)
    return None


def select_and_refit(backtested: dict[str, Any], frame: pd.DataFrame, spec: Spec, *, progress: Progress = _noop) -> dict[str, Any]:
    """The winner, scored on the held-out last horizon (trained on what precedes it), then refit on all data."""
    from tidecast.evaluation.selection import improvement_over, select_winner

    board: pd.DataFrame = backtested["leaderboard"]
    metric = backtested["metric"]
    if backtested.get("per_series") is not None:
        return _select_per_series(backtested, frame, spec, progress=progress)
    frame = with_aggregates(frame, spec)
    winner = select_winner(board, metric)
    entry = backtested["results"][winner]
    reconciled = _reconciled_factory(winner, backtested, frame, spec)
    from tidecast.evaluation.ensembles import ensemble_factory

    combined = ensemble_factory(winner, backtested, spec)
    if reconciled is not None:
        factory, kind = reconciled
    elif combined is not None:
        factory, kind = combined, "ensemble"
    else:
        candidate = next(c for c in spec.models if c.name == winner)
        factory, kind = factory_for(candidate, entry.params, spec), candidate.kind
    ctx = fit_context(spec, frame)
    _, horizon = spec.forecast_steps()
    quantiles = list(spec.forecast.quantiles)

    from tidecast.models.distributed import RefitCluster, fit_distributed

    cluster = RefitCluster(spec, kind, entry.params)  # a client when the winner trains distributed
    try:
        progress(0, 3, f"holdout score of {winner}")
        holdout, held, held_scales = holdout_run(factory, frame, ctx, spec, entry, client=cluster.client)
        baseline = _baseline_name(spec, board)
        baseline_holdout, base_held = None, None
        if baseline and baseline != winner:
            base_entry = backtested["results"][baseline]
            base_candidate = next(c for c in spec.models if c.name == baseline)
            baseline_holdout, base_held, _ = holdout_run(
                factory_for(base_candidate, base_entry.params, spec), frame, ctx, spec, base_entry
            )
        elif baseline == winner:
            baseline_holdout, base_held = holdout, held

        progress(1, 3, f"refitting {winner} on all data")
        started = time.perf_counter()
        model = _with_intervals(factory, entry, quantiles)()
        if cluster.client is not None:  # trained over the workers, then an ordinary local LightGBMModel
            model = fit_distributed(model, frame, ctx, client=cluster.client)
        else:
            model = model.fit(frame, ctx)
        refit_seconds = time.perf_counter() - started
    finally:
        cluster.close()
    progress(3, 3, f"{winner} refit in {refit_seconds:.1f} s")
    out = {
        "winner": winner,
        "kind": kind,
        "training": cluster.label,
        "params": entry.params,
        "metric": metric,
        "backtest_metrics": dict(entry.evaluation.aggregate),
        "holdout_metrics": holdout,
        "baseline": baseline,
        "baseline_holdout_metrics": baseline_holdout,
        "improvement_over_baseline": improvement_over(board, winner, baseline, metric) if baseline else None,
        "refit_seconds": refit_seconds,
        "horizon": horizon,
        "quantiles": quantiles,
        "context": ctx,
        "model": model,
        "trained_until": str(frame[TIME].max()),
        "n_series": int(frame[ID].nunique()),
        "series_ids": sorted(str(u) for u in pd.unique(frame[ID])),
        # the held-out forecasts, for the gate's significance test (tidecast.evaluation.significance)
        "holdout_steps": spec.holdout_steps(),
        "holdout_forecasts": {"winner": held, "baseline": base_held},
        "holdout_scales": held_scales,
        "ensembles": backtested.get("ensembles"),  # weights, and where each beats the best single candidate
    }
    if reconciled is not None:  # the model card tells callers to send every bottom series
        inner = getattr(model, "inner", model)  # under the interval calibration's wrapper
        out["hierarchy"] = {**inner.hierarchy.to_dict(), "method": inner.method}
    return out


def _select_per_series(backtested: dict[str, Any], frame: pd.DataFrame, spec: Spec, *, progress: Progress = _noop) -> dict[str, Any]:
    """``selection.scope: per_series``: one model holding every series' winner (and the fallback),
    scored on the held-out stretch, then refit on all data."""
    from tidecast.evaluation.metrics import evaluate

    board: pd.DataFrame = backtested["leaderboard"]
    metric = backtested["metric"]
    chosen = backtested["per_series"]
    quantiles = list(spec.forecast.quantiles)
    _, horizon = spec.forecast_steps()
    ctx = fit_context(spec, frame)
    needed = sorted({*chosen["mapping"].values(), chosen["fallback"]})
    factories: dict[str, Callable[[], Forecaster]] = {}
    for name in needed:
        entry = backtested["results"][name]
        candidate = next(c for c in spec.models if c.name == name)
        factories[name] = _with_intervals(factory_for(candidate, entry.params, spec), entry, quantiles)
    factory = PerSeriesFactory(factories, dict(chosen["mapping"]), chosen["fallback"])

    progress(0, 3, f"holdout score of the per-series choice ({len(needed)} candidates)")
    forecasts, scales = holdout_predictions(factory, frame, ctx, spec)
    m = season_length(spec)
    holdout = {k: float(v) for k, v in evaluate(forecasts, scales, season_length=m, quantiles=quantiles).aggregate.items()}
    baseline = _baseline_name(spec, board)
    baseline_holdout = None
    if baseline:
        base_entry = backtested["results"][baseline]
        base_candidate = next(c for c in spec.models if c.name == baseline)
        baseline_holdout = holdout_scores(factory_for(base_candidate, base_entry.params, spec), frame, ctx, spec, base_entry)
    improvement = None  # as for a global winner: on the backtest metric
    base_row = board[board["candidate"] == baseline] if baseline else board.iloc[0:0]
    if len(base_row) and base_row["status"].iloc[0] == "ok" and metric in chosen["aggregate"]:
        base_value = abs(float(base_row[metric].iloc[0])) if metric == "bias" else float(base_row[metric].iloc[0])
        value = abs(chosen["aggregate"][metric]) if metric == "bias" else chosen["aggregate"][metric]
        if base_value and np.isfinite(base_value):
            improvement = (base_value - value) / abs(base_value)

    progress(1, 3, "refitting the per-series winners on all data")
    started = time.perf_counter()
    model = factory().fit(frame, ctx)
    refit_seconds = time.perf_counter() - started
    progress(3, 3, f"per-series model refit in {refit_seconds:.1f} s")
    return {
        "winner": "per_series",
        "kind": "per_series",
        "params": {"fallback": chosen["fallback"], "candidates": needed},
        "metric": metric,
        "backtest_metrics": dict(chosen["aggregate"]),
        "holdout_metrics": holdout,
        "baseline": baseline,
        "baseline_holdout_metrics": baseline_holdout,
        "improvement_over_baseline": improvement,
        "refit_seconds": refit_seconds,
        "horizon": horizon,
        "quantiles": quantiles,
        "context": ctx,
        "model": model,
        "trained_until": str(frame[TIME].max()),
        "n_series": int(frame[ID].nunique()),
        "series_ids": sorted(str(u) for u in pd.unique(frame[ID])),
        "per_series": {
            "mapping": dict(chosen["mapping"]),
            "fallback": chosen["fallback"],
            "counts": model.winner_counts(),  # type: ignore[attr-defined]
            "global_winner": chosen["global_winner"],
            "global_backtest_metrics": chosen["global_aggregate"],
        },
    }


def _with_intervals(factory: Callable[[], Forecaster], entry: Any, quantiles: list[float]) -> Callable[[], Forecaster]:
    """The factory itself, or one whose models take conformal quantiles from ``entry``'s backtest."""
    from tidecast.evaluation.calibration import interval_residuals

    if quantiles and entry.backtest is not None:
        calibration = getattr(entry.backtest, "calibration", None)
        residuals = interval_residuals(entry.backtest.forecasts, calibration)[[ID, TIME, "step", TARGET, POINT]]
        return ConformalFactory(factory, residuals.copy(), force=True)
    return factory


def holdout_scores(
    factory: Callable[[], Forecaster], frame: pd.DataFrame, ctx: FitContext, spec: Spec, entry: Any, *, client: Any = None
) -> dict[str, float]:
    """Metrics of a candidate on the final held-out stretch (the same for every series), trained on
    everything before it (through mlforecast's Dask path on ``client``, when given)."""
    return holdout_run(factory, frame, ctx, spec, entry, client=client)[0]


def holdout_run(
    factory: Callable[[], Forecaster], frame: pd.DataFrame, ctx: FitContext, spec: Spec, entry: Any, *, client: Any = None
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """:func:`holdout_scores`, with the held-out forecasts and their MASE scales."""
    from tidecast.evaluation.metrics import evaluate

    quantiles = list(spec.forecast.quantiles)
    forecasts, scales = holdout_predictions(_with_intervals(factory, entry, quantiles), frame, ctx, spec, client=client)
    m = season_length(spec)
    evaluation = evaluate(forecasts, scales, season_length=m, quantiles=quantiles)
    return {k: float(v) for k, v in evaluation.aggregate.items()}, forecasts, scales


def holdout_predictions(
    make: Callable[[], Forecaster], frame: pd.DataFrame, ctx: FitContext, spec: Spec, *, client: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The forecasts of the held-out stretch (``backtest.holdout`` steps, default one horizon) and
    their MASE scales (``fold, unique_id, scale``). A stretch longer than the horizon is forecast
    one horizon at a time, each window by a model trained on everything before it (the first
    window starts early when the stretch is not a whole number of horizons; its rows before the
    stretch are dropped). Raises :class:`ModelError` when a window fails."""
    from tidecast.evaluation.backtest import _unit, backtest, holdout_forecast, make_folds

    window, horizon = spec.forecast_steps()
    length = spec.holdout_steps()
    quantiles = list(spec.forecast.quantiles)
    m = season_length(spec)
    if length <= horizon or client is not None:
        pieces = []
        if length <= horizon:
            ends = [None]
        else:  # mlforecast's Dask path forecasts one held-out window per call
            folds = make_folds(frame, h=horizon, folds=-(-length // horizon), step=horizon, freq=_unit(frame, ctx), min_train=window)
            ends = [f.test_end for f in folds]
        for index, end in enumerate(ends):
            part = frame if end is None else frame[frame[TIME] <= end]
            if client is not None:
                from tidecast.models.distributed import holdout_distributed

                result = holdout_distributed(make, part, ctx, min(length, horizon), client=client, quantiles=quantiles, min_train=window)
            else:
                result = holdout_forecast(make, part, ctx, min(length, horizon), quantiles=quantiles, min_train=window)
            _raise_failed(result, make)
            scales = result.scales(part, m)
            if end is not None:
                result.forecasts["fold"] = index
                scales["fold"] = index
            pieces.append((result.forecasts, scales))
        forecasts = pd.concat([p[0] for p in pieces], ignore_index=True)
        scales = pd.concat([p[1] for p in pieces], ignore_index=True)
    else:
        folds = make_folds(frame, h=horizon, folds=-(-length // horizon), step=horizon, freq=_unit(frame, ctx), min_train=window)
        result = backtest(make, frame, ctx, folds, quantiles=quantiles)
        _raise_failed(result, make)
        forecasts, scales = result.forecasts, result.scales(frame, m)
    if length > horizon:  # the stretch itself: the last `length` steps
        (stretch,) = make_folds(frame, h=length, folds=1, freq=_unit(frame, ctx), min_train=window)
        forecasts = forecasts[forecasts[TIME] >= stretch.test_start].reset_index(drop=True)
    return forecasts, scales


def _raise_failed(result: Any, factory: Any) -> None:
    if result.errors:
        name = getattr(getattr(factory, "candidate", None), "name", None) or getattr(factory, "name", None)
        inner = getattr(factory, "inner", None)
        name = name or getattr(getattr(inner, "candidate", None), "name", None) or "?"
        raise ModelError(f"candidate '{name}': held-out forecast failed: {result.errors[0]}")
