"""Hyper-parameter expansion: grids of listed values and Optuna (TPE) searches over ranges.

How a candidate's ``params`` are read:

* a plain value is fixed: ``n_estimators: 200``;
* a list is a grid of choices: ``n_estimators: [100, 200, 400]``;
* a range is searched: ``learning_rate: {low: 0.01, high: 0.3, log: true}``; both bounds given as
  ints search integers (``num_leaves: {low: 15, high: 255}``);
* parameters whose *value* is a list (:data:`LIST_VALUED`: ``season_length`` of MSTL, ``lags``,
  ``hidden``...) are fixed when given a list — ``season_length: [288, 2016]`` is one value; a
  grid over them is written as a list of lists: ``season_length: [[288], [288, 2016]]``.

Without a ``search`` section, lists are tried exhaustively (at most :data:`MAX_GRID`
combinations) and ranges are an error; with ``search: {trials, timeout, seed}`` Optuna's TPE
sampler (seeded, so a search is reproducible) draws ``trials`` points, lists becoming
categorical choices. The library never prints: Optuna's logging is silenced during a search.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tidecast.errors import BacktestError, ModelError

__all__ = [
    "LIST_VALUED",
    "MAX_GRID",
    "SearchResult",
    "TrialRecord",
    "grid",
    "is_searched",
    "optuna_search",
    "searched_names",
]

LIST_VALUED: frozenset[str] = frozenset({"season_length", "lags", "hidden", "quantiles", "lag_transforms", "date_features"})
"""Parameters whose value is itself a list: a list is a fixed value, a list of lists a grid."""

MAX_GRID = 50
"""The most combinations an exhaustive grid may have; beyond it, ask for ``search: {trials: N}``."""

_PRIMITIVE = (type(None), bool, int, float, str)


class TrialRecord(NamedTuple):
    """One evaluated point: its full parameters, the objective (None when it failed), seconds, error."""

    params: dict[str, Any]
    value: float | None
    seconds: float
    error: str | None


@dataclass
class SearchResult:
    """The best parameters found (the full dict passed to the objective) and every evaluated trial.

    Points proposed again by the sampler are not re-evaluated, so ``trials`` may be shorter than
    the number of trials asked for.
    """

    best_params: dict[str, Any]
    best_value: float
    trials: list[TrialRecord] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(1 for t in self.trials if t.error is not None)


# ------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class _Range:
    low: float | int
    high: float | int
    log: bool
    integer: bool


def _as_range(value: Any) -> _Range | None:
    """A :class:`tidecast.spec.RangeParam` or a mapping ``{low, high[, log]}``, else None."""
    if hasattr(value, "low") and hasattr(value, "high") and hasattr(value, "log"):
        low, high, log = value.low, value.high, bool(value.log)
    elif isinstance(value, Mapping) and {"low", "high"} <= set(value) <= {"low", "high", "log"}:
        low, high, log = value["low"], value["high"], bool(value.get("log", False))
    else:
        return None
    integer = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
    return _Range(low, high, log, integer)


def _choices(name: str, value: Any, list_valued: Collection[str]) -> list[Any] | None:
    """The grid choices of a parameter, or None when its value is fixed."""
    if not isinstance(value, list):
        return None
    if name in list_valued:
        if value and all(isinstance(v, list | tuple) for v in value):
            return [list(v) for v in value]
        return None
    return list(value)


def searched_names(params: Mapping[str, Any], list_valued: Collection[str] = LIST_VALUED) -> list[str]:
    """The names of the parameters that are grids or ranges."""
    return [n for n, v in params.items() if _as_range(v) is not None or _choices(n, v, list_valued) is not None]


def is_searched(params: Mapping[str, Any], list_valued: Collection[str] = LIST_VALUED) -> bool:
    """Whether any parameter is a list of choices or a range."""
    return bool(searched_names(params, list_valued))


def grid(
    params: Mapping[str, Any], list_valued: Collection[str] = LIST_VALUED, *, limit: int | None = MAX_GRID
) -> list[dict[str, Any]]:
    """Every combination of the listed choices (cartesian product, in the order the params are
    written); fixed values are kept as they are. ``[dict(params)]`` when nothing is searched.

    Raises :class:`BacktestError` for a range (it needs a search), an empty list of choices, or
    more than ``limit`` combinations.
    """
    names = list(params)
    axes: list[list[Any]] = []
    for name in names:
        value = params[name]
        if _as_range(value) is not None:
            raise BacktestError(
                f"params.{name}: a range {{low, high}} needs a search section (add search: {{trials: N}})"
            )
        choices = _choices(name, value, list_valued)
        if choices is not None and not choices:
            raise BacktestError(f"params.{name}: an empty list of choices")
        axes.append(choices if choices is not None else [value])
    size = math.prod(len(a) for a in axes)
    if limit is not None and size > limit:
        raise BacktestError(
            f"params: the grid has {size} combinations (more than {limit}); "
            f"sample it instead with search: {{trials: N}}"
        )
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


# ------------------------------------------------------------------------------------- search
def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=repr)


class _Evaluator:
    """Calls the objective once per distinct point, recording every call."""

    def __init__(self, objective: Callable[[dict[str, Any]], float], on_trial: Callable[[TrialRecord], None] | None):
        self.objective = objective
        self.on_trial = on_trial
        self.trials: list[TrialRecord] = []
        self.seen: dict[str, float | None] = {}

    def __call__(self, params: dict[str, Any]) -> float | None:
        key = _key(params)
        if key in self.seen:
            return self.seen[key]
        started = time.perf_counter()
        value: float | None
        error = None
        try:
            value = float(self.objective(params))
            if not math.isfinite(value):
                error, value = f"the objective is not a finite number ({value})", None
        except Exception as exc:
            from tidecast.errors import TidecastError

            value, error = None, str(exc) if isinstance(exc, TidecastError) else f"{type(exc).__name__}: {exc}"
        record = TrialRecord(dict(params), value, time.perf_counter() - started, error)
        self.trials.append(record)
        self.seen[key] = value
        if self.on_trial is not None:
            self.on_trial(record)
        return value

    def result(self) -> SearchResult:
        done = [t for t in self.trials if t.value is not None]
        if not done:
            first = next((t.error for t in self.trials if t.error), "no trial ran")
            raise ModelError(f"search: all {len(self.trials)} trial(s) failed; the first: {first}")
        best = min(done, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
        return SearchResult(best.params, float(best.value), list(self.trials))  # type: ignore[arg-type]


def optuna_search(
    objective: Callable[[dict[str, Any]], float],
    params: Mapping[str, Any],
    search: Any = None,
    *,
    on_trial: Callable[[TrialRecord], None] | None = None,
    list_valued: Collection[str] = LIST_VALUED,
    max_grid: int = MAX_GRID,
) -> SearchResult:
    """Minimise ``objective(params)`` over the searched parameters of ``params``.

    ``search`` is a :class:`tidecast.spec.SearchSpec` (``trials``, ``timeout`` seconds for the
    whole search, ``seed``). Without it: nothing searched → one evaluation; lists only → the full
    grid (:class:`BacktestError` beyond ``max_grid`` combinations); ranges → :class:`BacktestError`.
    A trial whose objective raises or is not finite is recorded as failed and the search goes on;
    :class:`ModelError` when every trial failed. ``on_trial(TrialRecord)`` is called after each
    evaluation.
    """
    evaluate = _Evaluator(objective, on_trial)
    names = searched_names(params, list_valued)
    if not names:
        evaluate(dict(params))
        return evaluate.result()
    if search is None:
        for combo in grid(params, list_valued, limit=max_grid):
            evaluate(combo)
        return evaluate.result()

    import optuna

    space: dict[str, tuple[str, Any]] = {}
    finite_size: int | None = 1
    for name in names:
        value = params[name]
        rng = _as_range(value)
        if rng is not None:
            space[name] = ("range", rng)
            finite_size = None
            continue
        choices = _choices(name, value, list_valued) or []
        if not choices:
            raise BacktestError(f"params.{name}: an empty list of choices")
        space[name] = ("choices", choices)
        if finite_size is not None:
            finite_size *= len(choices)

    def suggest(trial: Any) -> dict[str, Any]:
        out = dict(params)
        for name, (what, spec) in space.items():
            if what == "range":
                if spec.integer:
                    out[name] = trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
                else:
                    out[name] = trial.suggest_float(name, float(spec.low), float(spec.high), log=spec.log)
            elif all(isinstance(c, _PRIMITIVE) for c in spec):
                out[name] = trial.suggest_categorical(name, spec)
            else:  # lists, dicts...: Optuna stores only primitives, so choose an index
                out[name] = spec[trial.suggest_categorical(name, list(range(len(spec))))]
        return out

    def run_trial(trial: Any) -> float:
        value = evaluate(suggest(trial))
        if finite_size is not None and len(evaluate.seen) >= finite_size:
            trial.study.stop()  # every point of a finite space has been tried
        return float("nan") if value is None else value

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.TPESampler(seed=int(search.seed))
            study = optuna.create_study(direction="minimize", sampler=sampler)
            study.optimize(
                run_trial, n_trials=int(search.trials), timeout=search.timeout, gc_after_trial=False,
                show_progress_bar=False,
            )
    finally:
        optuna.logging.set_verbosity(verbosity)
    return evaluate.result()
