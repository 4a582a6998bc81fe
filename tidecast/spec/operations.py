"""The spec's operations sections: ``tracking``, ``registry``, ``executor``, ``predictions``,
``serving``, ``monitoring`` and ``schedule``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from tidecast.cron import parse_cron
from tidecast.durations import Duration
from tidecast.errors import SpecError
from tidecast.spec.base import _check_zone, _Model


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
