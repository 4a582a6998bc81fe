"""The spec's input sections: ``data``, ``target``, ``clean`` and ``features``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tidecast import calendar
from tidecast.durations import Duration
from tidecast.errors import SpecError
from tidecast.spec.base import _Model


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
