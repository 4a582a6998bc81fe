"""Scores on the final held-out stretch: each candidate trained on everything before it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from tidecast.errors import ModelError
from tidecast.evaluation.backtest import backtest, holdout_forecast, make_folds
from tidecast.evaluation.fold_work import _unit
from tidecast.evaluation.metrics import evaluate
from tidecast.frames import TIME
from tidecast.models.base import FitContext, Forecaster
from tidecast.spec import Spec
from tidecast.training.distributed import holdout_distributed
from tidecast.training.factories import _with_intervals, interval_day_kinds
from tidecast.training.settings import season_length


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
    quantiles = list(spec.forecast.quantiles)
    forecasts, scales = holdout_predictions(
        _with_intervals(factory, entry, quantiles, interval_day_kinds(spec)), frame, ctx, spec, client=client
    )
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
