"""Quantiles from backtest residuals (split-conformal by horizon step) for any forecaster.

:class:`ConformalForecaster` wraps a forecaster and adds, to its point forecast of step ``k``, the
empirical quantiles of the backtest errors ``y - yhat`` made ``k`` steps ahead:

* residuals of steps ``k - window .. k + window`` are pooled, because backtests have few folds
  (``window=None`` picks the smallest half-width giving every step ``min_samples`` residuals over
  all series);
* ``per_series="auto"`` (default) uses a series' own residuals where its pooled window holds at
  least ``min_samples`` of them, and the residuals of all series otherwise; ``True`` uses a
  series' own residuals whenever it has any; ``False`` always pools over series. A series
  without residuals (new at serving time) gets the pooled quantiles;
* steps beyond the last backtested step reuse the quantiles of the last step;
* the quantile offsets are made non-decreasing in ``q`` so quantile columns never cross;
* quantiles are finite-sample conformal (``finite_sample=True``, default): the
  ``ceil((n + 1) q)``-th smallest residual for an upper quantile, the ``floor((n + 1) q)``-th for
  a lower one (:func:`conformal_quantile`), which holds the
  nominal level where the plain empirical quantile of ``n`` residuals under-covers;
* a known series with too few residuals of its own (``per_series="auto"``) takes the pooled
  residuals *scaled* to it: each residual divided by its series' mean absolute residual, the
  quantile of these multiplied by the series' own (a household meter and a substation then
  share the shape of the interval, not its width).

* ``day_kinds`` (a :class:`~tidecast.models.day_kinds.DayKinds`): working days and days off share
  the shape of the interval and differ in its width: each residual is divided by its kind's
  factor (:func:`~tidecast.models.day_kinds.kind_factors`), the offsets multiplied by the forecast
  row's (the residuals need a ``ds`` column; without it, or with one kind only, nothing changes).

* ``symmetric=True`` takes quantile ``q`` as ``sign(q - 0.5)`` times the conformal ``|2q - 1|``
  quantile of the absolute residuals (an interval symmetric around the point forecast, the
  textbook split-conformal score), instead of the ``q`` quantile of the signed residuals
  (default). ``bench/intervals.py`` scores both on the same forecasts (docs/intervals.md).

Models pickled before these options keep the plain quantiles and unscaled pooling.

A wrapped model with native intervals keeps them unless ``force=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tidecast.errors import ModelError
from tidecast.frames import ID, POINT, TARGET, TIME, is_sorted, quantile_column, series_bounds
from tidecast.models._frames import check_quantiles, finish
from tidecast.models.base import FitContext, Forecaster
from tidecast.models.day_kinds import DayKinds, kind_factors

STEP = "step"


def conformal_quantile(values: Any, q: float, weights: Any = None) -> float:
    """The finite-sample conformal quantile ``q`` of ``values``.

    Uniform weights: the ``ceil((n + 1) q)``-th smallest value for ``q >= 0.5`` (the largest when
    that exceeds ``n``), the ``floor((n + 1) q)``-th for ``q < 0.5`` (the smallest when it is 0).
    ``weights`` (non-negative, one per value; the test point weighs 1): the weighted version of
    Barber et al. (2023, non-exchangeable conformal), where the extra unit of mass sits at
    ``+inf`` (upper) or ``-inf`` (lower).

    >>> conformal_quantile([1, 2, 3, 4, 5, 6, 7, 8, 9], 0.9), conformal_quantile(range(1, 10), 0.1)
    (9.0, 1.0)
    >>> conformal_quantile(range(1, 20), 0.9)  # ceil(20 * 0.9) = 18th smallest
    18.0
    """
    v = np.asarray(values, dtype=float).ravel()
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float).ravel()
    keep = np.isfinite(v) & (w > 0)
    v, w = v[keep], w[keep]
    if v.size == 0:
        return float("nan")
    if q < 0.5:  # mirror: the lower quantile q of v is minus the upper quantile 1 - q of -v
        return -conformal_quantile(-v, 1.0 - q, w)
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    total = w.sum() + 1.0
    cum = np.cumsum(w)
    # the smallest value whose cumulative weight reaches q * total (tolerance for float sums)
    idx = int(np.searchsorted(cum, q * total - 1e-9 * total, side="left"))
    return float(v[min(idx, v.size - 1)])


def needs_conformal(forecaster: Any) -> bool:
    """Whether ``forecaster`` lacks native prediction intervals (so needs conformal quantiles)."""
    return not bool(getattr(forecaster, "native_intervals", False))


def _window_for(counts: np.ndarray, min_samples: int) -> int:
    """The smallest half-width ``w`` such that every step's window holds ``min_samples`` values."""
    H = len(counts)
    total = int(counts.sum())
    if total == 0:
        return 0
    target = min(min_samples, total)
    csum = np.concatenate([[0], np.cumsum(counts)])
    for w in range(H):
        lo = np.clip(np.arange(H) - w, 0, H)
        hi = np.clip(np.arange(H) + w + 1, 0, H)
        if (csum[hi] - csum[lo]).min() >= target:
            return w
    return H


class ConformalForecaster:
    """``inner`` plus quantiles from its backtest ``residuals`` (see the module docstring).

    ``residuals`` has columns ``unique_id, step, y, yhat`` (``step`` 1..h within each fold's
    forecast). ``fit`` refits ``inner`` and keeps the residuals (they come from the backtest,
    not from the refit data).
    """

    native_intervals: ClassVar[bool] = True

    def __init__(
        self,
        inner: Forecaster,
        residuals: pd.DataFrame,
        *,
        force: bool = False,
        window: int | None = None,
        per_series: bool | str = "auto",
        min_samples: int = 50,
        finite_sample: bool = True,
        symmetric: bool = False,
        day_kinds: DayKinds | None = None,
    ) -> None:
        self.inner = inner
        self.force = force
        self.finite_sample = bool(finite_sample)
        self.symmetric = bool(symmetric)
        self.per_series = per_series
        self.min_samples = int(min_samples)
        if per_series not in (True, False, "auto"):
            raise ModelError(f"candidate '{self.name}': per_series must be true, false or 'auto', got {per_series!r}")
        missing = [c for c in (ID, STEP, TARGET, POINT) if c not in residuals.columns]
        if missing:
            raise ModelError(f"candidate '{self.name}': the residuals lack column(s) {', '.join(missing)}")
        timed = day_kinds is not None and TIME in residuals.columns
        res = residuals[[ID, STEP, TARGET, POINT, *([TIME] if timed else [])]].copy()
        res[ID] = res[ID].astype(str)
        res["e"] = res[TARGET].astype(float) - res[POINT].astype(float)
        res = res[np.isfinite(res["e"]) & res[STEP].notna()]
        res[STEP] = res[STEP].astype(int)
        if res.empty:
            raise ModelError(f"candidate '{self.name}': no usable backtest residuals for conformal quantiles")
        if (res[STEP] < 1).any():
            raise ModelError(f"candidate '{self.name}': residual steps start at 1")
        self.day_kinds = day_kinds
        labels = day_kinds.labels(res[TIME]) if timed and day_kinds is not None else None
        self._kind_factors = self._factors(res, labels)
        if self._kind_factors and labels is not None:
            res["e"] = res["e"].to_numpy(float) / self._factor_table()[labels]
        if timed:
            res = res.drop(columns=TIME)
        self.horizon = int(res[STEP].max())
        counts = np.bincount(res[STEP].to_numpy() - 1, minlength=self.horizon)
        self.window = int(window) if window is not None else _window_for(counts, self.min_samples)
        # residuals by series, as one array per step (small: a few folds x horizon x series)
        self._pooled = self._by_step(res)
        self._series = {str(uid): self._by_step(g) for uid, g in res.groupby(ID, sort=False)}
        self.n_residuals = len(res)
        # each series' mean absolute residual, and the pooled residuals divided by their series' one
        scale = res["e"].abs().groupby(res[ID], sort=False).mean()
        positive = scale[scale > 0]
        floor = float(positive.median()) if len(positive) else 1.0
        scale = scale.where(scale > 0, floor)
        self._scales: dict[str, float] | None = {str(k): float(v) for k, v in scale.items()}
        z = res.assign(e=res["e"] / res[ID].map(scale).to_numpy(float))
        self._pooled_scaled: list[np.ndarray] | None = self._by_step(z)

    def _factors(self, res: pd.DataFrame, labels: np.ndarray | None) -> dict[int, float]:
        """The kinds' width factors (``{}``: no kinds of day, or too few residuals of one kind)."""
        if labels is None:
            return {}
        scale = res["e"].abs().groupby(res[ID], sort=False).transform("mean").to_numpy(float)
        scaled = np.abs(res["e"].to_numpy(float)) / np.where(scale > 0, scale, np.nan)
        return kind_factors(labels, scaled)

    def row_factors(self, times: Any) -> np.ndarray:
        """The width factor of each timestamp's kind of day (1 where the kinds are not used): label
        a whole frame's timestamps at once and pass slices to :meth:`scaled_offsets`."""
        return self._kind_factor_rows(times)

    def _kind_factor_rows(self, times: Any) -> np.ndarray:
        factors = getattr(self, "_kind_factors", None)
        if not factors or getattr(self, "day_kinds", None) is None:
            return np.ones(len(times))
        return self._factor_table()[self.day_kinds.labels(times)]  # type: ignore[union-attr]

    def _factor_table(self) -> np.ndarray:
        """The factor of each kind label (0: working day, 1: day off), 1 for a kind without one."""
        factors = getattr(self, "_kind_factors", None) or {}
        return np.array([factors.get(0, 1.0), factors.get(1, 1.0)])

    def scaled_offsets(
        self, quantiles: Sequence[float], uid: str | None, steps: np.ndarray, times: Any = None,
        *, factors: np.ndarray | None = None,
    ) -> np.ndarray:
        """Offsets for rows at horizon ``steps`` (1-based, clipped to the residuals' horizon) and
        timestamps ``times``: :meth:`offsets` times each row's kind-of-day factor (``factors``: the
        rows' :meth:`row_factors`, computed once for many series)."""
        off = self.offsets(quantiles, uid)[np.minimum(np.asarray(steps, dtype=int), self.horizon) - 1]
        if not getattr(self, "_kind_factors", None):
            return off
        if factors is None:
            factors = self._kind_factor_rows(times)
        return off * np.asarray(factors, dtype=float)[:, None]

    @property
    def name(self) -> str:
        return getattr(self.inner, "name", "model")

    @name.setter
    def name(self, value: str) -> None:
        self.inner.name = value

    def _by_step(self, res: pd.DataFrame) -> list[np.ndarray]:
        grouped = {int(k): g["e"].to_numpy(float) for k, g in res.groupby(STEP)}
        return [grouped.get(k, np.empty(0)) for k in range(1, self.horizon + 1)]

    def _window_values(self, by_step: list[np.ndarray], k: int) -> np.ndarray:
        lo = max(0, k - 1 - self.window)
        hi = min(self.horizon, k + self.window)
        return np.concatenate(by_step[lo:hi])

    def offsets(self, quantiles: Sequence[float], uid: str | None = None) -> np.ndarray:
        """Offsets to add to the point forecast: shape ``(horizon, len(quantiles))`` (cached: they depend
        only on the fitted residuals, and serving asks for the same ones on every request)."""
        key = (tuple(float(q) for q in quantiles), uid)
        cache: dict[tuple[tuple[float, ...], str | None], np.ndarray] = self.__dict__.setdefault("_offsets", {})
        if key not in cache:
            if len(cache) >= 4096:  # many series x many quantile sets: keep it bounded
                cache.clear()
            out = self._compute_offsets(key[0], uid)
            out.setflags(write=False)
            cache[key] = out
        return cache[key]

    def _compute_offsets(self, quantiles: Sequence[float], uid: str | None) -> np.ndarray:
        qs = np.asarray(quantiles, dtype=float)
        order = np.argsort(qs)
        own = self._series.get(uid) if uid is not None and self.per_series is not False else None
        scaled = getattr(self, "_pooled_scaled", None)
        scales = getattr(self, "_scales", None) or {}
        out = np.empty((self.horizon, len(qs)))
        for k in range(1, self.horizon + 1):
            vals = self._window_values(own, k) if own is not None else np.empty(0)
            if own is None or len(vals) == 0 or (self.per_series == "auto" and len(vals) < self.min_samples):
                if scaled is not None and uid in scales and self.per_series is not False:
                    vals = self._window_values(scaled, k) * scales[uid]
                else:
                    vals = self._window_values(self._pooled, k)
            row = self._symmetric(vals, qs[order]) if getattr(self, "symmetric", False) else self._quantiles(vals, qs[order])
            out[k - 1, order] = np.maximum.accumulate(row)
        return out

    def _quantiles(self, vals: np.ndarray, qs: np.ndarray) -> np.ndarray:
        if not len(vals):
            return np.full(len(qs), np.nan)
        if not getattr(self, "finite_sample", False):
            return np.quantile(vals, qs)
        return np.array([conformal_quantile(vals, float(q)) for q in qs])

    def _symmetric(self, vals: np.ndarray, qs: np.ndarray) -> np.ndarray:
        """Offsets from the absolute residuals: quantile ``q`` is ``sign(q - 0.5)`` times the
        ``|2q - 1|`` quantile of ``|e|`` (0.1 and 0.9: minus and plus the 80 % quantile of ``|e|``)."""
        return np.sign(qs - 0.5) * self._quantiles(np.abs(vals), np.abs(2.0 * qs - 1.0))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_offsets", None)  # a cache: recomputed on demand after unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- protocol ------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        params = dict(self.inner.get_params()) if hasattr(self.inner, "get_params") else {}
        params.update(
            {"conformal_window": self.window, "conformal_per_series": self.per_series,
             "conformal_min_samples": self.min_samples, "conformal_force": self.force,
             "conformal_finite_sample": getattr(self, "finite_sample", False),
             "conformal_symmetric": getattr(self, "symmetric", False),
             "conformal_day_kinds": {("day_off" if k else "working_day"): round(v, 4)
                                     for k, v in (getattr(self, "_kind_factors", None) or {}).items()}}
        )
        return params

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> ConformalForecaster:
        self.inner.fit(df, ctx)
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        qs = check_quantiles(quantiles, self.name)
        if qs and not self.force and not needs_conformal(self.inner):
            return self.inner.predict(h, history=history, X_future=X_future, quantiles=qs)
        fc = self.inner.predict(h, history=history, X_future=X_future, quantiles=())
        if list(fc.columns) != [ID, TIME, POINT]:
            fc = fc[[ID, TIME, POINT]]
        if fc[ID].dtype != object:
            fc = fc.assign(**{ID: fc[ID].astype(str)})
        if not is_sorted(fc):
            fc = fc.sort_values([ID, TIME], kind="stable").reset_index(drop=True)
        if not qs:
            return finish(fc, ())
        ids = fc[ID].to_numpy()
        starts, stops = series_bounds(ids)
        point = fc[POINT].to_numpy(float)
        values = np.empty((len(fc), len(qs)))
        factors = self.row_factors(fc[TIME].to_numpy())  # every row at once (serving many series)
        for a, b in zip(starts, stops, strict=True):
            uid = str(ids[a])
            key = None if self.per_series is False or uid not in self._series else uid
            values[a:b] = point[a:b, None] + self.scaled_offsets(qs, key, np.arange(1, b - a + 1), factors=factors[a:b])
        columns = {ID: ids, TIME: fc[TIME].array, POINT: point}
        columns.update({quantile_column(q): values[:, j] for j, q in enumerate(qs)})
        return pd.DataFrame(columns)
