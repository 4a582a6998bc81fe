"""The ensemble candidate: its spec (``kind: ensemble``, ``selection.ensemble: auto``) and its model.

A weighted ensemble of the other candidates, weights fitted by greedy ensemble selection with
replacement on their backtest forecasts (:mod:`tidecast.evaluation.ensembles`); the pipeline glue
is in :mod:`tidecast.training.ensembles`. The served model, :class:`EnsembleForecaster`, holds the
fitted members of positive weight: the point forecast is the weighted average of the members'.
The pipeline serves it inside a :class:`~tidecast.models.conformal.ConformalForecaster` holding the
ensemble's own residuals (its intervals are recalibrated: docs/gate.md); asked for quantiles
directly, it averages the members' with the same weights.

In the spec::

    models:
      - {name: ens, kind: ensemble, params: {members: [snaive, lightgbm], max_iterations: 50}}
    selection: {ensemble: auto}    # or: adds a candidate named 'ensemble' over every other candidate

``members`` defaults to every other (non-ensemble) candidate; members named explicitly must exist
and must not fail their backtest (one line naming the field otherwise); a default member that
fails is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tidecast.errors import ModelError
from tidecast.frames import ID, POINT, TIME, quantile_column
from tidecast.models.base import FitContext, Forecaster
from tidecast.spec.ensemble import (  # the ensemble's spec: checked at spec load
    AUTO_NAME,
    KIND,
    EnsembleSpec,
    check_ensembles,
    ensemble_specs,
)

KEYS = (ID, TIME, "fold")

__all__ = [
    "KIND",
    "EnsembleFactory",
    "EnsembleForecaster",
    "EnsembleSpec",
    "check_ensembles",
    "ensemble_specs",
]


# -------------------------------------------------------------------------- the forecaster
class EnsembleForecaster:
    """The fitted members and their weights: the point forecast and each quantile are the weighted
    average of the members' (every member is asked for the same quantiles, natively or conformally
    calibrated on its own backtest). Members of weight 0 are not kept."""

    native_intervals = True

    def __init__(self, members: dict[str, Forecaster], weights: dict[str, float], *, name: str = AUTO_NAME) -> None:
        kept = {m: float(w) for m, w in weights.items() if w > 0}
        missing = [m for m in kept if m not in members]
        if missing or not kept:
            raise ModelError(f"ensemble '{name}': no fitted member for weight(s) {', '.join(missing) or 'none'}")
        total = sum(kept.values())
        self.weights = {m: w / total for m, w in kept.items()}
        self.members = {m: members[m] for m in self.weights}
        self.name = name

    def get_params(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "members": list(self.members)}

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> EnsembleForecaster:
        for model in self.members.values():
            model.fit(df, ctx)
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        qs = [float(q) for q in quantiles]
        columns = [POINT, *(quantile_column(q) for q in qs)]
        out: pd.DataFrame | None = None
        for member, weight in self.weights.items():
            fc = self.members[member].predict(h, history=history, X_future=X_future, quantiles=qs)
            fc = fc.assign(**{ID: fc[ID].astype(str)}).sort_values([ID, TIME], kind="stable", ignore_index=True)
            if out is None:
                out = fc[[ID, TIME]].copy()
                for column in columns:
                    out[column] = 0.0
            elif len(fc) != len(out) or not (fc[TIME].to_numpy() == out[TIME].to_numpy()).all():
                raise ModelError(f"ensemble '{self.name}': member '{member}' forecast other timestamps than the others")
            for column in columns:
                out[column] += weight * fc[column].to_numpy(float)
        assert out is not None
        return out


@dataclass(frozen=True)
class EnsembleFactory:
    """Builds an :class:`EnsembleForecaster` from its members' factories (picklable)."""

    factories: dict[str, Callable[[], Forecaster]]
    weights: dict[str, float]
    name: str = AUTO_NAME

    def __call__(self) -> Forecaster:
        members = {m: make() for m, make in self.factories.items() if self.weights.get(m, 0) > 0}
        return EnsembleForecaster(members, self.weights, name=self.name)  # type: ignore[return-value]
