"""The root of the spec, :class:`Spec`: every section, the checks across sections, the values
derived from them (steps, paths, fingerprint)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from tidecast import calendar
from tidecast.durations import Duration, to_steps
from tidecast.errors import SpecError
from tidecast.spec.base import _check_zone, _Model
from tidecast.spec.data import CleanSpec, DataSpec, FeatureSpec, FourierSpec, TargetSpec
from tidecast.spec.ensemble import check_ensembles
from tidecast.spec.forecast import BacktestSpec, CandidateSpec, ForecastSpec, HierarchySpec, SelectionSpec
from tidecast.spec.operations import (
    ExecutorSpec,
    MonitoringSpec,
    PredictionStoreSpec,
    RegistrySpec,
    ScheduleSpec,
    ServingSpec,
    TrackingSpec,
)


# --------------------------------------------------------------------------------------- root
class Spec(_Model):
    """A whole ``tidecast.yaml``."""

    project: str
    data: DataSpec
    target: TargetSpec = Field(default_factory=TargetSpec)
    clean: CleanSpec = Field(default_factory=CleanSpec)
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    forecast: ForecastSpec
    backtest: BacktestSpec = Field(default_factory=BacktestSpec)
    models: list[CandidateSpec] = Field(default_factory=list)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    hierarchy: HierarchySpec | None = Field(None, description="Series that add up (meter -> feeder -> substation -> total).")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    predictions: PredictionStoreSpec = Field(default_factory=PredictionStoreSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    seed: int = 0
    plugin_paths: list[str] = Field(
        default_factory=list,
        description="Folders (relative to the spec) put on sys.path so plugin kinds like 'my_models:build' import.",
    )
    envs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-environment overrides, merged into the spec by --env/TIDECAST_ENV."
    )

    # where the spec was read from; not part of the YAML
    root: Path = Field(default=Path("."), exclude=True)
    source_file: Path | None = Field(default=None, exclude=True)

    @field_validator("project")
    @classmethod
    def _check_project(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError(f"project name {value!r} may hold only letters, digits, '-', '_' and '.'")
        return value

    @model_validator(mode="after")
    def _check_candidates(self) -> Spec:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"candidate names must be unique; repeated: {', '.join(dupes)}")
        try:
            w, h = self.forecast_steps()
        except SpecError as exc:
            raise ValueError(exc.message) from None
        if h < 1:
            raise ValueError("forecast.horizon must be at least one step")
        if w < 1:
            raise ValueError("forecast.input_window must be at least one step")
        if self.data.timezone is not None:  # checked here, not on DataSpec, so that a bare DataSpec can be built
            try:
                _check_zone(self.data.timezone)
            except ValueError as exc:
                raise ValueError(f"data.timezone: {exc}") from None
        if self.hierarchy is not None:
            self._check_hierarchy(self.hierarchy)
        if self.backtest.holdout is not None:
            try:
                holdout = self.holdout_steps()
            except SpecError as exc:
                raise ValueError(exc.message) from None
            if holdout < 1:
                raise ValueError("backtest.holdout must be at least one step")
        check_ensembles(self)
        self._natural_defaults()
        return self

    def _natural_defaults(self) -> None:
        """Defaults written for fixed sub-daily data (``max_gap: 1h``, drift windows of ``1d``/``28d``)
        that do not fit the frequency (monthly, daily...) become the frequency's natural values, in
        steps; a value the spec sets is kept (and checked where it is used). On a calendar frequency,
        features without calendar parts or Fourier terms get the frequency's natural calendar parts."""
        season = calendar.season_length(self.data.frequency)
        window = max(2, season)
        natural: list[tuple[_Model, str, int]] = [
            (self.clean.gaps, "max_gap", calendar.natural_max_gap(self.data.frequency)),
            (self.monitoring.data_drift, "window", window),
            (self.monitoring.data_drift, "reference_window", 4 * window),
            (self.monitoring.model_drift, "window", window),
            (self.monitoring, "retrain_cooldown", window),
        ]
        features = self.features
        if not features.calendar and not features.fourier and calendar.natural_calendar(self.data.frequency):
            features.calendar = calendar.natural_calendar(self.data.frequency)  # type: ignore[assignment]
            if calendar.info(self.data.frequency).family == "weekly":  # the year is 52.18 weeks: a Fourier term
                features.fourier = [FourierSpec(period="1 year", order=2)]
        for section, name, steps in natural:
            value = getattr(section, name)
            if name in section.model_fields_set or value is None:
                continue
            try:
                to_steps(value, self.data.frequency)
            except SpecError:
                setattr(section, name, steps)

    def _check_hierarchy(self, hierarchy: HierarchySpec) -> None:
        data = self.data
        if not data.series_column:
            raise ValueError("hierarchy.levels: a hierarchy needs long-format data (set data.series_column)")
        taken = {data.series_column: "data.series_column", data.time_column: "data.time_column",
                 data.target_column: "data.target_column"}
        taken.update({c.name: "data.exogenous" for c in data.exogenous_columns})
        taken.update({c: "data.static_columns" for c in data.static_columns})
        for level in hierarchy.levels:
            if level in taken:
                raise ValueError(f"hierarchy.levels: column '{level}' is already {taken[level]}")
        if self.selection.scope != "global":
            raise ValueError("selection.scope: a hierarchy needs scope 'global' (per-series winners would not add up)")

    # -- derived values ---------------------------------------------------------------------
    def steps(self, value: Duration, field: str) -> int:
        """``value`` in steps of the data frequency."""
        return to_steps(value, self.data.frequency, field=field)

    def forecast_steps(self) -> tuple[int, int]:
        """(input window, horizon) in steps."""
        return (
            self.steps(self.forecast.input_window, "forecast.input_window"),
            self.steps(self.forecast.horizon, "forecast.horizon"),
        )

    def holdout_steps(self) -> int:
        """The held-out stretch in steps: ``backtest.holdout``, else one horizon."""
        if self.backtest.holdout is None:
            return self.forecast_steps()[1]
        return self.steps(self.backtest.holdout, "backtest.holdout")

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.project

    @property
    def state_dir(self) -> Path:
        """The project's working folder: cache, tracking store, prediction logs."""
        return self.root / ".tidecast"

    def resolve_path(self, value: str) -> str:
        """A relative file path resolved against the spec's folder; URLs pass through."""
        if "://" in value or value.startswith(("sqlite:", "postgresql:", "mysql:")):
            return value
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (self.root / path).resolve())

    def section(self, *names: str) -> dict[str, Any]:
        """A JSON-able slice of the spec (for cache keys and run records)."""
        dumped = self.model_dump(mode="json")
        source = dumped["data"]["source"]
        root = str(self.root.resolve())
        if source.startswith(root + os.sep):  # keep cache keys valid when the project folder moves
            dumped["data"]["source"] = os.path.relpath(source, root)
        return {name: dumped.get(name) for name in names}

    def fingerprint(self) -> str:
        """A stable hash of the whole resolved spec."""
        payload = json.dumps(self.model_dump(mode="json", exclude={"envs"}), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
