"""Global LightGBM models trained through mlforecast's own Dask path (``executor.global_models``).

With ``executor: {kind: dask}`` a ``kind: lightgbm`` candidate trains in one of two ways:

* ``single``: every backtest fold (and the refit) is one task that fits the ordinary
  :class:`~tidecast.models.ml.LightGBMModel` on the gathered data inside one worker: the same
  results as ``executor: local``, seed for seed;
* ``distributed``: the data stays spread over the workers (whole series per Dask partition) and
  each fit goes through ``mlforecast.distributed.DistributedMLForecast`` with
  ``DaskLGBMForecast`` (LightGBM's Dask estimator): mlforecast computes the lag, rolling and
  exogenous features partition by partition and LightGBM trains data-parallel over the workers.
  The fitted model is then converted with ``DistributedMLForecast.to_local()`` into an ordinary
  ``LightGBMModel`` (the same class, attributes and pickle as one fit on one machine), which
  forecasts each fold's test window here and is what the registry stores and serving loads.

``auto`` (the default) resolves to ``distributed`` when ``executor.address`` names an existing
cluster and to ``single`` on a ``LocalCluster`` (see :func:`resolve_global_models`). Other global
kinds (sklearn, mlp, plugins) have no library Dask path and always train ``single``.

What is not identical: distributed LightGBM finds its histogram bins on each worker's share of
the data and merges them, so the trees (and forecasts) differ slightly from a single-machine fit
on the same data and seed; the scores are close, not equal. The features are the same ones:
:class:`~tidecast.models.ml.MLForecastModel`'s own helpers resolve the lags, rolling windows,
time features (dynamic exogenous ``X_df``), known-future exogenous and numeric static columns,
``fit_window`` and the LightGBM parameters and seed.

``strategy: direct`` (one model per horizon step, mlforecast's ``max_horizon``) has no
distributed counterpart in mlforecast: such a candidate trains ``single``, and the reason is
recorded in its training label (:func:`plan_training`), not silently.

The data is either a pandas frame (split into whole-series pieces and scattered to the workers)
or Parquet files each holding whole series sorted by ``unique_id, ds`` (read by the workers with
``dask.dataframe.read_parquet``, one partition per file); a
:class:`~tidecast.data.partitions.PartitionedFrame` is taken as its files.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from tidecast.data.target import apply_transform
from tidecast.errors import BacktestError, ModelError
from tidecast.evaluation.backtest_result import FoldError, FoldResult, _result
from tidecast.evaluation.fold_work import _assemble, _error_text, _FoldOutput, _unit
from tidecast.evaluation.folds import holdout_fold
from tidecast.frames import ID, TARGET, TIME
from tidecast.models.base import FitContext, Forecaster
from tidecast.models.conformal import ConformalForecaster
from tidecast.models.ml import _THREAD_PARAMS, LightGBMModel, MLForecastModel
from tidecast.models.registry import fits_per_series
from tidecast.models.transform import TransformedForecaster
from tidecast.pipeline.executors import make_executor
from tidecast.training.dask_data import _on, _Source, n_dask_workers, source_for, spread

LIBRARY = "mlforecast + LightGBM Dask"

DISTRIBUTED_KINDS = frozenset({"lightgbm"})
"""Candidate kinds with a library Dask path."""


# ----------------------------------------------------------------------------------------- planning
def resolve_global_models(executor: Any) -> str:
    """``'single'`` or ``'distributed'``: how global models train under the spec's ``executor``
    section (a :class:`~tidecast.spec.ExecutorSpec`, or ``None`` for local).

    >>> from tidecast.spec import ExecutorSpec
    >>> resolve_global_models(ExecutorSpec(kind="dask")), resolve_global_models(ExecutorSpec(kind="dask", address="tcp://h:8786"))
    ('single', 'distributed')
    """
    if executor is None or getattr(executor, "kind", "local") != "dask":
        return "single"
    mode = getattr(executor, "global_models", "auto")
    if mode == "auto":
        return "distributed" if getattr(executor, "address", None) else "single"
    return str(mode)


def unsupported_reason(kind: str, params: dict[str, Any]) -> str | None:
    """Why a candidate cannot train through the library's Dask path (``None``: it can)."""
    if kind not in DISTRIBUTED_KINDS:
        return f"kind '{kind}' has no library Dask path"
    if params.get("strategy", "recursive") == "direct":
        return "strategy: direct (one model per horizon step) has no mlforecast Dask counterpart"
    return None


@dataclass(frozen=True)
class TrainingPlan:
    """Which path trains a candidate, in words for the leaderboard, the report and the run."""

    mode: str
    """``'distributed'``, ``'single'`` or ``'per series'``."""
    label: str
    reason: str | None = None

    @property
    def distributed(self) -> bool:
        return self.mode == "distributed"


def dask_client(executor: Any) -> Any:
    """The ``distributed.Client`` behind ``executor`` (a Dask executor, shared or not), else ``None``."""
    client = getattr(executor, "client", None) if executor is not None else None
    if client is None:
        return None
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed ships with the dask extra
        return None
    return client if isinstance(client, Client) else None


def plan_training(spec: Any, kind: str, params: dict[str, Any], executor: Any) -> TrainingPlan:
    """How a candidate of ``kind`` with ``params`` trains on ``executor`` under ``spec``."""
    if fits_per_series(kind):
        return TrainingPlan("per series", "per series")
    client = dask_client(executor)
    if client is None:
        return TrainingPlan("single", "single")
    wanted = resolve_global_models(spec.executor)
    if wanted != "distributed":
        return TrainingPlan("single", "single (one worker per fit)")
    reason = unsupported_reason(kind, params)
    if reason is not None:
        return TrainingPlan("single", f"single (one worker per fit): {reason}", reason)
    return TrainingPlan("distributed", f"distributed ({LIBRARY}, {n_dask_workers(client)} workers)")


class RefitCluster:
    """Where a winner's held-out score and refit train: ``client`` is a Dask client when the
    winner trains distributed (a cluster of the spec's executor, closed by :meth:`close`), else
    ``None`` (the ordinary in-process fit). ``label`` says which, for the run's record."""

    def __init__(self, spec: Any, kind: str, params: dict[str, Any]) -> None:
        self._executor: Any = None
        self.client: Any = None
        self.label = "per series" if fits_per_series(kind) else "single"
        if self.label != "single" or resolve_global_models(spec.executor) != "distributed":
            return
        reason = unsupported_reason(kind, params)
        if reason is not None:
            self.label = f"single: {reason}"
            return

        self._executor = make_executor(spec.executor, spec.backtest.n_jobs)
        self.client = dask_client(self._executor)
        if self.client is None:  # pragma: no cover - a dask executor always has one
            self.close()
            return
        self.label = plan_training(spec, kind, params, self._executor).label

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None


# ------------------------------------------------------------------------------------- training
def _chain(model: Any) -> tuple[MLForecastModel, list[str]]:
    """The LightGBM model inside ``model``'s wrappers, and the target transforms to apply (outer first).

    Conformal and target-transform wrappers only fit their inner model; anything else has no
    distributed fit."""
    transforms: list[str] = []
    inner = model
    while isinstance(inner, ConformalForecaster | TransformedForecaster):
        if isinstance(inner, TransformedForecaster) and inner.transform != "none":
            transforms.append(inner.transform)
        inner = inner.inner
    if not isinstance(inner, LightGBMModel):
        raise ModelError(f"distributed training: {type(inner).__name__} has no library Dask path (only kind: lightgbm)")
    return inner, transforms


def _trimmed_part(part: pd.DataFrame, model: MLForecastModel, transforms: Sequence[str]) -> pd.DataFrame:
    out = model._trimmed(part)
    for name in transforms:
        out[TARGET] = apply_transform(out[TARGET], name)
    return out


def _train_part(part: pd.DataFrame, model: MLForecastModel, transforms: Sequence[str]) -> pd.DataFrame:
    """A partition as ``LightGBMModel.fit`` trains on it: trimmed to ``fit_window``, transformed,
    standardised per series (``scaling``: a partition holds whole series, so its own statistics are
    the series'), time features added."""
    trimmed = _trimmed_part(part, model, transforms)
    return model._with_time(model._scaled_frame(trimmed, model._series_stats(trimmed)))


def _stats_part(part: pd.DataFrame, model: MLForecastModel, transforms: Sequence[str]) -> pd.DataFrame:
    """The scaling statistics of a partition's series (what the fitted model keeps for forecasting)."""
    stats = model._series_stats(_trimmed_part(part, model, transforms))
    return stats if stats is not None else pd.DataFrame({"mean": [], "std": []})


def _tail_part(part: pd.DataFrame, model: MLForecastModel, transforms: Sequence[str], keep: int) -> pd.DataFrame:
    """The last readings of each series of a partition, as the fitted model keeps them for forecasting."""
    return _trimmed_part(part, model, transforms).groupby(ID, sort=False).tail(keep).reset_index(drop=True)


def _nonempty(ddf: Any, client: Any) -> Any:
    """``ddf`` without its empty partitions (LightGBM's Dask training fails on a worker holding none)."""
    lengths = client.compute(ddf.map_partitions(len)).result()
    keep = [i for i, n in enumerate(np.asarray(lengths).ravel().tolist()) if n]
    if not keep:
        raise ModelError("distributed training: no training rows")
    return ddf if len(keep) == ddf.npartitions else ddf.partitions[keep]


def _fit_inner(model: MLForecastModel, train: Any, ctx: FitContext, client: Any, transforms: Sequence[str]) -> None:
    """Fit ``model`` (a LightGBMModel) on the Dask frame ``train`` through DistributedMLForecast and
    make it the ordinary local model (``to_local``)."""
    from mlforecast.core import _build_transform_name
    from mlforecast.distributed import DistributedMLForecast
    from mlforecast.distributed.models.dask.lgb import DaskLGBMForecast

    model._setup(train.dtypes, ctx)
    if model._max_h is not None:
        raise ModelError(f"candidate '{model.name}': {unsupported_reason('lightgbm', {'strategy': 'direct'})}")
    sample = train._meta_nonempty
    meta = _train_part(sample, model, ())  # also sets model._time (the time feature names), here
    tail_meta = _tail_part(sample, model, (), 1).iloc[:0]
    train = _nonempty(train, client)
    features = train.map_partitions(_train_part, model, tuple(transforms), meta=meta.iloc[:0])
    tails = train.map_partitions(_tail_part, model, tuple(transforms), model._needed(), meta=tail_meta)
    stats_meta = pd.DataFrame({"mean": pd.Series([], dtype=float), "std": pd.Series([], dtype=float)})
    stats_meta.index = pd.Index([], dtype=object, name=ID)
    stats = train.map_partitions(_stats_part, model, tuple(transforms), meta=stats_meta) if model._scaled else None
    # LightGBM's Dask estimator runs each worker's share on that worker's threads: no thread count of ours
    params = {k: v for k, v in model._estimator(ctx).get_params().items() if k not in _THREAD_PARAMS}
    fcst = DistributedMLForecast(
        models={"model": DaskLGBMForecast(**params)},
        engine=client,
        lag_transforms_namer=_build_transform_name,  # mlforecast's local naming (the local model's feature names)
        **model._mlforecast_args(),
    )
    args = model._fit_args()
    args.pop("max_horizon")
    try:
        fcst.fit(features, **args)
        local = fcst.to_local()
        tail = client.compute(tails).result()
        series_stats = client.compute(stats).result() if stats is not None else None
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"candidate '{model.name}': distributed lightgbm training failed: {type(exc).__name__}: {exc}"
        ) from exc
    local.ts.lag_transforms_namer = None  # as MLForecast leaves it (the distributed default is a local closure)
    tail = tail.sort_values([ID, TIME], kind="stable", ignore_index=True)
    model._adopt(local, tail)
    model._stats = series_stats


def fit_distributed(model: Forecaster, data: Any, ctx: FitContext, *, client: Any) -> Forecaster:
    """Fit ``model`` (a LightGBMModel, possibly inside conformal/transform wrappers) on ``data`` (a
    frame, Parquet files or a :func:`spread` source) through mlforecast's Dask path; returns it,
    fitted: the inner model is an ordinary LightGBMModel (pickles and serves like any other)."""
    inner, transforms = _chain(model)
    source = data if isinstance(data, _Source) else spread(data, ctx, client)
    with _on(client):
        _fit_inner(inner, source.frame, ctx, client, transforms)
    return model


# ------------------------------------------------------------------------------------- backtest
def _train_rows(frame: Any, fold: Any) -> Any:
    ds = frame[TIME]
    mask = ds <= fold.cutoff
    if fold.train_start is not None:
        mask &= ds >= fold.train_start
    if fold.series is not None:
        mask &= frame[ID].isin([str(s) for s in fold.series])
    return frame[mask]


def _future_rows(frame: Any, fold: Any, columns: Sequence[str], client: Any) -> pd.DataFrame:
    """The rows after the fold's cut-off through its last test step (small: series x (gap + h))."""
    ds = frame[TIME]
    mask = (ds > fold.cutoff) & (ds <= fold.test_end)
    if fold.series is not None:
        mask &= frame[ID].isin([str(s) for s in fold.series])
    rows = client.compute(frame[mask][list(columns)]).result()
    return rows.sort_values([ID, TIME], kind="stable", ignore_index=True)


def backtest_distributed(
    make_model: Callable[[], Forecaster],
    data: Any,
    ctx: FitContext,
    folds: Sequence[Any],
    *,
    client: Any,
    quantiles: Sequence[float] = (),
) -> Any:
    """:func:`tidecast.evaluation.backtest.backtest` for a LightGBM candidate, each fold fit through
    mlforecast's Dask path on ``client``: the same :class:`~tidecast.evaluation.backtest.BacktestResult`
    (forecasts ``unique_id, ds, fold, cutoff, step, y, yhat`` (+ quantiles), timings, errors).

    Each fold: a fresh model from ``make_model()`` trains distributed on the fold's training rows
    (they stay on the workers), becomes a local model, and forecasts ``gap + h`` steps here from
    its stored tail, with the known-future exogenous values of the test window. A fold that fails
    is recorded in ``errors``; the others go on. ``fit_seconds`` is the wall time of the
    distributed fit (the cluster's, not one worker's)."""
    if not folds:
        raise BacktestError("backtest: no folds to run")
    quantiles = tuple(quantiles)
    source = data if isinstance(data, _Source) else spread(data, ctx, client)
    exog = tuple(ctx.exog_future)
    absent = [c for c in exog if c not in source.frame.columns]
    if absent:
        raise BacktestError(f"backtest: future exogenous column(s) {', '.join(absent)} are not in the data")
    longest = max(f.h + f.gap for f in folds)
    fold_ctx = replace(ctx, horizon=longest) if longest > ctx.horizon else ctx
    shape = pd.DataFrame({ID: pd.Series([], dtype=source.id_dtype), TIME: pd.Series([], dtype=source.time_dtype)})
    unit = _unit(shape, ctx)
    results: list[FoldResult] = []
    with _on(client):
        for fold in folds:
            fit_s = predict_s = 0.0
            frame, error = None, None
            try:
                future = _future_rows(source.frame, fold, [ID, TIME, TARGET, *exog], client)
                if future[ID].dtype != source.id_dtype:
                    future[ID] = future[ID].astype(source.id_dtype)
                    future = future.sort_values([ID, TIME], kind="stable", ignore_index=True)
                in_test = (future[TIME] >= fold.test_start) & (future[TIME] <= fold.test_end)
                actuals = future.loc[in_test, [ID, TIME, TARGET]].reset_index(drop=True)
                try:
                    started = time.perf_counter()
                    model = make_model()
                    inner, transforms = _chain(model)
                    _fit_inner(inner, _train_rows(source.frame, fold), fold_ctx, client, transforms)
                    fit_s = time.perf_counter() - started
                    started = time.perf_counter()
                    X_future = future[[ID, TIME, *exog]] if exog else None
                    predictions = model.predict(fold.gap + fold.h, X_future=X_future, quantiles=list(quantiles))
                    predict_s = time.perf_counter() - started
                    output = _FoldOutput(predictions, fit_s, predict_s)
                except Exception as exc:
                    output = _FoldOutput(None, fit_s, predict_s, _error_text(exc), traceback.format_exc())
                if output.error is not None:
                    error = FoldError(fold.index, fold.cutoff, output.error, output.traceback)
                else:
                    frame = _assemble(fold, output, actuals, unit, quantiles)
            except Exception as exc:
                error = FoldError(fold.index, fold.cutoff, _error_text(exc), traceback.format_exc())
            n_series = len(fold.series) if fold.series is not None else _n_series(source, client)
            results.append(FoldResult(fold, frame, fit_s, predict_s, n_series, error))
    return _result(list(folds), results, shape, quantiles)


def _n_series(source: _Source, client: Any) -> int:
    cached = getattr(source, "_n_series", None)
    if cached is None:
        cached = int(client.compute(source.frame[ID].nunique()).result())
        source._n_series = cached  # type: ignore[attr-defined]
    return cached


def holdout_distributed(
    make_model: Callable[[], Forecaster],
    frame: pd.DataFrame,
    ctx: FitContext,
    holdout_h: int,
    *,
    client: Any,
    quantiles: Sequence[float] = (),
    min_train: int = 1,
) -> Any:
    """:func:`tidecast.evaluation.backtest.holdout_forecast` (the final held-out stretch), trained
    through mlforecast's Dask path."""

    datetime = pd.api.types.is_datetime64_any_dtype(frame[TIME])
    fold = holdout_fold(frame, holdout_h, freq=_unit(frame, ctx) if datetime else None, min_train=min_train)
    return backtest_distributed(make_model, frame, ctx, [fold], client=client, quantiles=quantiles)


__all__ = [
    "DISTRIBUTED_KINDS",
    "LIBRARY",
    "RefitCluster",
    "TrainingPlan",
    "backtest_distributed",
    "dask_client",
    "fit_distributed",
    "holdout_distributed",
    "plan_training",
    "resolve_global_models",
    "source_for",
    "spread",
    "unsupported_reason",
]
