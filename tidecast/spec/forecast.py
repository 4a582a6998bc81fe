"""The spec's modelling sections: ``forecast``, ``backtest``, ``models``, ``selection`` and ``hierarchy``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tidecast.durations import Duration
from tidecast.spec.base import _Model
from tidecast.spec.data import FeatureSpec


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
        20, ge=0, le=1000,
        description="Forecast origins before the first fold, one horizon apart, whose residuals calibrate the "
        "intervals (forecast without refitting; fewer when the history is short).",
    )
    calibration_fits: int | Literal["auto"] = Field(
        "auto",
        description="Models that forecast the calibration windows, each fit before its share of them (oldest "
        "first); 'auto': as few as keep the windows of one model within a tenth of the history the oldest is fit "
        "on (one on long high-frequency series, one every few windows on short ones); each fit costs a fit per "
        "candidate. See docs/intervals.md.",
    )
    day_kinds: bool = Field(
        True,
        description="On series of a day or finer, an interval is as wide as the backtest errors of its kind of day "
        "(working days; weekends and the public holidays of features.holidays_country); see docs/intervals.md.",
    )

    @field_validator("calibration_fits", mode="before")
    @classmethod
    def _check_fits(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100):
            return value
        raise ValueError(f"calibration_fits must be 'auto' or a whole number from 1 to 100, got {value!r}")


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
