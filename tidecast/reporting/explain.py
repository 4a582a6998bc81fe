"""Why the models forecast what they do: permutation importance, SHAP and fitted components.

Three views, each for the candidates it fits:

* **Permutation importance of feature groups** (any model): the candidate's model fitted on the
  training data of the last backtest fold (the one the backtest kept, see
  :func:`fold_model`; refitted only when the backtest did not keep it) forecasts that fold through
  the Forecaster protocol; then each group of inputs is scrambled and the fold forecast again,
  ``repeats`` times. The
  importance of a group is the relative increase of the fold's MAE. The groups:

  - ``lags``: the target's history (what lags, rolling statistics and statistical models read),
    shuffled in time within each series;
  - ``calendar``: every timestamp (history and future) shifted by a random number of steps that
    is not a whole number of days or weeks, so calendar parts, holidays and Fourier terms no
    longer match the values (forecasts are shifted back before scoring);
  - ``exogenous``: the exogenous columns, shuffled in time within each series.

  A model that ignores a group scores about 0 for it (a seasonal naive ignores the calendar).

* **SHAP** (tree models over lag features: ``lightgbm``, tree ``sklearn`` regressors): a
  ``shap.TreeExplainer`` on a sample of rows of the model's own feature matrix; the summary (every
  row's contribution of every feature) and the mean absolute contribution per feature.

* **Fitted components** (statistical models whose library exposes them: MSTL-based fits, which
  include deseasonalised ETS/ARIMA): trend, each seasonality and the remainder of the last fit.

Nothing here prints; failures of one view are recorded as notes and the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tidecast.frames import ID, TARGET, TIME
from tidecast.models.registry import kind_property
from tidecast.reporting.model_parts import (
    SHAP_ROWS,
    ShapResult,
    feature_groups,
    feature_matrix,
    fitted_components,
    is_tree_model,
    mlforecast_parts,
    shap_values,
    unwrap,
)
from tidecast.reporting.permutation import GROUPS, PERMUTATION_REPEATS, permutation_importance, permutations
from tidecast.training import factory_for, fit_context

#: Candidates (best first) whose feature groups are permuted.
PERMUTATION_TOP = 3
#: Features shown with their own dependence plot.
SHAP_DEPENDENCE = 3
#: Candidates whose backtest took longer than this per fold are not refitted to be explained.
MAX_FIT_SECONDS = 300.0

Progress = Callable[..., None]


def _noop(*_: Any, **__: Any) -> None:
    return None


@dataclass
class Explanation:
    """What was learnt about one candidate (any part may be None: not applicable or failed)."""

    candidate: str
    kind: str
    rank: int | None = None
    fitted_until: str | None = None
    permutation: pd.DataFrame | None = None
    """``group, importance, std, mae, base_mae, repeats`` (importance: relative MAE increase)."""
    shap: ShapResult | None = None
    components: pd.DataFrame | None = None
    """``unique_id, ds`` and one column per component (``data, trend, seasonal..., remainder``)."""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ----------------------------------------------------------------------------------- helpers
def _last_fold(backtest: Mapping[str, Any]) -> dict[str, Any] | None:
    folds = backtest.get("folds") or []
    return dict(folds[-1]) if folds else None


def _base_columns(frame: pd.DataFrame, spec: Any) -> list[str]:
    extra = [c.name for c in spec.data.exogenous_columns] + list(spec.data.static_columns)
    return [ID, TIME, TARGET, *[c for c in dict.fromkeys(extra) if c in frame.columns]]


def fold_frames(features: pd.DataFrame, fold: dict[str, Any], spec: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) of a backtest fold, restricted to the raw columns a model receives."""
    cols = _base_columns(features, spec)
    data = features[cols]
    cutoff = pd.Timestamp(fold["cutoff"])
    end = pd.Timestamp(fold["test_end"])
    keep = data[TIME] <= cutoff
    if fold.get("train_start") is not None:
        keep &= data[TIME] >= pd.Timestamp(fold["train_start"])
    train = data[keep]
    test = data[(data[TIME] > cutoff) & (data[TIME] <= end)]
    excluded = {str(s) for s in fold.get("excluded") or ()}
    if excluded:
        train = train[~train[ID].astype(str).isin(excluded)]
        test = test[~test[ID].astype(str).isin(excluded)]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def fit_for_fold(candidate: Any, params: dict[str, Any], spec: Any, train: pd.DataFrame) -> Any:
    """A fresh model of ``candidate`` (its backtested parameters) fitted on ``train``."""
    model = factory_for(candidate, params, spec)()
    model.fit(train, fit_context(spec, train))
    _single_thread_predictions(model)
    return model


def fold_model(models: dict[int, Any] | None, fold: dict[str, Any]) -> Any | None:
    """Of ``models`` (fold index -> the model the backtest fitted on that fold's training data and
    kept, see :attr:`tidecast.evaluation.backtest.BacktestResult.models`), the one of ``fold``, or
    None: explaining a candidate then costs no fit. Its estimator is set to predict on one thread
    (the copy on disk is untouched)."""
    model = (models or {}).get(int(fold.get("index", -2)))
    if model is not None:
        _single_thread_predictions(model)
    return model


def _single_thread_predictions(model: Any) -> None:
    """Recursive forecasts call the estimator once per step on a handful of rows: one thread is
    faster than waking a pool each time (this copy of the model is ours; the served one is untouched)."""
    parts = mlforecast_parts(model)
    if parts is None:
        return
    estimators = parts[0].models_.get("model")
    for estimator in estimators if isinstance(estimators, list) else [estimators]:
        try:
            if "n_jobs" in estimator.get_params():
                estimator.set_params(n_jobs=1)
        except Exception:  # an estimator without sklearn's parameter API
            continue


# --------------------------------------------------------------------------------- the step
@dataclass(frozen=True)
class _Failed:
    """No model of the last fold to explain a candidate with: why (the explanation's note)."""

    note: str


def _candidate_spec(spec: Any, name: str) -> Any:
    return next((c for c in spec.models if c.name == name), None)


def plan(
    backtest: Mapping[str, Any], select: Mapping[str, Any], spec: Any, *, top: int = PERMUTATION_TOP,
    kept: frozenset[str] | set[str] = frozenset(),
) -> list[tuple[str, set[str]]]:
    """Which candidates to explain and how: ``[(name, {"permutation", "shap", "components"}), ...]``.

    The best ``top`` candidates get permutation importance; every tree model gets SHAP and every
    statistical model its components, unless its backtest took over ``MAX_FIT_SECONDS`` per fold
    and is not in ``kept`` (the candidates whose model of the last fold the backtest kept: without
    it, explaining it means refitting it).
    """
    board: pd.DataFrame = backtest["leaderboard"]
    ok = board[board["status"] == "ok"] if "status" in board else board
    folds = max(1, len(backtest.get("folds") or []))
    out: list[tuple[str, set[str]]] = []
    for position, (_, row) in enumerate(ok.iterrows()):
        name = str(row["candidate"])
        kind = str(row.get("kind", ""))
        if kind == "ensemble":  # explained by its weights (no refit)
            out.append((name, {"weights"}))
            continue
        wants: set[str] = set()
        if position < top:
            wants.add("permutation")
        if kind_property(kind, "shap"):
            wants.add("shap")
        if kind_property(kind, "components"):
            wants.add("components")
        seconds = float(row.get("fit_seconds") or 0.0) / folds
        if wants and (seconds <= MAX_FIT_SECONDS or name in kept or name == select.get("winner")):
            out.append((name, wants))
    return out


def explain_candidates(
    backtest: Mapping[str, Any],
    select: Mapping[str, Any],
    features: pd.DataFrame,
    spec: Any,
    *,
    top: int = PERMUTATION_TOP,
    repeats: int = PERMUTATION_REPEATS,
    shap_rows: int = SHAP_ROWS,
    progress: Progress = _noop,
    fold_models: dict[str, dict[int, Any]] | None = None,
) -> dict[str, Any]:
    """Explain the candidates :func:`plan` picks; returns ``{"explanations": {name: Explanation},
    "fold": the last fold, "groups": GROUPS}``. One candidate's failure becomes a note.

    ``fold_models`` (candidate -> fold index -> model, what the backtest kept): a candidate whose
    model of the last fold is there is explained with it; the others are refitted on that fold."""
    fold = _last_fold(backtest)
    fold_models = fold_models or {}
    results = backtest.get("results") or {}
    board: pd.DataFrame = backtest["leaderboard"]
    ranks = dict(zip(board["candidate"].astype(str), board["rank"], strict=False)) if "rank" in board else {}
    last = int(fold["index"]) if fold is not None and "index" in fold else None
    kept = {name for name, models in fold_models.items() if last in (models or {})}
    todo = plan(backtest, select, spec, top=top, kept=kept)
    explanations: dict[str, Explanation] = {}
    if fold is None:
        return {"explanations": explanations, "fold": None, "groups": GROUPS}
    train, test = fold_frames(features, fold, spec)
    winner = select.get("winner")
    models: dict[str, Any] = {}  # name -> its model of the last fold, or the note why there is none
    for name, wants in todo:
        entry, candidate = results.get(name), _candidate_spec(spec, name)
        if "weights" in wants or entry is None or candidate is None:
            continue
        started = time.perf_counter()
        model = fold_model(fold_models.get(name), fold)  # the backtest's own fit of the last fold: no refit
        if model is None:
            try:
                model = fit_for_fold(candidate, entry.params, spec, train)
            except Exception as exc:
                model = _Failed(f"refitting on the last fold failed: {type(exc).__name__}: {exc}")
        models[name] = (model, time.perf_counter() - started)
    permuted_started = time.perf_counter()
    permuted = permutations(  # the candidates side by side where it pays (the same tables as in turn)
        {n: (str(getattr(results[n], "kind", "")), models[n][0]) for n, w in todo
         if "permutation" in w and n in models and not isinstance(models[n][0], _Failed)},
        train, test, spec, repeats=repeats,
    )
    permuted_seconds = (time.perf_counter() - permuted_started) / max(1, len(permuted))
    for index, (name, wants) in enumerate(todo):
        progress(index, len(todo), f"explaining {name}")
        started = time.perf_counter()
        entry = results.get(name)
        candidate = _candidate_spec(spec, name)
        rank = ranks.get(name)
        explanation = Explanation(
            candidate=name,
            kind=str(getattr(entry, "kind", "")),
            rank=int(rank) if rank is not None and rank == rank else None,
            fitted_until=str(fold["cutoff"]),
        )
        explanations[name] = explanation
        if "weights" in wants:
            explanation.notes.extend(ensemble_notes(name, backtest))
            continue
        if entry is None or candidate is None:
            explanation.notes.append("not in the spec's models any more")
            continue
        model, fit_seconds = models[name]
        if isinstance(model, _Failed):
            explanation.notes.append(model.note)
            continue
        if name in permuted:
            explanation.permutation, error = permuted[name]
            if error is not None:
                explanation.notes.append(f"permutation importance failed: {error}")
        if "shap" in wants and is_tree_model(model):
            try:
                if name == winner and is_tree_model(select.get("model")):
                    explained, data, label = select["model"], features, "the production refit (all data)"
                else:
                    explained, data, label = model, train, f"a fit on data up to {fold['cutoff']} (last fold)"
                explanation.shap = shap_values(explained, data, spec, rows=shap_rows, seed=spec.seed, label=label)
            except Exception as exc:
                explanation.notes.append(f"SHAP failed: {type(exc).__name__}: {exc}")
        elif "shap" in wants:
            explanation.notes.append("its estimator is not a tree model: no SHAP values")
        if "components" in wants:
            try:
                source = select.get("model") if name == winner else model
                explanation.components = fitted_components(source)
                if explanation.components is None:
                    explanation.notes.append("the library exposes no fitted components for this model")
            except Exception as exc:
                explanation.notes.append(f"reading the fitted components failed: {type(exc).__name__}: {exc}")
        # its fit (or reuse), its share of the permutation work (side by side: the wall time split
        # evenly), its SHAP and components
        explanation.seconds = fit_seconds + (permuted_seconds if name in permuted else 0.0) + time.perf_counter() - started
    progress(len(todo), len(todo), "explained")
    return {"explanations": explanations, "fold": fold, "groups": GROUPS}


def ensemble_notes(name: str, backtest: Mapping[str, Any]) -> list[str]:
    """An ensemble's explanation: its members' weights (final, and per fold) and where it beats the
    best single candidate on the backtest."""
    summary = (backtest.get("ensembles") or {}).get(name) or {}
    weights = {k: float(v) for k, v in (summary.get("weights") or {}).items()}
    shown = ", ".join(f"{k} {v:.0%}" for k, v in sorted(weights.items(), key=lambda kv: -kv[1]) if v > 0)
    notes = [f"weights (greedy selection over every backtest fold): {shown or 'none'}"]
    per_fold = summary.get("fold_weights") or {}
    for fold, fw in per_fold.items():
        used = ", ".join(f"{k} {float(v):.0%}" for k, v in fw.items() if float(v) > 0)
        how = "equal weights" if fold == "0" else f"fitted on folds 0-{int(fold) - 1}"
        notes.append(f"fold {fold} scored with {how}: {used}")
    versus = summary.get("versus_best_single") or {}
    if versus:
        notes.append(
            f"against the best single candidate {versus.get('single')}: better on {versus.get('folds_won')} of "
            f"{len(versus.get('per_fold') or [])} folds, {versus.get('steps_won')} of {versus.get('steps')} horizon "
            f"steps, {versus.get('series_won')} of {versus.get('series')} series"
        )
    return notes


__all__ = [
    "GROUPS",
    "Explanation",
    "ShapResult",
    "explain_candidates",
    "feature_groups",
    "feature_matrix",
    "fitted_components",
    "fold_frames",
    "fold_model",
    "is_tree_model",
    "permutation_importance",
    "plan",
    "shap_values",
    "unwrap",
]
