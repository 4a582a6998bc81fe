"""Forecast accuracy metrics, vectorised, and the evaluation of backtest forecasts.

The point metrics follow ``utilsforecast.losses`` (0.2.x) exactly, term by term:

=========  ====================================================  ==========================================
metric     definition                                            notes
=========  ====================================================  ==========================================
mae        mean |y - ŷ|
rmse       sqrt(mean (y - ŷ)²)
mape       mean |y - ŷ| / |y|                                    a fraction (0.05 = 5 %); rows with y = 0
                                                                 are ignored (utilsforecast turns them into
                                                                 NaN and skips them)
smape      mean |y - ŷ| / (|y| + |ŷ|)                            utilsforecast's scale: 0..1 (0 when
                                                                 y = ŷ = 0); multiply by 200 for the
                                                                 "0..200 %" textbook sMAPE
mase       mean |y - ŷ| / scale                                  scale: in-sample MAE of the seasonal naive
                                                                 (lag ``season_length``) on the training data
wape       sum |y - ŷ| / sum |y|                                 utilsforecast's ``wape``/``nd``
bias       mean (ŷ - y)                                          > 0: over-forecasting
pinball    mean max(q (y - ŷ_q), (q - 1)(y - ŷ_q))               per quantile (``pinball_q0.1``...) and the
                                                                 mean over quantiles (``pinball``)
coverage   fraction of y in [ŷ_q, ŷ_(1-q)] (inclusive)            per symmetric pair (``coverage_80`` for
                                                                 q0.1/q0.9); ``coverage`` is the widest pair
width      mean (ŷ_(1-q) - ŷ_q)                                  ``width_80``...; ``interval_width`` widest
interval   mean (u - l) + 2/α (l - y)⁺ + 2/α (y - u)⁺             the interval (Winkler) score of [l, u] =
 score     (α = 1 - level)                                       [ŷ_q, ŷ_(1-q)], per pair
                                                                 (``interval_score_80``); ``interval_score``
                                                                 the mean over pairs (Gneiting & Raftery 2007)
=========  ====================================================  ==========================================

Rows whose actual is missing (NaN) are ignored everywhere.

:func:`evaluate` pools rows per group: a fold's MAE is the mean absolute error over every row of
the fold (all series, all steps), its RMSE the root of the mean squared error over those rows,
its MASE the mean of the rows' absolute errors each divided by its series' scale (which is the
mean of the per-series MASEs when every series has ``h`` rows). ``aggregate`` is the mean over
folds of these per-fold values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tidecast.errors import BacktestError
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column, quantiles_in

__all__ = [
    "POINT_METRICS",
    "Evaluation",
    "bias",
    "coverage",
    "evaluate",
    "fold_scales",
    "interval_pairs",
    "interval_score",
    "interval_width",
    "mae",
    "mape",
    "mase",
    "mean_pinball",
    "pinball",
    "rmse",
    "seasonal_naive_scale",
    "series_scales",
    "smape",
    "wape",
]

POINT_METRICS = ("mae", "rmse", "mape", "smape", "mase", "wape", "bias")

ArrayLike = Any


# ---------------------------------------------------------------------------- array metrics
def _pair(y: ArrayLike, yhat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    yhat = np.asarray(yhat, dtype=float).ravel()
    if y.shape != yhat.shape:
        raise ValueError(f"y and yhat differ in length: {y.shape[0]} vs {yhat.shape[0]}")
    keep = ~(np.isnan(y) | np.isnan(yhat))
    return y[keep], yhat[keep]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def mae(y: ArrayLike, yhat: ArrayLike) -> float:
    """Mean absolute error."""
    y, yhat = _pair(y, yhat)
    return _mean(np.abs(y - yhat))


def rmse(y: ArrayLike, yhat: ArrayLike) -> float:
    """Root mean squared error."""
    y, yhat = _pair(y, yhat)
    return float(np.sqrt(_mean((y - yhat) ** 2)))


def mape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Mean absolute percentage error, as a fraction. Rows with ``y == 0`` are ignored (NaN if all are)."""
    y, yhat = _pair(y, yhat)
    nz = y != 0
    return _mean(np.abs(y[nz] - yhat[nz]) / np.abs(y[nz]))


def _sape(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    denominator = np.abs(y) + np.abs(yhat)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator == 0, 0.0, np.abs(yhat - y) / denominator)


def smape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Symmetric MAPE as utilsforecast defines it: ``mean |y - ŷ| / (|y| + |ŷ|)``, in 0..1 (0 when both are 0)."""
    y, yhat = _pair(y, yhat)
    return _mean(_sape(y, yhat))


def seasonal_naive_scale(y_train: ArrayLike, season_length: int = 1) -> float:
    """In-sample MAE of the seasonal naive forecast: ``mean |y_t - y_(t-m)|`` (NaN if too short)."""
    values = np.asarray(y_train, dtype=float).ravel()
    m = int(season_length)
    if m < 1:
        raise ValueError(f"season_length must be at least 1, got {season_length}")
    if values.size <= m:
        return float("nan")
    diffs = np.abs(values[m:] - values[:-m])
    diffs = diffs[~np.isnan(diffs)]
    return _mean(diffs)


def mase(y: ArrayLike, yhat: ArrayLike, y_train: ArrayLike, season_length: int = 1) -> float:
    """Mean absolute scaled error of one series: ``mae(y, ŷ) / seasonal_naive_scale(y_train, m)``.

    ``inf`` when the scale is 0 (a constant training series), NaN when it is unknown.
    """
    scale = seasonal_naive_scale(y_train, season_length)
    error = mae(y, yhat)
    if np.isnan(scale):
        return float("nan")
    if scale == 0:
        return float("inf") if error > 0 else float("nan")
    return error / scale


def wape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Weighted absolute percentage error: ``sum |y - ŷ| / sum |y|`` (NaN if every y is 0)."""
    y, yhat = _pair(y, yhat)
    total = np.abs(y).sum()
    return float(np.abs(y - yhat).sum() / total) if total else float("nan")


def bias(y: ArrayLike, yhat: ArrayLike) -> float:
    """Mean of ``ŷ - y`` (positive: the forecasts are too high)."""
    y, yhat = _pair(y, yhat)
    return _mean(yhat - y)


def _pinball_terms(y: np.ndarray, pred: np.ndarray, q: float) -> np.ndarray:
    delta = y - pred
    return np.maximum(q * delta, (q - 1) * delta)


def pinball(y: ArrayLike, y_q: ArrayLike, q: float) -> float:
    """Pinball (quantile) loss of the forecast ``y_q`` of quantile ``q``."""
    y, y_q = _pair(y, y_q)
    return _mean(_pinball_terms(y, y_q, q))


def mean_pinball(y: ArrayLike, predictions: Mapping[float, ArrayLike]) -> float:
    """Mean over quantiles of the pinball loss (``predictions``: quantile -> forecasts)."""
    if not predictions:
        return float("nan")
    return float(np.mean([pinball(y, pred, q) for q, pred in predictions.items()]))


def coverage(y: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Fraction of actuals inside ``[lo, hi]`` (bounds included)."""
    y = np.asarray(y, dtype=float).ravel()
    lo = np.asarray(lo, dtype=float).ravel()
    hi = np.asarray(hi, dtype=float).ravel()
    keep = ~(np.isnan(y) | np.isnan(lo) | np.isnan(hi))
    return _mean(((lo[keep] <= y[keep]) & (y[keep] <= hi[keep])).astype(float))


def interval_width(lo: ArrayLike, hi: ArrayLike) -> float:
    """Mean width ``hi - lo`` of the intervals."""
    lo, hi = _pair(lo, hi)
    return _mean(hi - lo)


def _interval_score_terms(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, alpha: float) -> np.ndarray:
    return (hi - lo) + (2.0 / alpha) * np.maximum(lo - y, 0.0) + (2.0 / alpha) * np.maximum(y - hi, 0.0)


def interval_score(y: ArrayLike, lo: ArrayLike, hi: ArrayLike, alpha: float) -> float:
    """Mean interval (Winkler) score of the central ``1 - alpha`` intervals ``[lo, hi]``: the width,
    plus ``2 / alpha`` times the distance by which the actual falls outside (lower is better)."""
    y = np.asarray(y, dtype=float).ravel()
    lo = np.asarray(lo, dtype=float).ravel()
    hi = np.asarray(hi, dtype=float).ravel()
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    keep = ~(np.isnan(y) | np.isnan(lo) | np.isnan(hi))
    return _mean(_interval_score_terms(y[keep], lo[keep], hi[keep], float(alpha)))


def interval_pairs(quantiles: Iterable[float]) -> list[tuple[float, float, str]]:
    """Symmetric quantile pairs ``(lo, hi, level)``, widest first: ``[(0.1, 0.9, '80')]``."""
    qs = sorted(set(float(q) for q in quantiles))
    out = []
    for lo in qs:
        if lo >= 0.5:
            break
        hi = next((q for q in qs if abs(q - (1 - lo)) < 1e-9), None)
        if hi is not None:
            out.append((lo, hi, f"{round((hi - lo) * 100, 6):g}"))
    return out


# ----------------------------------------------------------------------------------- scales
def _scales_of(train: pd.DataFrame, season_length: int) -> pd.DataFrame:
    """Per-series seasonal-naive scale of a (sorted) long frame: ``unique_id, scale``."""
    m = int(season_length)
    if m < 1:
        raise ValueError(f"season_length must be at least 1, got {season_length}")
    y = train[TARGET].astype(float)
    lagged = y.groupby(train[ID], observed=True, sort=False).shift(m)
    diffs = (y - lagged).abs()
    scale = diffs.groupby(train[ID], observed=True, sort=True).mean()
    return scale.rename("scale").rename_axis(ID).reset_index()


def series_scales(train: pd.DataFrame, season_length: int) -> pd.DataFrame:
    """``unique_id, scale``: each series' in-sample MAE of the seasonal naive (rows are sorted by time first)."""
    return _scales_of(train.sort_values([ID, TIME], kind="stable"), season_length)


def fold_scales(df: pd.DataFrame, folds: Sequence[Any], season_length: int) -> pd.DataFrame:
    """``fold, unique_id, scale``: the MASE scale of each series from each fold's own training
    window (rows at or before the cut-off, and at or after ``train_start`` for sliding windows).
    Computed in numpy on the ids' codes (what :func:`_scales_of` computes per fold, without a
    groupby per fold: thousands of series × folds cost seconds otherwise)."""
    m = int(season_length)
    if m < 1:
        raise ValueError(f"season_length must be at least 1, got {season_length}")
    data = df if _sorted_by_series(df) else df.sort_values([ID, TIME], kind="stable")
    codes, uniques = pd.factorize(data[ID], sort=True)
    ds = data[TIME]
    y = data[TARGET].to_numpy(dtype=float)
    frames = []
    for fold in folds:
        mask = (ds <= fold.cutoff).to_numpy()
        if fold.train_start is not None:
            mask &= (ds >= fold.train_start).to_numpy()
        if fold.series is not None:
            mask &= data[ID].isin(fold.series).to_numpy()
        c, v = codes[mask], y[mask]
        present = np.bincount(c, minlength=len(uniques)) > 0
        same = c[m:] == c[:-m] if len(c) > m else np.zeros(0, dtype=bool)
        diffs = np.abs(v[m:] - v[:-m])[same] if len(c) > m else np.zeros(0)
        keep = ~np.isnan(diffs)  # a NaN difference is skipped, as the mean of a groupby skips it
        sums = np.bincount(c[m:][same][keep], weights=diffs[keep], minlength=len(uniques))
        counts = np.bincount(c[m:][same][keep], minlength=len(uniques))
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        frames.append(pd.DataFrame({"fold": fold.index, ID: uniques[present], "scale": scale[present]}))
    if not frames:
        return pd.DataFrame({"fold": [], ID: [], "scale": []})
    return pd.concat(frames, ignore_index=True)


def _sorted_by_series(df: pd.DataFrame) -> bool:
    from tidecast.evaluation.fold_work import _is_sorted

    return _is_sorted(df)


# ------------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Metrics of backtest forecasts at several levels of aggregation.

    ``per_fold`` (index ``fold``), ``per_step`` (index ``step``) and ``per_series`` (index
    ``unique_id``) hold one column per metric, each pooled over the rows of the group (see the
    module docstring). ``aggregate`` maps each metric to the mean over folds of its per-fold value.
    """

    per_fold: pd.DataFrame
    per_step: pd.DataFrame
    per_series: pd.DataFrame
    aggregate: dict[str, float]
    metrics: list[str] = field(default_factory=list)
    season_length: int | None = None
    quantiles: tuple[float, ...] = ()
    n_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary: aggregate and per-fold metrics."""
        return {
            "aggregate": {k: (None if v != v else float(v)) for k, v in self.aggregate.items()},
            "per_fold": {
                str(fold): {k: (None if v != v else float(v)) for k, v in row.items()}
                for fold, row in self.per_fold.to_dict(orient="index").items()
            },
            "season_length": self.season_length,
            "quantiles": list(self.quantiles),
            "n_rows": self.n_rows,
            "notes": list(self.notes),
        }


def forecast_quantiles(forecasts: pd.DataFrame) -> tuple[float, ...]:
    """The quantiles whose columns (``q0.1``...) a forecast frame holds."""
    return quantiles_in(forecasts.columns)


@dataclass(frozen=True)
class _Cut:
    """An expanding-window fold known only by its index and cut-off (for :func:`fold_scales`)."""

    index: Any
    cutoff: Any
    train_start: Any = None
    series: Any = None


def _scale_column(forecasts: pd.DataFrame, train: pd.DataFrame | None, season_length: int | None) -> pd.Series | None:
    if train is None:
        return None
    if "scale" in train.columns:
        keys = ["fold", ID] if "fold" in train.columns and "fold" in forecasts.columns else [ID]
        table = train[[*keys, "scale"]].drop_duplicates(keys)
        if table[ID].dtype != forecasts[ID].dtype:
            table = table.assign(**{ID: table[ID].astype(forecasts[ID].dtype)})
        merged = forecasts[keys].merge(table, on=keys, how="left")
        return pd.Series(merged["scale"].to_numpy(dtype=float), index=forecasts.index)
    if TARGET not in train.columns:
        raise BacktestError("evaluate: 'train' must be a long frame (unique_id, ds, y) or a scale table (..., scale)")
    if not season_length:
        raise BacktestError("evaluate: MASE needs season_length")
    if "cutoff" not in forecasts.columns:
        table = series_scales(train, season_length)
        return _scale_column(forecasts, table, season_length)
    cuts = forecasts[["fold", "cutoff"]].drop_duplicates("fold")
    folds = [_Cut(f, c) for f, c in zip(cuts["fold"], cuts["cutoff"], strict=True)]
    return _scale_column(forecasts, fold_scales(train, folds, season_length), season_length)


def _row_terms(
    forecasts: pd.DataFrame, scale: pd.Series | None, quantiles: Sequence[float]
) -> tuple[pd.DataFrame, list[tuple[float, float, str]]]:
    y = forecasts[TARGET].to_numpy(dtype=float)
    yhat = forecasts[POINT].to_numpy(dtype=float)
    err = yhat - y
    ae = np.abs(err)
    ay = np.abs(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = np.where(y != 0, ae / ay, np.nan)
    terms: dict[str, np.ndarray] = {"err": err, "ae": ae, "se": err**2, "ape": ape, "sape": _sape(y, yhat), "ay": ay}
    if scale is not None:
        s = scale.to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms["ase"] = np.where(s > 0, ae / s, np.nan)
    for q in quantiles:
        terms[f"pinball_{quantile_column(q)}"] = _pinball_terms(y, forecasts[quantile_column(q)].to_numpy(dtype=float), q)
    pairs = interval_pairs(quantiles)
    for lo, hi, level in pairs:
        lo_v = forecasts[quantile_column(lo)].to_numpy(dtype=float)
        hi_v = forecasts[quantile_column(hi)].to_numpy(dtype=float)
        inside = ((lo_v <= y) & (y <= hi_v)).astype(float)
        inside[np.isnan(lo_v) | np.isnan(hi_v)] = np.nan
        terms[f"coverage_{level}"] = inside
        terms[f"width_{level}"] = hi_v - lo_v
        terms[f"interval_score_{level}"] = _interval_score_terms(y, lo_v, hi_v, lo + (1.0 - hi))
    return pd.DataFrame(terms, index=forecasts.index), pairs


def _metrics_of(means: pd.DataFrame, quantiles: Sequence[float], pairs: list[tuple[float, float, str]]) -> pd.DataFrame:
    """Metric columns from the per-group means of the row terms."""
    out = pd.DataFrame(index=means.index)
    out["mae"] = means["ae"]
    out["rmse"] = np.sqrt(means["se"])
    out["mape"] = means["ape"]
    out["smape"] = means["sape"]
    if "ase" in means:
        out["mase"] = means["ase"]
    out["wape"] = means["ae"] / means["ay"].where(means["ay"] != 0)
    out["bias"] = means["err"]
    qcols = [f"pinball_{quantile_column(q)}" for q in quantiles]
    if qcols:
        for column in qcols:
            out[column] = means[column]
        out["pinball"] = means[qcols].mean(axis=1)
    else:  # no quantiles: the point forecast is scored as the median
        out["pinball"] = 0.5 * means["ae"]
    for _, _, level in pairs:
        out[f"coverage_{level}"] = means[f"coverage_{level}"]
        out[f"width_{level}"] = means[f"width_{level}"]
        out[f"interval_score_{level}"] = means[f"interval_score_{level}"]
    if pairs:
        widest = pairs[0][2]
        out["coverage"] = out[f"coverage_{widest}"]
        out["interval_width"] = out[f"width_{widest}"]
        out["interval_score"] = out[[f"interval_score_{level}" for _, _, level in pairs]].mean(axis=1)
    return out


def _zero_notes(y: np.ndarray) -> list[str]:
    """What the scores cannot say on these actuals: MAPE is undefined where an actual is 0."""
    zeros = int((y == 0).sum())
    if not zeros:
        return []
    if zeros == len(y):
        return [f"mape: every one of the {zeros} actuals is 0, where MAPE is undefined: it is NaN (use mase or wape)"]
    return [
        f"mape: {zeros} of {len(y)} actuals are 0, where MAPE is undefined: it is the mean over the other "
        "rows, NaN for a fold or series whose actuals are all 0 (mase and wape stay defined on zeros)"
    ]


def evaluate(
    forecasts: pd.DataFrame,
    train: pd.DataFrame | None = None,
    *,
    season_length: int | None = None,
    quantiles: Sequence[float] | None = None,
) -> Evaluation:
    """Score backtest forecasts (``unique_id, ds, fold, step, y, yhat`` + quantile columns).

    ``train`` gives MASE its scale, as either

    * a scale table ``fold, unique_id, scale`` (e.g. :func:`fold_scales` or
      :meth:`BacktestResult.scales`: each fold scaled by its own training data), or
      ``unique_id, scale`` (one scale per series for every fold);
    * the long training frame ``unique_id, ds, y``: each fold's scale then comes from the rows at
      or before its ``cutoff`` (an expanding window) with ``season_length``.

    Without ``train`` MASE is left out. A series whose scale is 0 (constant training data) or
    unknown (too short) has no MASE; MASE pools the other series. ``quantiles`` defaults to the
    quantile columns found in ``forecasts``; a requested quantile without a column is skipped.
    Without quantiles ``pinball`` is the pinball loss of ``yhat`` as the median (``mae / 2``).
    """
    missing = [c for c in (TARGET, POINT) if c not in forecasts.columns]
    if missing:
        raise BacktestError(f"evaluate: forecasts have no column(s) {', '.join(missing)}")
    data = forecasts[forecasts[TARGET].notna()]
    if "fold" not in data.columns:
        data = data.assign(fold=0)
    if "step" not in data.columns:
        data = data.assign(step=data.groupby(["fold", ID], observed=True).cumcount() + 1)
    available = set(forecast_quantiles(data))
    qs = tuple(sorted(float(q) for q in (forecast_quantiles(data) if quantiles is None else quantiles)))
    qs = tuple(q for q in qs if q in available)
    scale = _scale_column(data, train, season_length)
    terms, pairs = _row_terms(data, scale, qs)

    def grouped(key: str) -> pd.DataFrame:
        means = terms.groupby(data[key].to_numpy(), sort=True).mean()
        means.index.name = key
        return _metrics_of(means, qs, pairs)

    per_fold = grouped("fold")
    per_step = grouped("step")
    ids = data[ID].astype(str) if isinstance(data[ID].dtype, pd.CategoricalDtype) else data[ID]
    per_series = _metrics_of(terms.groupby(ids.to_numpy(), sort=True).mean().rename_axis(ID), qs, pairs)
    aggregate = {name: float(per_fold[name].mean()) if len(per_fold) else float("nan") for name in per_fold.columns}
    return Evaluation(
        notes=_zero_notes(data[TARGET].to_numpy(dtype=float)),
        per_fold=per_fold,
        per_step=per_step,
        per_series=per_series,
        aggregate=aggregate,
        metrics=list(per_fold.columns),
        season_length=season_length,
        quantiles=qs,
        n_rows=len(data),
    )
