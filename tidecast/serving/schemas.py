"""The JSON bodies of the REST API (pydantic models; FastAPI shows them with examples at ``/docs``).

The checks that need no model happen here (lengths, finite numbers, sorted timestamps, quantiles
in (0, 1)); those that need the served model's card (frequency, input window, horizon cap,
exogenous columns) happen in :mod:`tidecast.serving.fast`. Both answer 422 with a message that
names the series, the field and the problem.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

MAX_HORIZON = 100_000  # a hard ceiling; the served model's own cap is checked per request

_HISTORY = [f"2025-02-02T00:{m:02d}:00Z" for m in range(0, 60, 5)]
SERIES_EXAMPLE: dict[str, Any] = {
    "id": "series",
    "timestamps": _HISTORY,
    "values": [31.2, 30.8, 30.1, 29.9, 29.5, 29.8, 30.2, 30.6, 31.0, 31.4, 31.1, 30.9],
    "exogenous": {"temperature": [2.1, 2.0, 2.0, 1.9, 1.9, 1.8, 1.8, 1.7, 1.7, 1.6, 1.6, 1.5, 1.5, 1.4, 1.4]},
}
FORECAST_EXAMPLE: dict[str, Any] = {"series": [SERIES_EXAMPLE], "horizon": 3, "quantiles": [0.1, 0.9]}


def _describe_bad(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return str(value)


def finite_array(values: list[float | None], field: str) -> np.ndarray:
    """``values`` as float64, raising ValueError naming the first null/NaN/infinite entry."""
    array = np.array(values, dtype=float)  # None becomes NaN
    finite = np.isfinite(array)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        bad = int((~finite).sum())
        more = f" (and {bad - 1} more)" if bad > 1 else ""
        raise ValueError(
            f"{field}[{first}] is {_describe_bad(values[first])}{more}: every value must be a finite number"
        )
    return array


class SeriesInput(BaseModel):
    """One series: its recent history and, for models with future-known inputs, their values."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SERIES_EXAMPLE]})

    id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Series id (as in training). May be left out when the model knows one series.",
    )
    timestamps: list[datetime] = Field(
        min_length=1,
        description="ISO 8601 timestamps of the history, ascending, one per step of the model's frequency. "
        "Naive times are UTC; times with an offset are converted to UTC.",
    )
    values: list[float | None] = Field(min_length=1, description="The observed values, one per timestamp.")
    exogenous: dict[str, list[float | None]] = Field(
        default_factory=dict,
        description="Exogenous columns by name. Future-known columns hold the history values followed by "
        "at least `horizon` future values; past-only columns hold the history values.",
    )

    _ns: Any = PrivateAttr(default=None)
    _y: Any = PrivateAttr(default=None)
    _exog: Any = PrivateAttr(default=None)
    _aware: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _check(self) -> SeriesInput:
        n_times, n_values = len(self.timestamps), len(self.values)
        if n_times != n_values:
            raise ValueError(f"timestamps and values differ in length: {n_times} timestamps, {n_values} values")
        self._y = finite_array(self.values, "values")
        aware = [t.tzinfo is not None for t in self.timestamps]
        if any(aware) and not all(aware):
            first = aware.index(not aware[0])
            raise ValueError(
                f"timestamps mix times with and without a UTC offset (timestamps[0] vs timestamps[{first}])"
            )
        times = self.timestamps
        if aware[0]:
            times = [t.astimezone(UTC).replace(tzinfo=None) for t in times]
        ns = np.array(times, dtype="datetime64[us]").astype("datetime64[ns]").view("int64")
        steps = np.diff(ns)
        if len(steps) and (steps <= 0).any():
            j = int(np.flatnonzero(steps <= 0)[0]) + 1
            what = "repeats" if steps[j - 1] == 0 else "comes before"
            raise ValueError(
                f"timestamps are not sorted ascending: timestamps[{j}] ({self.timestamps[j].isoformat()}) "
                f"{what} timestamps[{j - 1}]"
            )
        self._ns, self._aware = ns, bool(aware[0])
        self._exog = {name: finite_array(column, f"exogenous['{name}']") for name, column in self.exogenous.items()}
        return self


class ForecastRequest(BaseModel):
    """``POST /forecast``: one or more series, the horizon and quantiles (default: the model's)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [FORECAST_EXAMPLE]})

    series: list[SeriesInput] = Field(min_length=1, description="The series to forecast.")
    horizon: int | None = Field(None, description="Steps to forecast (default: the model's horizon).")
    quantiles: list[float] | None = Field(None, description="Quantiles in (0, 1) (default: the model's; [] for none).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``{"timestamps": [...], "values": [...]}`` (one series) is ``{"series": [{...}]}``."""
        if isinstance(data, dict) and "series" not in data and ("timestamps" in data or "values" in data):
            keys = ("id", "timestamps", "values", "exogenous")
            one = {k: data[k] for k in keys if k in data}
            rest = {k: v for k, v in data.items() if k not in keys}
            return {"series": [one], **rest}
        return data

    @field_validator("horizon", mode="before")
    @classmethod
    def _check_horizon(cls, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"horizon must be a whole number of steps, got {value!r}")
        if value <= 0:
            raise ValueError(f"horizon must be at least 1 step, got {value}")
        if value > MAX_HORIZON:
            raise ValueError(f"horizon {value} is above the limit of {MAX_HORIZON} steps")
        return value

    @field_validator("quantiles")
    @classmethod
    def _check_quantiles(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return value
        bad = [q for q in value if not (math.isfinite(q) and 0 < q < 1)]
        if bad:
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {bad}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _unique_ids(self) -> ForecastRequest:
        seen: set[str] = set()
        for i, series in enumerate(self.series):
            if series.id is None:
                continue
            if series.id in seen:
                raise ValueError(f"series[{i}]: id {series.id!r} appears more than once")
            seen.add(series.id)
        return self


# ------------------------------------------------------------------------------------ answers
class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str | None = None


class SeriesForecast(BaseModel):
    id: str
    timestamps: list[str] = Field(description="UTC timestamps of the forecast steps.")
    yhat: list[float] = Field(description="Point forecasts.")
    quantiles: dict[str, list[float]] = Field(
        default_factory=dict, description='Quantile forecasts by quantile, e.g. {"0.1": [...], "0.9": [...]}.'
    )
    model: str | None = Field(None, description="Per-series models only: the candidate that forecast this series.")
    fallback: bool | None = Field(
        None,
        description="Per-series models only: true when the series is unknown to the model's mapping "
        "(or was too short to judge in training) and the fallback candidate forecast it.",
    )


class ForecastResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "power-demo", "version": "3", "alias": "champion"},
                    "forecasts": [
                        {
                            "id": "series",
                            "timestamps": ["2025-02-02T01:00:00Z", "2025-02-02T01:05:00Z", "2025-02-02T01:10:00Z"],
                            "yhat": [30.7, 30.5, 30.2],
                            "quantiles": {"0.1": [28.9, 28.6, 28.1], "0.9": [32.2, 32.3, 32.1]},
                        }
                    ],
                }
            ]
        }
    )

    model: ModelInfo
    forecasts: list[SeriesForecast]
    warnings: list[str] | None = Field(
        None, description="Per-series models only: the series the fallback candidate forecast, and why."
    )


class InvocationsRequest(BaseModel):
    """MLflow's scoring protocol: exactly one of the data keys, and optional ``params``."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "dataframe_split": {
                        "columns": ["ds", "y", "temperature"],
                        "data": [["2025-02-02T00:00:00", 31.2, 2.1], ["2025-02-02T00:05:00", None, 2.0]],
                    },
                    "params": {"horizon": 1, "quantiles": [0.1, 0.9]},
                }
            ]
        },
    )

    dataframe_split: dict[str, Any] | None = None
    dataframe_records: list[dict[str, Any]] | None = None
    inputs: dict[str, list[Any]] | list[dict[str, Any]] | None = None
    instances: list[dict[str, Any]] | None = None
    params: dict[str, Any] | None = None


class InvocationsResponse(BaseModel):
    predictions: list[dict[str, Any]]


class ProblemDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    detail: list[ProblemDetail]


class ErrorMessage(BaseModel):
    detail: str
    request_id: str | None = None


__all__ = [
    "FORECAST_EXAMPLE",
    "MAX_HORIZON",
    "ErrorMessage",
    "ForecastRequest",
    "ForecastResponse",
    "InvocationsRequest",
    "InvocationsResponse",
    "SeriesForecast",
    "SeriesInput",
    "ValidationProblem",
]
