"""The Diebold–Mariano test of equal predictive accuracy, with the Harvey–Leybourne–Newbold correction.

Two forecasts of the same stretch, their losses ``L_a(t)`` and ``L_b(t)``, the loss differential
``d(t) = L_a(t) - L_b(t)``:

* ``DM = mean(d) / sqrt(V / n)``, with ``V = gamma_0 + 2 * sum_{k=1}^{h-1} gamma_k`` the long-run
  variance of ``d`` from its autocovariances up to lag ``h - 1`` (errors of ``h``-step forecasts
  are serially correlated up to that lag; Diebold & Mariano 1995);
* small-sample correction (Harvey, Leybourne & Newbold 1997):
  ``DM* = DM * sqrt((n + 1 - 2h + h(h - 1) / n) / n)``, compared with Student's t on ``n - 1``
  degrees of freedom;
* one-sided by default: ``H1: E[d] < 0``, forecast ``a`` is more accurate, ``p = P(T <= DM*)``.

If the truncated sum gives ``V <= 0`` (possible with the rectangular window), ``gamma_0`` alone is
used (and :attr:`DMResult.variance_fallback` says so). With ``n <= 2h - 1`` the correction factor
is zero or undefined: there is not enough evidence for any test (``p = 0.5`` one-sided, 1 two-sided).

Losses match the selection metric (:func:`pointwise_loss`): squared errors for ``rmse``, absolute
(scaled for ``mase``, relative for ``mape``/``smape``) otherwise; several series are averaged per
timestamp into one differential series (a panel's cross-sectional mean loss).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from tidecast.errors import BacktestError
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_of

Alternative = Literal["less", "two-sided"]

__all__ = ["DMResult", "diebold_mariano", "loss_kind", "loss_series", "pointwise_loss"]


@dataclass(frozen=True)
class DMResult:
    """The outcome of :func:`diebold_mariano`."""

    statistic: float
    """``DM*``: the HLN-corrected statistic (negative: ``a`` has the lower loss)."""
    p_value: float
    n: int
    h: int
    mean_difference: float
    """``mean(L_a - L_b)``."""
    alternative: str
    dm_uncorrected: float
    variance_fallback: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """``DM -2.41, p 0.009 (n 864, h 288)``."""
        return f"DM {self.statistic:+.3f}, p {self.p_value:.3g} (n {self.n}, h {self.h})"


def _autocovariance(d: np.ndarray, lag: int) -> float:
    n = len(d)
    centred = d - d.mean()
    return float(np.dot(centred[lag:], centred[: n - lag]) / n)


def diebold_mariano(loss_a: Any, loss_b: Any, h: int = 1, *, alternative: Alternative = "less") -> DMResult:
    """Test whether forecast ``a`` (losses ``loss_a``) is more accurate than ``b`` (see the module).

    >>> r = diebold_mariano([1.0, 2.0, 1.5, 0.5, 1.0], [2.0, 2.5, 1.0, 1.5, 2.0], h=1)
    >>> round(r.statistic, 3), round(r.p_value, 4)
    (-2.058, 0.0544)
    """
    from scipy import stats

    a = np.asarray(loss_a, dtype=float)
    b = np.asarray(loss_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise BacktestError(f"diebold_mariano: the two loss series differ in shape ({a.shape} vs {b.shape})")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise BacktestError("diebold_mariano: the losses hold NaN or infinite values")
    n, h = len(a), int(h)
    if h < 1:
        raise BacktestError(f"diebold_mariano: h must be at least 1, got {h}")
    if n < 2:
        raise BacktestError(f"diebold_mariano: {n} loss value(s); the test needs at least 2")
    if alternative not in ("less", "two-sided"):
        raise BacktestError(f"diebold_mariano: alternative must be 'less' or 'two-sided', got {alternative!r}")
    d = a - b
    mean = float(d.mean())
    gamma0 = _autocovariance(d, 0)
    variance = gamma0 + 2.0 * sum(_autocovariance(d, k) for k in range(1, min(h, n)))
    fallback = variance <= 0
    if fallback:
        variance = gamma0
    factor = (n + 1 - 2 * h + h * (h - 1) / n) / n
    # identical losses (or a constant difference) leave no variation to test against
    flat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    dm = flat if variance <= 0 else mean / math.sqrt(variance / n)
    corrected = dm * math.sqrt(factor) if factor > 0 else 0.0
    t = stats.t(df=n - 1)
    p = float(t.cdf(corrected)) if alternative == "less" else float(2 * t.sf(abs(corrected)))
    return DMResult(
        statistic=float(corrected),
        p_value=min(1.0, p),
        n=n,
        h=h,
        mean_difference=mean,
        alternative=alternative,
        dm_uncorrected=float(dm),
        variance_fallback=bool(fallback),
    )


def loss_kind(metric: str) -> str:
    """The pointwise loss matching a selection metric: ``squared`` (rmse), ``scaled_absolute`` (mase),
    ``relative_absolute`` (mape), ``symmetric_absolute`` (smape), ``pinball``, else ``absolute``."""
    return {
        "rmse": "squared",
        "mase": "scaled_absolute",
        "mape": "relative_absolute",
        "smape": "symmetric_absolute",
        "pinball": "pinball",
    }.get(metric, "absolute")


def pointwise_loss(forecasts: pd.DataFrame, metric: str, scales: pd.DataFrame | None = None) -> pd.Series:
    """Each row's loss under ``metric`` (rows ``unique_id, ds, y, yhat`` [+ quantile columns]).

    ``scales`` (``unique_id, scale``) divides the absolute errors for ``mase``; ``pinball`` averages the
    pinball losses of the quantile columns (``yhat`` as the median when there are none)."""
    kind = loss_kind(metric)
    y = forecasts[TARGET].to_numpy(float)
    yhat = forecasts[POINT].to_numpy(float)
    e = y - yhat
    if kind == "squared":
        values = e**2
    elif kind == "scaled_absolute":
        if scales is None:
            raise BacktestError("pointwise_loss: mase needs the series' scales")
        table = scales.drop_duplicates(ID, keep="last").set_index(scales[ID].drop_duplicates(keep="last").astype(str))
        scale = forecasts[ID].astype(str).map(table["scale"]).to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.abs(e) / scale
    elif kind == "relative_absolute":
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.abs(e) / np.abs(y)
    elif kind == "symmetric_absolute":
        with np.errstate(divide="ignore", invalid="ignore"):
            values = 2 * np.abs(e) / (np.abs(y) + np.abs(yhat))
    elif kind == "pinball":
        columns = [(q, c) for c in forecasts.columns if (q := quantile_of(c)) is not None]
        if columns:
            terms = []
            for q, column in columns:
                diff = y - forecasts[column].to_numpy(float)
                terms.append(np.maximum(q * diff, (q - 1) * diff))
            values = np.mean(terms, axis=0)
        else:
            values = 0.5 * np.abs(e)
    else:
        values = np.abs(e)
    return pd.Series(values, index=forecasts.index, name="loss")


def loss_series(forecasts: pd.DataFrame, metric: str, scales: pd.DataFrame | None = None) -> pd.Series:
    """The loss per timestamp: :func:`pointwise_loss` averaged over the series at each ``ds`` (rows with
    a non-finite loss, e.g. a zero actual under ``mape``, are left out), indexed by ``ds``."""
    loss = pointwise_loss(forecasts, metric, scales)
    frame = pd.DataFrame({TIME: forecasts[TIME].to_numpy(), "loss": loss.to_numpy()})
    frame = frame[np.isfinite(frame["loss"])]
    return frame.groupby(TIME, sort=True)["loss"].mean()


def compare(
    winner: pd.DataFrame, other: pd.DataFrame, metric: str, h: int, scales: pd.DataFrame | None = None
) -> DMResult:
    """DM test of ``winner``'s forecasts against ``other``'s on the timestamps both have (one-sided:
    the winner is more accurate)."""
    a = loss_series(winner, metric, scales)
    b = loss_series(other, metric, scales)
    common = a.index.intersection(b.index)
    if len(common) < 2:
        raise BacktestError("significance: the two forecasts share fewer than 2 timestamps of the held-out stretch")
    return diebold_mariano(a.loc[common].to_numpy(), b.loc[common].to_numpy(), h=h)
