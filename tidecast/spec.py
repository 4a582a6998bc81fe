"""The models of ``tidecast.yaml``: the single source of truth for a project's configuration.

Load a spec with :func:`load_spec`; it resolves relative paths against the spec's folder,
applies an environment's overrides (``envs: {dev: ..., prod: ...}``) and turns every
validation problem into a :class:`~tidecast.errors.SpecError` that names the file, the line
and the field, with a "did you mean" for typos.

>>> spec = load_spec("examples/power/tidecast.yaml")      # doctest: +SKIP
>>> spec.forecast_steps()                                   # doctest: +SKIP
(288, 288)
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from tidecast import calendar
from tidecast.cron import parse_cron
from tidecast.durations import Duration, to_steps
from tidecast.errors import SpecError

SPEC_FILENAME = "tidecast.yaml"


class _Model(BaseModel):
    """Base for every spec section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _check_zone(value: str) -> str:
    """``value`` if it names an IANA time zone, else a ValueError (pydantic turns it into a field error)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use e.g. 'UTC' or 'Europe/Paris')") from None
    return value


# --------------------------------------------------------------------------------------- data
class ExogenousColumn(_Model):
    """An extra input column. ``known_in_future`` columns (a weather forecast, a calendar) must
    be supplied for the forecast horizon; past-only columns are used through lags only."""

    name: str
    known_in_future: bool = True


class DataSpec(_Model):
    """Where the data is and how to read it."""

    source: str = Field(description="A path (CSV, Parquet, JSON), an fsspec URL, or a SQLAlchemy URL.")
    time_column: str = "timestamp"
    target_column: str = "y"
    series_column: str | None = Field(None, description="Series id column for long-format data.")
    frequency: str = Field(
        description="Pandas frequency of the series: fixed ('5min', 'h', 'D') or calendar ('B', 'C:US' for business "
        "days without a country's holidays, 'W-MON', 'MS'/'ME', 'QS'/'QE', 'YS'/'YE')."
    )
    timezone: str | None = Field(
        None, description="Time zone of naive timestamps in the source (stored as UTC; calendar features use it)."
    )
    exogenous: list[ExogenousColumn | str] = Field(default_factory=list)
    static_columns: list[str] = Field(default_factory=list, description="Per-series constant columns.")
    query: str | None = Field(None, description="SQL query, for SQL sources.")
    table: str | None = Field(None, description="SQL table, for SQL sources without a query.")
    format: Literal["csv", "parquet", "json"] | None = Field(None, description="Override the format inferred from the extension.")
    read_options: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments for the pandas reader.")

    @field_validator("frequency")
    @classmethod
    def _check_frequency(cls, value: str) -> str:
        try:
            calendar.info(value)
        except SpecError as exc:
            raise ValueError(exc.message.removeprefix("data.frequency: ")) from None
        return value

    @field_validator("exogenous")
    @classmethod
    def _normalise_exogenous(cls, value: list[ExogenousColumn | str]) -> list[ExogenousColumn | str]:
        return [ExogenousColumn(name=v) if isinstance(v, str) else v for v in value]

    @model_validator(mode="after")
    def _check_sql(self) -> DataSpec:
        if self.query and self.table:
            raise ValueError("give either data.query or data.table, not both")
        return self

    @property
    def exogenous_columns(self) -> list[ExogenousColumn]:
        return [ExogenousColumn(name=v) if isinstance(v, str) else v for v in self.exogenous]


# ------------------------------------------------------------------------------------- target
class ResampleSpec(_Model):
    """Aggregate the raw series to a coarser frequency before anything else."""

    rule: str
    agg: Literal["mean", "sum", "min", "max", "median", "last", "first"] = "mean"


class TargetSpec(_Model):
    """How the forecast target is built from the raw columns."""

    sum_of: list[str] = Field(default_factory=list, description="Build the target as the sum of these columns.")
    resample: ResampleSpec | None = None
    transform: Literal["none", "log1p", "sqrt"] = Field(
        "none", description="Invertible transform applied before fitting and undone on forecasts."
    )


# -------------------------------------------------------------------------------------- clean
class GapSpec(_Model):
    method: Literal["interpolate", "ffill", "seasonal", "error"] = "interpolate"
    max_gap: Duration | None = Field("1h", description="Longest gap filled; longer gaps are an error. None: no limit.")
    season_length: Duration | None = Field(None, description="For method 'seasonal': the season (default: one day).")


class OutlierSpec(_Model):
    method: Literal["none", "iqr", "zscore", "hampel"] = "none"
    action: Literal["clip", "mark", "interpolate"] = "clip"
    threshold: float = Field(3.0, gt=0, description="IQR multiplier, z-score or Hampel MAD multiplier.")
    window: Duration = Field(12, description="Window (steps or duration) for the Hampel filter.")


class CleanSpec(_Model):
    duplicates: Literal["mean", "last", "first", "error"] = Field(
        "mean",
        description="Rows repeating a (series, time) pair: merged by their mean (counted in the clean step's "
        "summary and change log), the first or last kept, or 'error' (the first pair and the count, at ingest).",
    )
    regularize_agg: Literal["mean", "sum", "last", "first", "median"] = Field(
        "mean", description="Aggregation used when several readings fall in one step."
    )
    gaps: GapSpec = Field(default_factory=GapSpec)
    outliers: OutlierSpec = Field(default_factory=OutlierSpec)
    min_length: Duration | None = Field(
        None, description="Series shorter than this after cleaning are an error (default: input window + horizon)."
    )


# ----------------------------------------------------------------------------------- features
CalendarPart = Literal[
    "minute", "hour", "weekday", "day", "month", "dayofyear", "weekend", "holiday",
    "week", "quarter", "days_in_month", "trading_days",
]


class RollingSpec(_Model):
    window: Duration
    stats: list[Literal["mean", "std", "min", "max"]] = Field(default_factory=lambda: ["mean"])


class FourierSpec(_Model):
    period: Duration
    order: int = Field(3, ge=1, le=50)


class FeatureSpec(_Model):
    lags: list[Duration] = Field(default_factory=list)
    rolling: list[RollingSpec] = Field(default_factory=list)
    calendar: list[CalendarPart] = Field(default_factory=list)
    holidays_country: str | None = Field(None, description="ISO country code for the 'holiday' calendar part.")
    fourier: list[FourierSpec] = Field(default_factory=list)


# ----------------------------------------------------------------------------------- forecast
class ForecastSpec(_Model):
    input_window: Duration = Field(description="History a model sees at prediction time (e.g. '24h' or 288).")
    horizon: Duration = Field(description="How far ahead to forecast (e.g. '24h' or 288).")
    quantiles: list[float] = Field(default_factory=lambda: [0.1, 0.9])

    @field_validator("quantiles")
    @classmethod
    def _check_quantiles(cls, value: list[float]) -> list[float]:
        bad = [q for q in value if not 0 < q < 1]
        if bad:
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {bad}")
        return sorted(set(value))


# ----------------------------------------------------------------------------------- backtest
class BacktestSpec(_Model):
    folds: int = Field(3, ge=1, le=1000)
    step: Duration | None = Field(None, description="Distance between fold cut-offs (default: the horizon).")
    window: Literal["expanding", "sliding"] = "expanding"
    train_window: Duration | None = Field(
        None, description="Training length per fold for 'sliding' (and the cap for statistical models)."
    )
    gap: Duration = Field(0, description="Steps left out between the training end and the forecast start.")
    n_jobs: int = Field(1, description="Folds run in parallel with joblib; -1 uses every core.")
    holdout: Duration | None = Field(
        None,
        description="Held-out stretch after the folds, on which the winner and the gate are judged (default: one "
        "horizon); a duration or a step count. Longer than a horizon: forecast one horizon at a time. See docs/gate.md.",
    )
    calibration_windows: int = Field(
        10, ge=0, le=1000,
        description="Forecast origins before the first fold, one horizon apart, whose residuals calibrate the "
        "intervals (forecast without refitting; fewer when the history is short).",
    )


# ------------------------------------------------------------------------------------- models
class RangeParam(_Model):
    """A searched range: ``{low: 0.01, high: 0.3, log: true}`` (ints stay ints)."""

    low: int | float
    high: int | float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> RangeParam:
        if self.low >= self.high:
            raise ValueError(f"range low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


ParamValue = RangeParam | list[Any] | Any


class SearchSpec(_Model):
    trials: int = Field(10, ge=1)
    timeout: float | None = Field(None, gt=0, description="Seconds for the whole search of this candidate.")
    seed: int = 0


class CandidateSpec(_Model):
    """One candidate model. ``kind`` is a built-in name or an import path ``package.module:function``."""

    name: str
    kind: str
    params: dict[str, ParamValue] = Field(default_factory=dict)
    search: SearchSpec | None = None
    features: FeatureSpec | None = Field(None, description="Overrides the project's features for this candidate.")
    fit_window: Duration | None = Field(
        None, description="Fit on at most this much trailing history (bounds statistical models' cost)."
    )
    clean: str | None = Field(None, description="Import path of a custom cleaning function df -> df.")
    feature_fn: str | None = Field(None, description="Import path of a custom feature function df -> df.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError(f"candidate name {value!r} may hold only letters, digits, '-', '_' and '.'")
        return value


class SelectionSpec(_Model):
    metric: Literal["mae", "rmse", "mape", "smape", "mase", "wape", "pinball", "interval_score"] = "mase"
    scope: Literal["global", "per_series"] = "global"
    baseline: str | None = Field(None, description="Candidate used as the yardstick (default: the seasonal naive).")
    fallback: str | None = Field(
        None,
        description="scope per_series: the candidate for series too short to judge or new at serving time "
        "(default: the global winner).",
    )
    ensemble: Literal["auto", "off"] = Field(
        "off",
        description="'auto' adds a weighted ensemble of every other candidate (greedy selection on the backtest "
        "forecasts); or list one in models: with kind: ensemble.",
    )


ReconcileMethod = Literal["bottom_up", "min_trace_ols", "min_trace_wls_struct", "min_trace_shrink"]


class HierarchySpec(_Model):
    """Series that add up: each bottom series (the data's series) names its parent at every level in
    a column of the data; a ``total`` node sits on top. Every candidate forecasts every node, and its
    forecasts are reconciled (made to add up) by each method, as extra candidates."""

    levels: list[str] = Field(
        min_length=1,
        description="Columns naming each series' parent, finest level first, e.g. [feeder, substation].",
    )
    methods: list[ReconcileMethod] = Field(
        default_factory=lambda: ["bottom_up", "min_trace_ols", "min_trace_wls_struct"],
        min_length=1,
        description="Reconciliation methods; each reconciled candidate is named <candidate>/<method>.",
    )
    total: str = Field("total", description="The series id of the top node (the sum of every series).")
    tolerance: float = Field(
        1e-3, ge=0, description="Relative tolerance when the data's own aggregate rows are checked against their children's sum."
    )

    @field_validator("levels", "methods")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"repeated: {', '.join(repeated)}")
        return value


# ---------------------------------------------------------------------------- tracking/registry
class TrackingSpec(_Model):
    uri: str | None = Field(None, description="MLflow tracking URI (default: SQLite under .tidecast/).")
    experiment: str | None = Field(None, description="Experiment name (default: the project name).")
    artifact_location: str | None = None


class GateSpec(_Model):
    max_metric: float | None = Field(None, description="The winner's metric must be at most this.")
    min_improvement: float = Field(0.0, description="Relative improvement over the baseline required (0.05 = 5 %).")
    must_beat_champion: bool = True
    significance: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Also require a Diebold-Mariano test (HLN correction) of the winner against the baseline and the "
        "champion on the held-out stretch at this level (e.g. 0.05). See docs/gate.md.",
    )


class RegistrySpec(_Model):
    model_name: str | None = Field(None, description="Registered model name (default: the project name).")
    gate: GateSpec = Field(default_factory=GateSpec)


class ExecutorSpec(_Model):
    kind: Literal["local", "dask"] = "local"
    address: str | None = None
    n_workers: int | None = Field(None, ge=1)
    partition_rows: int = Field(
        500_000,
        ge=1,
        description="Between the data steps, the data lies on disk as Parquet partitions of whole series of about "
        "this many rows (at least two per worker once the data is bigger): what a worker holds at a time. "
        "Data of fewer rows stays one partition. It changes how the work is split, never the results.",
    )
    shared_storage: bool = Field(
        False,
        description="With executor.address: whether the cluster's workers see this project's folder (a shared "
        "file system), so that they read and write the data partitions themselves; otherwise the partitions' rows "
        "travel to the workers and back. Local processes and a local Dask cluster always share it.",
    )
    global_models: Literal["auto", "single", "distributed"] = Field(
        "auto",
        description="How a global ML model (kind: lightgbm) trains on a Dask executor: 'single' fits it in one "
        "worker on the gathered data (the same results as executor kind: local); 'distributed' trains it "
        "through mlforecast's Dask path with LightGBM's Dask estimator, the data spread over the workers; "
        "'auto' is 'distributed' when executor.address names an existing cluster, else 'single'. Other "
        "global kinds (sklearn, mlp, plugins) have no library Dask path and always train 'single'.",
    )

    @field_validator("global_models")
    @classmethod
    def _check_global_models(cls, value: str, info: ValidationInfo) -> str:
        if value == "distributed" and info.data.get("kind", "local") != "dask":
            raise ValueError("'distributed' needs executor.kind: dask (a local executor trains in one process)")
        return value


# ----------------------------------------------------------------------- serving / monitoring
class PredictionStoreSpec(_Model):
    url: str | None = Field(None, description="SQLAlchemy URL of the prediction log (default: SQLite under .tidecast/).")


class ServingSpec(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model: str = Field("champion", description="Alias (e.g. 'champion') or version number to serve.")
    poll_interval: float = Field(30.0, ge=0, description="Seconds between registry polls for a new version (0: never).")
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Largest request body accepted.")
    max_series: int = Field(1000, ge=1, description="Most series in one request.")
    token_env: str = Field("TIDECAST_ADMIN_TOKEN", description="Environment variable holding the admin bearer token.")
    log_predictions: bool = Field(True, description="Write every served forecast to the prediction store.")
    future: str | None = Field(
        None,
        description="A file (relative to the spec) with the future values of the known-in-future exogenous "
        "columns, e.g. a weather forecast: what `tidecast predict` uses when its input has no future rows.",
    )


class DriftSpec(_Model):
    window: Duration = Field("1d", description="Recent window compared with the training reference.")
    psi: float = Field(0.2, gt=0, description="PSI above this is drift.")
    ks_pvalue: float = Field(0.01, gt=0, lt=1, description="Kolmogorov-Smirnov p-value below this is drift.")
    wasserstein: float = Field(0.5, gt=0, description="Wasserstein distance in reference standard deviations above this is drift.")
    profile_shift: float = Field(0.25, gt=0, description="Seasonal-profile shift (relative) above this is drift.")
    columns: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per-column threshold overrides: {column: {psi, ks_pvalue, wasserstein, profile_shift, ignore}}.",
    )
    reference_window: Duration | None = Field(
        "28d", description="Trailing training history the reference profile summarises (None: all of it)."
    )
    calibrate: bool = Field(
        True,
        description="Also require each statistic to exceed calibration_margin times its worst value on the "
        "windows of the reference stretch (a column is judged against its own day-to-day variation).",
    )
    calibration_margin: float = Field(1.5, ge=1.0, description="Margin over the calibrated thresholds.")
    min_tests: int = Field(2, ge=1, le=4, description="Tests (PSI, KS, Wasserstein, profile) that must fire for a column to drift.")
    min_points: float = Field(0.5, gt=0, le=1, description="Share of the window's points needed to test a column.")


class ModelDriftSpec(_Model):
    window: Duration = Field("1d", description="Rolling window of predictions joined with actuals.")
    error_ratio: float = Field(1.5, gt=0, description="Live MAE / backtest MAE above this counts as degraded.")
    consecutive: int = Field(2, ge=1, description="Degraded windows in a row that raise the alarm.")
    min_coverage: float | None = Field(None, ge=0, le=1, description="Alarm when interval coverage falls below this.")
    min_actuals: float = Field(
        0.8, gt=0, le=1, description="Share of a window's forecasts that need an actual for the window to count."
    )
    windows: int = Field(7, ge=1, le=1000, description="Recent windows scored (and logged) per monitor run.")


class MonitoringSpec(_Model):
    data_drift: DriftSpec = Field(default_factory=DriftSpec)
    model_drift: ModelDriftSpec = Field(default_factory=ModelDriftSpec)
    retrain_on_drift: bool = True
    retrain_after: Duration = Field(
        0,
        description="Drift (data or model) must have lasted this long before it triggers a retrain, so that the "
        "gate's held-out stretch and backtest folds see the new regime (0: retrain at once).",
    )
    retrain_cooldown: Duration | None = Field(
        "7d", description="Least time between two retrains triggered by data drift alone (None: no limit)."
    )


class ScheduleSpec(_Model):
    train: str | None = Field(None, description="Cron expression for the training pipeline, e.g. '0 2 * * *'.")
    monitor: str | None = Field(None, description="Cron expression for the prediction/monitoring pipeline.")
    report: str | None = Field(None, description="Cron expression for the weekly client report.")
    timezone: str = "UTC"
    misfire_grace: int = Field(600, ge=1, description="Seconds a late job may still start.")

    @field_validator("train", "monitor", "report")
    @classmethod
    def _check_cron(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            try:
                parse_cron(value, field=f"schedule.{info.field_name}")
            except SpecError as exc:
                raise ValueError(exc.message.removeprefix(f"schedule.{info.field_name}: ")) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return _check_zone(value)


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
        from tidecast.models.ensemble import check_ensembles

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


# ------------------------------------------------------------------------------------ loading
class _LineLoader(yaml.SafeLoader):
    """A safe YAML loader that also records the line of every mapping key."""


def _compose_lines(
    node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], source: str,
    seen: set[int] | None = None, stack: set[int] | None = None,
) -> None:
    """Record the line of every key below ``node``. A node reached again through an alias is walked
    once (aliases cannot blow the walk up); an alias inside its own anchor (a cycle) is an error."""
    seen = set() if seen is None else seen
    stack = set() if stack is None else stack
    if id(node) in stack:
        raise SpecError(f"{source}:{node.start_mark.line + 1}: not valid here: a YAML alias refers to its own anchor")
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:
        return
    seen.add(id(node))
    stack.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # a list or mapping as a key: the loader refuses it
                _compose_lines(key_node, (*path, "?"), lines, source, seen, stack)
                continue
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _compose_lines(value_node, (*path, key), lines, source, seen, stack)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _compose_lines(item, (*path, index), lines, source, seen, stack)
    stack.discard(id(node))


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _read_yaml(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    loader: _LineLoader | None = None
    lines: dict[tuple[Any, ...], int] = {}
    data = None
    try:
        loader = _LineLoader(text)  # checks the characters already
        node = loader.get_single_node()  # what yaml.load does, with the key lines read off the nodes
        if node is not None:
            _compose_lines(node, (), lines, source)  # first: a cyclic alias must not reach the constructor
            data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise SpecError(f"{where}: not valid YAML: {_one_line(exc.problem or exc.context)}") from None
    except yaml.reader.ReaderError as exc:  # a control character or bad byte: no mark, a position
        line = text.count("\n", 0, max(0, exc.position)) + 1
        char = exc.character
        code = char[0] if isinstance(char, bytes) else ord(char) if isinstance(char, str) else int(char)
        raise SpecError(f"{source}:{line}: not valid YAML: unacceptable character #x{code:04x}: {_one_line(exc.reason)}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {_one_line(exc)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at ``loc`` (the location of an unknown key), for "did you mean"."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [name for name, info in current.model_fields.items() if not info.exclude]  # not root, source_file
    return []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first pydantic model inside an annotation such as ``list[X] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _format_loc(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            name = None
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                name = node[part].get("name")
            parts.append(f"[{part}]" if name is None else f"[{name}]")
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            # pydantic inserts union-member tags such as 'RangeParam' or 'list[...]' into locs
            if isinstance(node, dict) and part not in node and not str(part).islower():
                continue
            name = str(part) if str(part).isprintable() else repr(str(part))  # a key with a newline: one line
            parts.append(("." if parts else "") + name)
            node = node.get(part) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop pydantic's union-member tags from a location, keeping only real keys and indexes."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            out.append(part)
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) or node is None:
            out.append(part)
            node = None
    return tuple(out)


def _spec_error(exc: ValidationError, data: Any, lines: dict[tuple[Any, ...], int], source: str) -> SpecError:
    messages: list[str] = []
    seen: set[str] = set()
    # unknown keys (typos) first: a typo usually also causes the "missing" error of the real key
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    for err in errors:
        loc = _clean_loc(tuple(err["loc"]), data)
        text = err["msg"].removeprefix("Value error, ")
        named = re.match(r"^([a-z_]+(?:\.[a-z_]+)+): (.*)$", text)
        if not loc and named:  # a model-level check that names its own field
            loc = tuple(named.group(1).split("."))
            err = {**err, "msg": named.group(2)}
        field = _format_loc(loc, data)
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        where = f"{source}:{line}" if line else source
        if err["type"] == "extra_forbidden":
            key = str(loc[-1]) if loc else ""
            choices = _allowed_keys(Spec, loc)
            close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else (
                f" (allowed: {', '.join(choices)})" if choices else ""
            )
            msg = f"{where}: {field}: unknown key{hint}"
        elif err["type"] == "missing":
            msg = f"{where}: {field}: required field is missing"
        else:
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{where}: {field}: {text}"
        if msg not in seen:
            seen.add(msg)
            messages.append(msg)
    # union members each report their own failure; keep the first few, most specific first
    first = messages[0]
    more = f" (and {len(messages) - 1} more problem{'s' if len(messages) > 2 else ''})" if len(messages) > 1 else ""
    return SpecError(first + more)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def find_spec(path: str | os.PathLike[str] | None = None) -> Path:
    """The spec file: ``path`` itself, ``path/tidecast.yaml``, or ``./tidecast.yaml``."""
    candidate = Path(path) if path is not None else Path.cwd()
    if candidate.is_dir():
        candidate = candidate / SPEC_FILENAME
    if not candidate.exists():
        raise SpecError(f"{candidate}: no such spec file (run 'tidecast init NAME' to start a project)")
    return candidate


def parse_spec(
    data: Any, *, root: Path, source: str = SPEC_FILENAME, lines: dict[tuple[Any, ...], int] | None = None,
    env: str | None = None,
) -> Spec:
    """Validate an already-parsed spec mapping (used by :func:`load_spec` and by tests)."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the spec must be a mapping of keys (project, data, forecast, ...)")
    env = env if env is not None else os.environ.get("TIDECAST_ENV") or None
    if env:
        envs = data.get("envs") or {}
        if env not in envs:
            known = ", ".join(sorted(envs)) or "none defined"
            raise SpecError(f"{source}: envs: no environment {env!r} (known: {known})")
        data = _deep_merge({k: v for k, v in data.items() if k != "envs"}, envs[env])
        data["envs"] = envs
    for private in ("root", "source_file"):  # fields of the loaded Spec, set from where it was read
        if private in data:
            line = lines.get((private,))
            where = f"{source}:{line}" if line else source
            raise SpecError(f"{where}: {private}: unknown key (allowed: {', '.join(_allowed_keys(Spec, (private,)))})")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, data, lines, source) from None
    except SpecError as exc:  # raised by duration parsing inside validators
        raise SpecError(f"{source}: {exc.message}") from None
    spec.root = root
    spec.source_file = Path(source)
    spec.data.source = spec.resolve_path(spec.data.source)
    return spec


def load_spec(path: str | os.PathLike[str] | None = None, *, env: str | None = None) -> Spec:
    """Read, validate and resolve a ``tidecast.yaml``.

    ``env`` (or ``TIDECAST_ENV``) picks an entry of ``envs:`` whose keys override the spec's.
    """
    file = find_spec(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{file}: cannot read the spec: {exc}") from None
    data, lines = _read_yaml(text, str(file))
    return parse_spec(data, root=file.parent.resolve(), source=str(file), lines=lines, env=env)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``tidecast.yaml`` (for editor completion)."""
    schema = Spec.model_json_schema()
    schema["title"] = "tidecast.yaml"
    for private in ("root", "source_file"):
        schema.get("properties", {}).pop(private, None)
    return schema
