"""How a candidate's models are built: one picklable factory per candidate and parameter set,
wrapped for conformal intervals or combined per series."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tidecast.errors import ModelError
from tidecast.evaluation.calibration import interval_residuals
from tidecast.evaluation.search import grid, is_searched
from tidecast.frames import ID, POINT, TARGET, TIME
from tidecast.models.base import Forecaster
from tidecast.models.conformal import ConformalForecaster
from tidecast.models.day_kinds import DayKinds, day_kinds_for
from tidecast.models.per_series import PerSeriesForecaster
from tidecast.models.plugins import add_search_path
from tidecast.models.registry import build_forecaster
from tidecast.models.transform import TransformedForecaster
from tidecast.spec import CandidateSpec, RangeParam, Spec


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
    if not spec.models:
        raise ModelError("models: the spec lists no candidate models (add at least a seasonal_naive)")
    for candidate in spec.models:
        if candidate.kind == "ensemble":  # built from its members' backtests (tidecast.training.ensembles)
            continue
        params = candidate.params
        first = params if not is_searched(params) else (grid(params)[0] if not _has_ranges(params) else None)
        if first is not None:
            factory_for(candidate, first, spec)()


def _has_ranges(params: dict[str, Any]) -> bool:
    return any(isinstance(v, RangeParam | dict) and not isinstance(v, list) for v in params.values())


@dataclass(frozen=True)
class ConformalFactory:
    """A model factory whose models get conformal quantiles from fixed backtest residuals."""

    inner: Callable[[], Forecaster]
    residuals: pd.DataFrame
    force: bool = False
    day_kinds: DayKinds | None = None

    def __call__(self) -> Forecaster:
        return ConformalForecaster(self.inner(), self.residuals, force=self.force, day_kinds=self.day_kinds)


def interval_day_kinds(spec: Spec) -> DayKinds | None:
    """The kinds of day the intervals of ``spec``'s series are calibrated by (``backtest.day_kinds``)."""
    if not getattr(spec.backtest, "day_kinds", True):
        return None
    return day_kinds_for(spec.data.frequency, spec.data.timezone, spec.features.holidays_country)


@dataclass(frozen=True)
class PerSeriesFactory:
    """Builds a :class:`~tidecast.models.per_series.PerSeriesForecaster` from the candidates' factories."""

    factories: dict[str, Callable[[], Forecaster]]
    mapping: dict[str, str]
    fallback: str

    def __call__(self) -> Forecaster:
        return PerSeriesForecaster(self.factories, self.mapping, fallback=self.fallback)  # type: ignore[return-value]


def _with_intervals(
    factory: Callable[[], Forecaster], entry: Any, quantiles: list[float], day_kinds: DayKinds | None = None
) -> Callable[[], Forecaster]:
    """The factory itself, or one whose models take conformal quantiles from ``entry``'s backtest
    (by ``day_kinds``: :func:`interval_day_kinds`)."""
    if quantiles and entry.backtest is not None:
        calibration = getattr(entry.backtest, "calibration", None)
        residuals = interval_residuals(entry.backtest.forecasts, calibration)[[ID, TIME, "step", TARGET, POINT]]
        return ConformalFactory(factory, residuals.copy(), force=True, day_kinds=day_kinds)
    return factory
