"""The promotion gate: the checks a newly trained model must pass to become ``champion``
(``registry.gate`` in the spec; see :mod:`tidecast.tracking.registry` for what each check means),
scored on the held-out stretch through the logged pyfunc, as a caller would use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from tidecast.errors import TrackingError
from tidecast.evaluation.metrics import evaluate, series_scales
from tidecast.evaluation.significance import compare, loss_kind
from tidecast.frames import ID, TARGET, TIME
from tidecast.tracking.versions import CHAMPION, alias_version, on_project_store
from tidecast.training import season_length

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tidecast.spec import Spec

_REL_TOL = 1e-12


@dataclass
class GateCheck:
    name: str
    passed: bool
    detail: str
    value: float | None = None
    threshold: float | None = None



def holdout_stretch(
    features: pd.DataFrame, horizon: int, window: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, history, test): everything before the last ``horizon`` rows per series, the last
    ``window`` rows of that, and the last ``horizon`` rows themselves."""
    data = features.sort_values([ID, TIME], kind="stable")
    position = data.groupby(ID, observed=True).cumcount(ascending=False)
    test = data[position < horizon]
    train = data[position >= horizon]
    history = train.groupby(ID, observed=True).tail(window)
    return train, history, test


def holdout_windows(
    features: pd.DataFrame, horizon: int, window: int, length: int
) -> list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """The held-out stretch (the last ``length`` rows per series) as windows of one ``horizon``,
    earliest first, laid back from the end as the select step lays them: ``(train, history, ahead,
    test)`` of each: ``ahead`` the window's ``horizon`` rows, ``test`` those inside the stretch (the
    first window may start before it when ``length`` is not a whole number of horizons)."""
    data = features.sort_values([ID, TIME], kind="stable")
    position = data.groupby(ID, observed=True).cumcount(ascending=False).to_numpy()
    count = -(-length // horizon)
    out = []
    for i in reversed(range(count)):
        train = data[position >= (i + 1) * horizon]
        ahead = data[(position >= i * horizon) & (position < (i + 1) * horizon)]
        test = data[(position >= i * horizon) & (position < min((i + 1) * horizon, length))]
        out.append((train, train.groupby(ID, observed=True).tail(window), ahead, test))
    return out


@on_project_store
def forecast_model_uri(spec: Spec, model_uri: str, features: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A logged pyfunc's forecasts of the held-out stretch (``backtest.holdout``, one horizon at a
    time, each from the preceding ``input_window`` history and the future exogenous values, as a
    caller would send them), joined with the actuals (``unique_id, ds, fold, cutoff, step, y, yhat``
    + quantiles), and the MASE scales (``fold, unique_id, scale``) of each window."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    card = getattr(model.unwrap_python_model(), "card", None) or {}
    window = int(card.get("input_window") or spec.forecast_steps()[0])
    _, horizon = spec.forecast_steps()
    quantiles = list(spec.forecast.quantiles)
    exog = [c for c in [*card.get("exog_past", []), *card.get("exog_future", [])]]
    missing = [c for c in exog if c not in features.columns]
    if missing:
        raise TrackingError(f"the champion needs column(s) {', '.join(missing)} that the current data lacks")
    columns = [ID, TIME, TARGET, *exog]
    joined, scales = [], []
    m = season_length(spec)
    for fold, (train, history, ahead, test) in enumerate(
        holdout_windows(features, horizon, window, spec.holdout_steps())
    ):
        frame = history[columns]
        if card.get("exog_future"):
            frame = pd.concat([frame, ahead[columns].assign(**{TARGET: float("nan")})], ignore_index=True)
            frame = frame.sort_values([ID, TIME], kind="stable").reset_index(drop=True)
        forecast = model.predict(frame, params={"horizon": horizon, "quantiles": quantiles})
        part = _join_actuals(forecast, train, test)
        part["fold"] = fold
        joined.append(part)
        table = series_scales(train.assign(**{ID: train[ID].astype(str)}), m)
        scales.append(table.assign(fold=fold))
    return pd.concat(joined, ignore_index=True), pd.concat(scales, ignore_index=True)


def _join_actuals(forecast: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    forecast = forecast.copy()
    forecast[ID] = forecast[ID].astype(str)
    actual = test[[ID, TIME, TARGET]].assign(**{ID: test[ID].astype(str)})
    joined = forecast.merge(actual, on=[ID, TIME], how="inner")
    if joined.empty:
        raise TrackingError("the forecast of the held-out stretch shares no timestamp with the data")
    joined["cutoff"] = train[TIME].max()
    joined["step"] = joined.groupby(ID, observed=True).cumcount() + 1
    return joined


@on_project_store
def score_model_uri(spec: Spec, model_uri: str, features: pd.DataFrame, metric: str) -> float:
    """``metric`` of a logged pyfunc on the held-out stretch (see :func:`forecast_model_uri`)."""
    forecast, scales = forecast_model_uri(spec, model_uri, features)
    return score_joined(forecast, scales, spec, metric)


def score_joined(forecast: pd.DataFrame, scales: pd.DataFrame, spec: Spec, metric: str) -> float:
    """``metric`` of held-out forecasts joined with their actuals, as the select step scores them."""
    quantiles = [q for q in spec.forecast.quantiles if f"q{q:g}" in forecast.columns]
    evaluation = evaluate(forecast, scales, season_length=season_length(spec), quantiles=quantiles)
    if metric not in evaluation.aggregate:
        raise TrackingError(f"metric {metric!r} is not among the evaluated metrics {sorted(evaluation.aggregate)}")
    return float(evaluation.aggregate[metric])


def score_forecast(forecast: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, spec: Spec, metric: str) -> float:
    """``metric`` of a forecast of one held-out window, computed as the select step's held-out scores are."""
    joined = _join_actuals(forecast, train, test)
    joined["fold"] = 0
    scales = series_scales(train.assign(**{ID: train[ID].astype(str)}), season_length(spec)).assign(fold=0)
    return score_joined(joined, scales, spec, metric)


def significance_check(
    name: str,
    role: str,
    winner: pd.DataFrame,
    other: pd.DataFrame,
    spec: Spec,
    metric: str,
    scales: pd.DataFrame | None,
) -> GateCheck:
    """A Diebold-Mariano test (HLN correction, one-sided) that the winner's held-out losses are lower
    than ``other``'s (``role``: "baseline seasonal_naive", "champion v3"), at ``registry.gate.significance``."""
    alpha = float(spec.registry.gate.significance or 0.05)
    _, horizon = spec.forecast_steps()
    per_series = None
    if scales is not None and len(scales):  # one scale per series: that of the earliest held-out window
        ordered = scales.sort_values("fold", kind="stable") if "fold" in scales else scales
        per_series = ordered.assign(**{ID: ordered[ID].astype(str)}).drop_duplicates(ID, keep="first")
    try:
        result = compare(winner, other, metric, horizon, per_series)
    except Exception as exc:
        return GateCheck(
            name, False, f"Diebold-Mariano test against {role} could not run ({exc}); promote by hand if intended"
        )
    ok = result.p_value < alpha
    loss = loss_kind(metric).replace("_", " ")
    detail = (
        f"Diebold-Mariano vs {role} on {result.n} held-out steps ({loss} loss, h={result.h}): "
        f"statistic {result.statistic:+.3f}, p-value {result.p_value:.4g} {'<' if ok else '>='} significance {alpha:g}"
    )
    if result.n <= 2 * result.h - 1:
        detail += " (a held-out stretch under two horizons gives the test no power: lengthen backtest.holdout)"
    return GateCheck(name, ok, detail, result.p_value, alpha)


def number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


@on_project_store
def evaluate_gate(
    spec: Spec,
    select: dict[str, Any],
    features: pd.DataFrame,
    *,
    client: MlflowClient,
    name: str | None = None,
    exclude_version: str | None = None,
) -> list[GateCheck]:
    """The gate's checks for the selected model (see the module docstring); every check is reported."""
    gate = spec.registry.gate
    metric = select.get("metric") or spec.selection.metric
    value = number((select.get("holdout_metrics") or {}).get(metric))
    checks: list[GateCheck] = []
    if gate.max_metric is not None:
        ok = value is not None and value <= gate.max_metric
        checks.append(
            GateCheck(
                "max_metric",
                ok,
                f"held-out {metric} {_fmt(value)} {'<=' if ok else '>'} max_metric {gate.max_metric:g}",
                value,
                gate.max_metric,
            )
        )
    base = number((select.get("baseline_holdout_metrics") or {}).get(metric))
    baseline = select.get("baseline")
    if base is not None and value is not None and base != 0:
        improvement = (base - value) / abs(base)
        ok = improvement >= gate.min_improvement - 1e-12
        checks.append(
            GateCheck(
                "min_improvement",
                ok,
                f"improvement over baseline {baseline} {improvement:+.2%} "
                f"{'>=' if ok else '<'} min_improvement {gate.min_improvement:+.2%}",
                improvement,
                gate.min_improvement,
            )
        )
    elif gate.min_improvement > 0:
        checks.append(
            GateCheck(
                "min_improvement",
                False,
                f"no baseline held-out {metric} to measure the improvement against",
                None,
                gate.min_improvement,
            )
        )
    held = select.get("holdout_forecasts") or {}
    scales = select.get("holdout_scales")
    if gate.significance is not None:
        base_fc = held.get("baseline")
        if baseline and baseline == select.get("winner"):
            pass  # the winner is the baseline: nothing to test against it
        elif held.get("winner") is None or base_fc is None:
            checks.append(
                GateCheck(
                    "significance_baseline",
                    False,
                    f"no held-out forecasts of the winner and a baseline to test (baseline: {baseline or 'none'})",
                )
            )
        else:
            checks.append(
                significance_check(
                    "significance_baseline", f"baseline {baseline}", held["winner"], base_fc, spec, metric, scales
                )
            )
    if gate.must_beat_champion:
        name = name or spec.model_name
        champion = alias_version(client, name, CHAMPION)
        if champion is not None and str(champion.version) != str(exclude_version):
            try:
                champ_fc, champ_scales = forecast_model_uri(spec, f"models:/{name}@{CHAMPION}", features)
                champ = score_joined(champ_fc, champ_scales, spec, metric)
            except Exception as exc:
                checks.append(
                    GateCheck(
                        "must_beat_champion",
                        False,
                        f"champion v{champion.version} could not be scored on the held-out stretch "
                        f"({type(exc).__name__}: {exc}); promote by hand if intended",
                    )
                )
            else:
                ok = value is not None and value <= champ + _REL_TOL * max(1.0, abs(champ))
                checks.append(
                    GateCheck(
                        "must_beat_champion",
                        ok,
                        f"held-out {metric} {_fmt(value)} {'<=' if ok else '>'} champion v{champion.version}'s {_fmt(champ)}",
                        value,
                        champ,
                    )
                )
                if gate.significance is not None:
                    role = f"champion v{champion.version}"
                    if held.get("winner") is None:
                        checks.append(
                            GateCheck(
                                "significance_champion",
                                False,
                                f"no held-out forecasts of the winner to test against {role}",
                            )
                        )
                    else:
                        checks.append(
                            significance_check(
                                "significance_champion", role, held["winner"], champ_fc, spec, metric, scales
                            )
                        )
    return checks


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


__all__ = [
    "GateCheck",
    "evaluate_gate",
    "forecast_model_uri",
    "holdout_stretch",
    "holdout_windows",
    "number",
    "score_forecast",
    "score_joined",
    "score_model_uri",
    "significance_check",
]
