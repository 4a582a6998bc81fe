"""The ensemble method on backtest forecasts: greedy ensemble selection with replacement.

Caruana et al. (2004), the method behind AutoGluon-TimeSeries' weighted ensemble: start from an
empty bag; ``max_iterations`` times, add (with replacement) the member whose addition gives the
bag's average forecast the lowest loss; a member's weight is the share of the bag it holds. The
loss is the selection metric's pointwise loss (:func:`tidecast.evaluation.significance.loss_kind`:
squared errors for ``rmse``, scaled absolute errors for ``mase``, pinball of the combined quantiles
for ``pinball``...).

An ensemble's backtest (:func:`ensemble_backtest`) is computed from the members' stored fold
forecasts, never by refitting them, and without look-ahead: fold ``k`` is forecast with weights
fitted on folds ``0..k-1`` only; fold 0, which has no earlier fold, with equal weights. The final
weights (those served, :class:`tidecast.models.ensemble.EnsembleForecaster`) are fitted on every
fold. The greedy loss of ``pinball`` combines the members' own calibrated quantiles with the
same weights; the ensemble's intervals are then *recalibrated* on its own residuals
(:func:`recalibrate`): conformal quantiles of the combined point forecast, from the members'
calibration windows combined with the fold's weights and the earlier folds, as for any candidate
(:mod:`tidecast.evaluation.calibration`). :func:`beats_best_single` says where the ensemble beats
the best single candidate. The pipeline glue (leaderboard entries, the winner's model) is in
:mod:`tidecast.training.ensembles`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tidecast.errors import ModelError
from tidecast.evaluation.calibration import RESIDUAL_COLUMNS, calibrate_folds
from tidecast.evaluation.metrics import evaluate
from tidecast.evaluation.selection import Ranking
from tidecast.evaluation.significance import loss_kind
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column
from tidecast.models.ensemble import KEYS
from tidecast.spec.ensemble import DEFAULT_ITERATIONS

__all__ = [
    "EnsembleBacktest",
    "beats_best_single",
    "combined_points",
    "ensemble_backtest",
    "greedy_weights",
    "recalibrate",
]


# -------------------------------------------------------------------------------- the weights
def _combined_loss(
    point: np.ndarray, quant: np.ndarray | None, y: np.ndarray, scale: np.ndarray | None, kind: str, qs: Sequence[float]
) -> float:
    e = y - point
    if kind == "squared":
        return float(np.mean(e**2))
    if kind == "scaled_absolute" and scale is not None:
        return float(np.mean(np.abs(e) / scale))
    if kind == "relative_absolute":
        return float(np.mean(np.abs(e) / np.abs(y)))
    if kind == "symmetric_absolute":
        return float(np.mean(2 * np.abs(e) / (np.abs(y) + np.abs(point))))
    if kind == "pinball" and quant is not None and len(qs):
        terms = [np.maximum(q * (y - quant[:, j]), (q - 1) * (y - quant[:, j])) for j, q in enumerate(qs)]
        return float(np.mean(terms))
    if kind == "pinball":
        return float(np.mean(0.5 * np.abs(e)))
    return float(np.mean(np.abs(e)))


def greedy_weights(
    points: np.ndarray,
    y: np.ndarray,
    *,
    max_iterations: int = DEFAULT_ITERATIONS,
    metric: str = "mae",
    scale: np.ndarray | None = None,
    quantiles: np.ndarray | None = None,
    levels: Sequence[float] = (),
) -> np.ndarray:
    """Greedy ensemble selection with replacement (Caruana et al. 2004).

    ``points``: ``(members, rows)`` forecasts; ``y``: the actuals; ``quantiles``: optional
    ``(members, rows, len(levels))``. Returns the weights (summing to 1). Ties go to the earlier member.

    >>> y = np.array([0.0, 0.0, 0.0, 0.0])
    >>> greedy_weights(np.array([[1.0, 1, 1, 1], [-1.0, -1, -1, -1], [3.0, 3, 3, 3]]), y, max_iterations=10)
    array([0.5, 0.5, 0. ])
    """
    points = np.asarray(points, dtype=float)
    y = np.asarray(y, dtype=float)
    n_members = points.shape[0]
    if n_members == 0:
        raise ModelError("ensemble: no members to weigh")
    kind = loss_kind(metric)
    keep = np.isfinite(y) & np.isfinite(points).all(axis=0)
    if scale is not None:
        keep &= np.isfinite(scale) & (scale > 0)
    if kind == "relative_absolute":
        keep &= y != 0
    if not keep.any():
        return np.full(n_members, 1.0 / n_members)
    points, y = points[:, keep], y[keep]
    scale = scale[keep] if scale is not None else None
    quant = quantiles[:, keep, :] if quantiles is not None and kind == "pinball" else None
    counts = np.zeros(n_members, dtype=int)
    total = np.zeros_like(y)
    total_q = np.zeros(quant.shape[1:]) if quant is not None else None
    for iteration in range(1, int(max_iterations) + 1):
        best, best_loss = 0, np.inf
        for m in range(n_members):
            trial_q = (total_q + quant[m]) / iteration if quant is not None and total_q is not None else None
            loss = _combined_loss((total + points[m]) / iteration, trial_q, y, scale, kind, levels)
            if loss < best_loss - 1e-15:
                best, best_loss = m, loss
        counts[best] += 1
        total += points[best]
        if total_q is not None and quant is not None:
            total_q += quant[best]
    return counts / counts.sum()


# -------------------------------------------------------------------------- the backtest
@dataclass
class EnsembleBacktest:
    """The ensemble's fold forecasts (no look-ahead), its final weights and each fold's weights."""

    forecasts: pd.DataFrame
    weights: dict[str, float]
    fold_weights: dict[int, dict[str, float]] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)


def _aligned(
    members: dict[str, pd.DataFrame], quantiles: Sequence[float]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """The rows every member forecast (keys, y), their points ``(members, rows)`` and quantiles."""
    names = list(members)
    qcols = [quantile_column(q) for q in quantiles]
    have_q = bool(qcols) and all(all(c in f.columns for c in qcols) for f in members.values())
    base = members[names[0]][[*KEYS, "cutoff", "step", TARGET]]
    frames = [f.set_index(list(KEYS)) for f in members.values()]
    common = frames[0].index
    for frame in frames[1:]:
        common = common.intersection(frame.index)
    base = base.set_index(list(KEYS)).loc[common].reset_index()
    points = np.stack([f.loc[common, POINT].to_numpy(float) for f in frames])
    quant = np.stack([f.loc[common, qcols].to_numpy(float) for f in frames]) if have_q else None
    return base, points, quant


def ensemble_backtest(
    members: dict[str, pd.DataFrame],
    *,
    metric: str,
    quantiles: Sequence[float] = (),
    scales: pd.DataFrame | None = None,
    max_iterations: int = DEFAULT_ITERATIONS,
) -> EnsembleBacktest:
    """The ensemble's backtest from the members' fold forecasts (``unique_id, ds, fold, cutoff,
    step, y, yhat`` + quantile columns): fold ``k`` combined with weights fitted on folds ``< k``
    (fold 0: equal weights), and the final weights fitted on every fold. ``scales``
    (``fold, unique_id, scale``) scale the errors for ``mase``."""
    names = list(members)
    if not names:
        raise ModelError("ensemble: no members to combine")
    base, points, quant = _aligned(members, quantiles)
    if base.empty:
        raise ModelError("ensemble: the members' backtests share no forecast rows")
    scale = None
    if scales is not None and metric == "mase":
        table = scales.assign(**{ID: scales[ID].astype(str)}).drop_duplicates(["fold", ID], keep="last")
        keyed = base[["fold", ID]].assign(**{ID: base[ID].astype(str)}).merge(table, on=["fold", ID], how="left")
        scale = keyed["scale"].to_numpy(float)
    y = base[TARGET].to_numpy(float)
    folds = base["fold"].to_numpy()
    levels = [float(q) for q in quantiles] if quant is not None else []

    def fit(mask: np.ndarray) -> np.ndarray:
        return greedy_weights(
            points[:, mask],
            y[mask],
            max_iterations=max_iterations,
            metric=metric,
            scale=scale[mask] if scale is not None else None,
            quantiles=quant[:, mask, :] if quant is not None else None,
            levels=levels,
        )

    combined = np.empty(len(base))
    combined_q = np.empty((len(base), len(levels))) if quant is not None else None
    fold_weights: dict[int, dict[str, float]] = {}
    for fold in sorted(pd.unique(folds)):
        rows = folds == fold
        earlier = folds < fold
        w = fit(earlier) if earlier.any() else np.full(len(names), 1.0 / len(names))
        fold_weights[int(fold)] = {n: float(v) for n, v in zip(names, w, strict=True)}
        combined[rows] = w @ points[:, rows]
        if combined_q is not None and quant is not None:
            combined_q[rows] = np.einsum("m,mrk->rk", w, quant[:, rows, :])
    final = fit(np.ones(len(base), dtype=bool))
    out = base.copy()
    out[POINT] = combined
    if combined_q is not None:
        for j, q in enumerate(levels):
            out[quantile_column(q)] = combined_q[:, j]
    out = out.sort_values(["fold", ID, TIME], kind="stable", ignore_index=True)
    return EnsembleBacktest(out, {n: float(v) for n, v in zip(names, final, strict=True)}, fold_weights, names)




def combined_points(frames: dict[str, pd.DataFrame | None], weights: dict[str, float]) -> pd.DataFrame | None:
    """The weighted point forecast of the members' residual tables (their calibration windows:
    ``unique_id, ds, cutoff, step, y, yhat``) on the rows that every member of positive weight
    forecast; ``None`` when one of them has no such table."""
    used = [(name, float(w)) for name, w in weights.items() if float(w) > 0]
    if not used or any(frames.get(name) is None or not len(frames[name]) for name, _ in used):  # type: ignore[arg-type]
        return None
    keys = [ID, TIME, "cutoff", "step"]
    total = sum(w for _, w in used)
    out: pd.DataFrame | None = None
    for j, (name, _w) in enumerate(used):
        frame = frames[name]
        assert frame is not None
        part = frame[[*keys, TARGET, POINT]].rename(columns={POINT: f"_p{j}"})
        part = part.assign(**{ID: part[ID].astype(str)})
        out = part if out is None else out.merge(part.drop(columns=TARGET), on=keys, how="inner")
    assert out is not None
    out[POINT] = sum(w * out[f"_p{j}"].to_numpy(float) for j, (_, w) in enumerate(used)) / total
    return out[RESIDUAL_COLUMNS].sort_values(["cutoff", ID, TIME], kind="stable", ignore_index=True)


def recalibrate(
    built: EnsembleBacktest,
    calibrations: dict[str, pd.DataFrame | None],
    quantiles: Sequence[float],
    **conformal: Any,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The ensemble's fold forecasts with quantiles from its *own* residuals, without look-ahead, and
    the residuals its served model calibrates on.

    Fold ``k``'s quantiles come from the members' calibration windows combined with fold ``k``'s
    weights and the ensemble's earlier folds (:func:`tidecast.evaluation.calibration.calibrate_folds`);
    the served model's from the windows combined with the final weights, and every fold.
    ``conformal``: options of :class:`~tidecast.models.conformal.ConformalForecaster`."""
    qcols = [quantile_column(q) for q in quantiles]
    point = built.forecasts.drop(columns=[c for c in qcols if c in built.forecasts.columns])
    parts = []
    for fold in sorted(pd.unique(point["fold"])):
        weights = built.fold_weights.get(int(fold), built.weights)
        known = point[point["fold"] <= fold]
        calibrated, _ = calibrate_folds(known, combined_points(calibrations, weights), quantiles, **conformal)
        parts.append(calibrated[calibrated["fold"] == fold])
    forecasts = pd.concat(parts, ignore_index=True).sort_values(["fold", ID, TIME], kind="stable", ignore_index=True)
    return forecasts, combined_points(calibrations, built.weights)


def beats_best_single(
    ensemble: pd.DataFrame, single: pd.DataFrame, metric: str, scales: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Where the ensemble's backtest beats the best single candidate's and where it does not: per
    fold, per horizon step (share of steps) and per series (share of series), on ``metric``."""
    ens = evaluate(ensemble, scales, season_length=None)
    one = evaluate(single, scales, season_length=None)
    if metric not in ens.per_fold or metric not in one.per_fold:
        return {}

    ranking = Ranking(metric)  # which value is better (bias: the smaller absolute value)

    def lower(a: pd.Series, b: pd.Series) -> pd.Series:
        a, b = a.align(b, join="inner")
        return ranking.keys(a) < ranking.keys(b)

    per_fold = [
        {"fold": int(k), "ensemble": float(ens.per_fold.loc[k, metric]), "single": float(one.per_fold.loc[k, metric])}
        for k in ens.per_fold.index
        if k in one.per_fold.index
    ]
    steps = lower(ens.per_step[metric], one.per_step[metric])
    series = lower(ens.per_series[metric], one.per_series[metric])
    return {
        "per_fold": per_fold,
        "folds_won": sum(1 for f in per_fold if ranking.better(f["ensemble"], f["single"])),
        "steps_won": int(steps.sum()),
        "steps": len(steps),
        "series_won": int(series.sum()),
        "series": len(series),
    }
