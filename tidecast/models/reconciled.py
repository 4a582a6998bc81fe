"""Coherent forecasts: reconcile every node's base forecast so that each parent is the sum of its children.

A reconciled forecast is ``S @ P @ y_hat``: ``y_hat`` holds the base forecasts of every node (rows
in :attr:`~tidecast.data.hierarchy.Hierarchy.nodes` order) at one time, ``S`` is the summing matrix
and ``P`` the method's projection onto the bottom series, computed by ``hierarchicalforecast``
(``BottomUp``, ``MinTrace`` with ``ols``, ``wls_struct`` or ``mint_shrink``). ``P`` depends on
the structure only, except for ``min_trace_shrink``, which estimates the covariance of the base
forecast errors; tidecast takes those errors from the base candidate's backtest (each fold from
the *other* folds, the fitted model from all of them), since a forecaster does not expose in-sample
fitted values through its protocol.

Quantiles are the base model's, shifted by the reconciliation's change of the point forecast (so
intervals keep their width per node; only the point forecasts add up).

:class:`ReconciledForecaster` wraps a base forecaster: ``fit`` fits it on every node (aggregates
summed from the bottom series it is given), ``predict`` forecasts every node and reconciles. It is
picklable (it holds the fitted base model, the structure and ``P``), so the MLflow pyfunc serves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tidecast.data.hierarchy import Hierarchy
from tidecast.errors import ModelError
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column, quantile_of
from tidecast.models.base import FitContext, Forecaster

__all__ = ["METHODS", "ReconciledFactory", "ReconciledForecaster", "projection", "reconcile_forecasts", "residual_matrix"]

METHODS: dict[str, str | None] = {
    "bottom_up": None,
    "min_trace_ols": "ols",
    "min_trace_wls_struct": "wls_struct",
    "min_trace_shrink": "mint_shrink",
}
"""tidecast's method names -> ``MinTrace(method=...)`` (``None``: ``BottomUp``)."""

NEEDS_ERRORS = frozenset({"min_trace_shrink"})
"""Methods that need base forecast errors (the others need only the structure)."""


def projection(method: str, S: np.ndarray, errors: np.ndarray | None = None) -> np.ndarray:
    """``P`` (bottom x nodes) of ``method`` for the summing matrix ``S`` (aggregate rows first);
    ``errors`` (nodes x observations, ``y - y_hat``) for the methods in :data:`NEEDS_ERRORS`."""
    from hierarchicalforecast.methods import BottomUp, MinTrace

    if method not in METHODS:
        raise ModelError(f"hierarchy.methods: unknown reconciliation method '{method}' (known: {', '.join(METHODS)})")
    reconciler = BottomUp() if METHODS[method] is None else MinTrace(method=METHODS[method])
    kwargs: dict[str, Any] = {}
    if method in NEEDS_ERRORS:
        if errors is None or errors.shape[1] < 2:
            raise ModelError(
                f"reconciliation {method}: needs base forecast errors from at least two backtest steps "
                "(use backtest.folds >= 2, or another method)"
            )
        kwargs = {"y_insample": np.asarray(errors, dtype=np.float64), "y_hat_insample": np.zeros_like(errors, dtype=np.float64)}
    try:
        reconciler.fit(S=S, y_hat=np.zeros((S.shape[0], 1)), **kwargs)
    except Exception as exc:
        raise ModelError(f"reconciliation {method}: {type(exc).__name__}: {exc}") from exc
    return np.asarray(reconciler.P, dtype=np.float64)


def residual_matrix(forecasts: pd.DataFrame, hierarchy: Hierarchy) -> np.ndarray:
    """Base forecast errors ``y - yhat`` as (nodes x (fold, time)) for ``projection``; times where
    some node has no forecast are dropped."""
    keys = [c for c in ("fold", TIME) if c in forecasts.columns]
    errors = forecasts.assign(_e=forecasts[TARGET].to_numpy(float) - forecasts[POINT].to_numpy(float))
    table = errors.pivot_table(index=errors[ID].astype(str), columns=keys, values="_e", aggfunc="mean")
    table = table.reindex(hierarchy.nodes).dropna(axis=1, how="any")
    return table.to_numpy(dtype=np.float64)


def reconcile_forecasts(forecasts: pd.DataFrame, hierarchy: Hierarchy, P: np.ndarray) -> pd.DataFrame:
    """``forecasts`` (one row per node and time; any extra columns are kept) with ``yhat`` reconciled
    and every quantile column shifted by the same amount. A node without a forecast at a time
    another node has one is a :class:`ModelError`."""
    if forecasts.empty:
        return forecasts.copy()
    S = hierarchy.summing_matrix()
    row_of = {n: i for i, n in enumerate(hierarchy.nodes)}
    ids = forecasts[ID].astype(str).to_numpy()
    rows = pd.Series(ids).map(row_of)
    if rows.isna().any():
        unknown = sorted(set(ids[rows.isna().to_numpy()]))
        raise ModelError(f"hierarchy: forecasts for series outside the hierarchy ({', '.join(unknown[:5])})")
    times, cols = np.unique(forecasts[TIME].to_numpy(), return_inverse=True)
    rows_i = rows.to_numpy(dtype=np.int64)
    base = np.full((len(row_of), len(times)), np.nan)
    base[rows_i, cols] = forecasts[POINT].to_numpy(dtype=np.float64)
    if np.isnan(base).any():
        r, c = np.argwhere(np.isnan(base))[0]
        raise ModelError(
            f"hierarchy: no base forecast for series '{hierarchy.nodes[r]}' at {pd.Timestamp(times[c])} "
            "(every node needs one to reconcile)"
        )
    coherent = S @ (P @ base)
    shift = (coherent - base)[rows_i, cols]
    out = forecasts.copy()
    out[POINT] = out[POINT].to_numpy(dtype=np.float64) + shift
    for column in out.columns:
        if quantile_of(column) is not None:
            out[column] = out[column].to_numpy(dtype=np.float64) + shift
    return out


class ReconciledForecaster:
    """A base forecaster fitted on every node of a hierarchy, its forecasts reconciled by ``method``.

    ``make_base``: a zero-argument factory of the base forecaster; ``errors``: base forecast errors
    (``unique_id, ds, y, yhat`` [+ ``fold``]) for ``min_trace_shrink``. ``fit``/``predict`` accept
    frames of the bottom series (rows of aggregate nodes are dropped and rebuilt from them, so the
    training data and the forecasts always add up); ``predict`` returns every node.
    """

    native_intervals = True  # the base factory brings its own (or conformal) quantiles

    def __init__(
        self,
        make_base: Callable[[], Forecaster],
        hierarchy: Hierarchy,
        method: str,
        *,
        errors: pd.DataFrame | None = None,
        name: str | None = None,
    ) -> None:
        if method not in METHODS:
            raise ModelError(f"hierarchy.methods: unknown reconciliation method '{method}' (known: {', '.join(METHODS)})")
        self.make_base = make_base
        self.hierarchy = hierarchy
        self.method = method
        self.errors = errors
        self.base: Forecaster | None = None
        self.P: np.ndarray | None = None
        self.name = name or f"reconciled/{method}"

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> ReconciledForecaster:
        frame = self.hierarchy.expand(df, what="training data")
        matrix = residual_matrix(self.errors, self.hierarchy) if self.method in NEEDS_ERRORS and self.errors is not None else None
        self.P = projection(self.method, self.hierarchy.summing_matrix(), matrix)
        self.base = self.make_base().fit(frame, ctx)
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        if self.base is None or self.P is None:
            raise ModelError(f"candidate '{self.name}': predict called before fit")
        if history is not None:
            history = self.hierarchy.expand(history, what="history")
        if X_future is not None:
            X_future = self.hierarchy.expand(X_future, what="future exogenous rows")
        base = self.base.predict(h, history=history, X_future=X_future, quantiles=quantiles)
        keep = [ID, TIME, POINT, *(quantile_column(q) for q in quantiles if quantile_column(q) in base.columns)]
        out = reconcile_forecasts(base[keep], self.hierarchy, self.P)
        return out.sort_values([ID, TIME], kind="stable", ignore_index=True)

    def get_params(self) -> dict[str, Any]:
        base = self.base.get_params() if self.base is not None else {}
        return {**base, "reconciliation": self.method, "hierarchy_levels": list(self.hierarchy.levels)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.base is not None:  # fitted: the factory and the errors are no longer needed
            state["make_base"] = None
            state["errors"] = None
        return state


class ReconciledFactory:
    """Builds a :class:`ReconciledForecaster` (picklable, for the backtest executors and the refit)."""

    def __init__(
        self, make_base: Callable[[], Forecaster], hierarchy: Hierarchy, method: str, *, errors: pd.DataFrame | None,
        name: str,
    ) -> None:
        self.make_base, self.hierarchy, self.method, self.errors, self.name = make_base, hierarchy, method, errors, name

    def __call__(self) -> ReconciledForecaster:
        return ReconciledForecaster(self.make_base, self.hierarchy, self.method, errors=self.errors, name=self.name)
