"""The model registry: register each trained model, gate its promotion, move the ``champion`` alias.

Aliases of a registered model (``spec.model_name``):

* ``champion``: the version that serves (``models:/NAME@champion``);
* ``challenger``: the latest version that did not pass the gate (its tag ``tidecast.gate_reason``
  says why);
* ``previous``: the champion before the current one (the target of :func:`rollback`).

The gate (``registry.gate`` in the spec) checks, on the held-out last ``horizon`` steps of the
data: (a) the winner's metric is at most ``max_metric``; (b) it improves on the baseline by at
least ``min_improvement`` (relative); (c) with ``must_beat_champion``, it is at least as good as
the current champion scored on the same stretch through its own pyfunc; (d) with
``significance``, a Diebold-Mariano test (:mod:`tidecast.evaluation.significance`) finds the
winner's held-out losses lower than the baseline's and the champion's at that level. The held-out
stretch is ``backtest.holdout`` (default: one horizon), forecast one horizon at a time.
"""

from __future__ import annotations

import functools
import getpass
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from tidecast.errors import TrackingError
from tidecast.faults import fault_point
from tidecast.frames import ID, TARGET, TIME
from tidecast.tracking.store import active_uris, connect, experiment_id, retry_locked

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tidecast.spec import Spec

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
PREVIOUS_TAG = "tidecast.previous_champion"
READY_TIMEOUT_S = 300.0
_REL_TOL = 1e-12


@dataclass
class GateCheck:
    name: str
    passed: bool
    detail: str
    value: float | None = None
    threshold: float | None = None


@dataclass
class RegistryDecision:
    """What happened to a newly registered version."""

    model_name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    checks: list[GateCheck] = field(default_factory=list)
    previous_champion: str | None = None
    model_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RegistryAction:
    """A promotion or rollback done by hand, recorded as an MLflow run of kind ``registry-action``."""

    action: str
    model_name: str
    alias: str
    from_version: str | None
    to_version: str
    reason: str | None
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _on_project_store(fn: Any) -> Any:
    """Run ``fn(spec, ...)`` with MLflow's global URIs on the project's store: the registry resolves
    ``models:/`` sources through them, and must never fall back to an ``mlflow.db`` in the cwd."""

    @functools.wraps(fn)
    def wrapper(spec: Spec, *args: Any, **kwargs: Any) -> Any:
        with active_uris(spec):
            return fn(spec, *args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------- versions
def _model_id(model_uri: str) -> str | None:
    if model_uri.startswith("models:/m-"):
        return model_uri.removeprefix("models:/").split("/", 1)[0]
    return None


def verify_artifacts(client: MlflowClient, model_uri: str) -> list[str]:
    """The logged model's files; raises TrackingError unless its MLmodel and tidecast artifacts are all there."""
    import mlflow

    from tidecast.tracking.pyfunc import CARD_FILE, MODEL_FILE

    model_id = _model_id(model_uri)
    try:
        if model_id is not None:
            top = [f.path for f in client.list_logged_model_artifacts(model_id)]
            nested = [f.path for f in client.list_logged_model_artifacts(model_id, "artifacts")]
        else:
            top = [f.path for f in mlflow.artifacts.list_artifacts(artifact_uri=model_uri)]
            nested = [
                f.path for f in mlflow.artifacts.list_artifacts(artifact_uri=model_uri.rstrip("/") + "/artifacts")
            ]
    except Exception as exc:
        raise TrackingError(f"model {model_uri}: cannot list its artifacts ({exc}); not registering it") from None
    names = {p.rsplit("/", 1)[-1] for p in [*top, *nested]}
    missing = [f for f in ("MLmodel", MODEL_FILE, CARD_FILE) if f not in names]
    if missing:
        raise TrackingError(f"model {model_uri}: artifacts {', '.join(missing)} are missing; not registering it")
    return sorted([*top, *nested])


def wait_ready(client: MlflowClient, name: str, version: str, timeout: float = READY_TIMEOUT_S) -> Any:
    """Poll a model version until its status is READY (raise TrackingError if it fails or times out)."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        mv = retry_locked(lambda: client.get_model_version(name, version))
        status = str(mv.status)
        if status.endswith("READY"):
            return mv
        if "FAILED" in status:
            raise TrackingError(f"model {name} version {version}: registration failed ({mv.status_message or status})")
        if time.monotonic() > deadline:
            raise TrackingError(f"model {name} version {version}: not READY after {timeout:.0f} s (status {status})")
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def register_version(
    client: MlflowClient, name: str, model_uri: str, *, run_id: str | None, tags: dict[str, Any]
) -> Any:
    """Register ``model_uri`` (after checking its artifacts exist) under ``name``; returns the READY version."""
    from mlflow.exceptions import MlflowException

    verify_artifacts(client, model_uri)
    try:
        retry_locked(lambda: client.create_registered_model(name))
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "already exists" not in str(exc):
            raise
    model_id = _model_id(model_uri)
    clean_tags = {k: str(v) for k, v in tags.items() if v is not None}
    mv = retry_locked(
        lambda: client.create_model_version(name, model_uri, run_id=run_id, tags=clean_tags, model_id=model_id)
    )
    fault_point("registry.version-created")
    return wait_ready(client, name, mv.version)


def alias_version(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return retry_locked(lambda: client.get_model_version_by_alias(name, alias))
    except MlflowException:
        return None


@_on_project_store
def champion_version(spec: Spec, *, client: MlflowClient | None = None, name: str | None = None) -> Any | None:
    """The current champion version of the project's registered model, or None."""
    client = client or connect(spec)
    return alias_version(client, name or spec.model_name, CHAMPION)


# -------------------------------------------------------------------------------------- gate
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


@_on_project_store
def forecast_model_uri(spec: Spec, model_uri: str, features: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A logged pyfunc's forecasts of the held-out stretch (``backtest.holdout``, one horizon at a
    time, each from the preceding ``input_window`` history and the future exogenous values, as a
    caller would send them), joined with the actuals (``unique_id, ds, fold, cutoff, step, y, yhat``
    + quantiles), and the MASE scales (``fold, unique_id, scale``) of each window."""
    import mlflow

    from tidecast.evaluation.metrics import series_scales
    from tidecast.training import season_length

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


@_on_project_store
def score_model_uri(spec: Spec, model_uri: str, features: pd.DataFrame, metric: str) -> float:
    """``metric`` of a logged pyfunc on the held-out stretch (see :func:`forecast_model_uri`)."""
    forecast, scales = forecast_model_uri(spec, model_uri, features)
    return score_joined(forecast, scales, spec, metric)


def score_joined(forecast: pd.DataFrame, scales: pd.DataFrame, spec: Spec, metric: str) -> float:
    """``metric`` of held-out forecasts joined with their actuals, as the select step scores them."""
    from tidecast.evaluation.metrics import evaluate
    from tidecast.training import season_length

    quantiles = [q for q in spec.forecast.quantiles if f"q{q:g}" in forecast.columns]
    evaluation = evaluate(forecast, scales, season_length=season_length(spec), quantiles=quantiles)
    if metric not in evaluation.aggregate:
        raise TrackingError(f"metric {metric!r} is not among the evaluated metrics {sorted(evaluation.aggregate)}")
    return float(evaluation.aggregate[metric])


def score_forecast(forecast: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, spec: Spec, metric: str) -> float:
    """``metric`` of a forecast of one held-out window, computed as the select step's held-out scores are."""
    from tidecast.evaluation.metrics import series_scales
    from tidecast.training import season_length

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
    from tidecast.evaluation.significance import compare, loss_kind

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


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


@_on_project_store
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
    value = _number((select.get("holdout_metrics") or {}).get(metric))
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
    base = _number((select.get("baseline_holdout_metrics") or {}).get(metric))
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


# --------------------------------------------------------------------------------- aliases
def _move_champion(client: MlflowClient, name: str, version: str, reason: str | None) -> str | None:
    """Point ``champion`` at ``version``; the old champion becomes ``previous``. Returns the old one."""
    wait_ready(client, name, version)
    current = alias_version(client, name, CHAMPION)
    old = str(current.version) if current is not None else None
    if old == str(version):
        return None
    if old is not None:
        retry_locked(lambda: client.set_registered_model_alias(name, PREVIOUS, old))
        retry_locked(lambda: client.set_model_version_tag(name, str(version), PREVIOUS_TAG, old))
        fault_point("registry.previous-set")
    retry_locked(lambda: client.set_registered_model_alias(name, CHAMPION, str(version)))
    fault_point("registry.champion-set")
    retry_locked(lambda: client.set_model_version_tag(name, str(version), "tidecast.promoted_at", _now()))
    if reason:
        retry_locked(lambda: client.set_model_version_tag(name, str(version), "tidecast.promotion_reason", reason))
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        retry_locked(lambda: client.delete_registered_model_alias(name, CHALLENGER))
    return old


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@_on_project_store
def register_and_gate(
    spec: Spec,
    *,
    model_uri: str,
    run_id: str | None,
    select: dict[str, Any],
    features: pd.DataFrame,
    data_fingerprint: str | None = None,
    client: MlflowClient | None = None,
) -> RegistryDecision:
    """Register the logged model as a new version of ``spec.model_name`` and apply the gate:
    passing moves ``champion`` to it, failing gives it ``challenger`` and the reason as a tag."""
    client = client or connect(spec)
    name = spec.model_name
    metric = select.get("metric") or spec.selection.metric
    tags: dict[str, Any] = {
        "tidecast.spec_fingerprint": spec.fingerprint(),
        "tidecast.data_fingerprint": data_fingerprint,
        "tidecast.run_id": run_id,
        "tidecast.winner": select.get("winner"),
        "tidecast.metric": metric,
        "tidecast.trained_until": select.get("trained_until"),
    }
    for key, value in (select.get("holdout_metrics") or {}).items():
        if _number(value) is not None:
            tags[f"tidecast.holdout_{key}"] = f"{float(value):.10g}"
    for key, value in (select.get("backtest_metrics") or {}).items():
        if _number(value) is not None:
            tags[f"tidecast.backtest_{key}"] = f"{float(value):.10g}"
    mv = register_version(client, name, model_uri, run_id=run_id, tags=tags)
    version = str(mv.version)
    checks = evaluate_gate(spec, select, features, client=client, name=name, exclude_version=version)
    fault_point("registry.gate-evaluated")
    failed = [c for c in checks if not c.passed]
    if failed:  # the significance tests' figures are always in the reason
        reason = "; ".join(c.detail for c in checks if not c.passed or c.name.startswith("significance"))
        retry_locked(lambda: client.set_registered_model_alias(name, CHALLENGER, version))
        retry_locked(lambda: client.set_model_version_tag(name, version, "tidecast.gate", "failed"))
        retry_locked(lambda: client.set_model_version_tag(name, version, "tidecast.gate_reason", reason[:5000]))
        return RegistryDecision(name, version, CHALLENGER, False, reason, checks, None, model_uri)
    reason = "; ".join(c.detail for c in checks) or "no gate checks apply (first version)"
    retry_locked(lambda: client.set_model_version_tag(name, version, "tidecast.gate", "passed"))
    retry_locked(lambda: client.set_model_version_tag(name, version, "tidecast.gate_reason", reason[:5000]))
    previous = _move_champion(client, name, version, f"gate passed: {reason}"[:5000])
    return RegistryDecision(name, version, CHAMPION, True, reason, checks, previous, model_uri)


# ------------------------------------------------------------------------------- by hand
def _record_action(client: MlflowClient, spec: Spec, action: RegistryAction) -> str:
    from tidecast.tracking.runs import process_tags

    exp_id = experiment_id(spec, client)
    tags = {
        "tidecast.kind": "registry-action",
        "tidecast.action": action.action,
        "tidecast.registry.model": action.model_name,
        "tidecast.registry.alias": action.alias,
        "tidecast.from_version": action.from_version,
        "tidecast.to_version": action.to_version,
        "tidecast.reason": action.reason,
        "tidecast.user": _user(),
        **process_tags(),
    }
    label = f"{action.action} {action.model_name} v{action.from_version or '-'} -> v{action.to_version}"
    run = retry_locked(
        lambda: client.create_run(exp_id, run_name=label, tags={k: str(v) for k, v in tags.items() if v is not None})
    )
    retry_locked(lambda: client.set_terminated(run.info.run_id, status="FINISHED"))
    return run.info.run_id


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


@_on_project_store
def promote(
    spec: Spec,
    version: str | int,
    alias: str = CHAMPION,
    reason: str | None = None,
    *,
    name: str | None = None,
    client: MlflowClient | None = None,
) -> RegistryAction:
    """Point ``alias`` of the registered model at ``version`` by hand (bypassing the gate), recorded as a
    ``registry-action`` run. Promoting to ``champion`` makes the old champion ``previous``.

    >>> promote(spec, 3, reason="validated by hand")       # doctest: +SKIP
    """
    from mlflow.exceptions import MlflowException

    client = client or connect(spec)
    name = name or spec.model_name
    version = str(version)
    try:
        wait_ready(client, name, version)
    except MlflowException:
        raise TrackingError(f"registered model {name!r} has no version {version}") from None
    if alias == CHAMPION:
        current = alias_version(client, name, CHAMPION)
        old = str(current.version) if current is not None else None
        _move_champion(client, name, version, reason or "promoted by hand")
    else:
        current = alias_version(client, name, alias)
        old = str(current.version) if current is not None else None
        retry_locked(lambda: client.set_registered_model_alias(name, alias, version))
    action = RegistryAction("promote", name, alias, old, version, reason)
    action.run_id = _record_action(client, spec, action)
    return action


@_on_project_store
def rollback(
    spec: Spec, reason: str | None = None, *, name: str | None = None, client: MlflowClient | None = None
) -> RegistryAction:
    """Move ``champion`` back to the previous champion (the ``previous`` alias); the rolled-back version
    is tagged ``tidecast.rolled_back``. Raises TrackingError when there is nothing to roll back to.

    >>> rollback(spec, reason="v4 drifts on weekends")      # doctest: +SKIP
    """
    client = client or connect(spec)
    name = name or spec.model_name
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise TrackingError(f"registered model {name!r} has no champion to roll back")
    target = alias_version(client, name, PREVIOUS)
    target_version = str(target.version) if target is not None else (current.tags or {}).get(PREVIOUS_TAG)
    if not target_version or target_version == str(current.version):
        raise TrackingError(
            f"registered model {name!r}: champion v{current.version} has no previous champion to roll back to"
        )
    wait_ready(client, name, target_version)
    retry_locked(lambda: client.set_registered_model_alias(name, CHAMPION, target_version))
    retry_locked(lambda: client.set_model_version_tag(name, str(current.version), "tidecast.rolled_back", _now()))
    # the next rollback goes one step further back, if the chain records one
    before = retry_locked(lambda: client.get_model_version(name, target_version))
    further = (before.tags or {}).get(PREVIOUS_TAG)
    if further and further != str(current.version):
        retry_locked(lambda: client.set_registered_model_alias(name, PREVIOUS, further))
    else:
        retry_locked(lambda: client.delete_registered_model_alias(name, PREVIOUS))
    action = RegistryAction("rollback", name, CHAMPION, str(current.version), target_version, reason)
    action.run_id = _record_action(client, spec, action)
    return action


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "GateCheck",
    "RegistryAction",
    "RegistryDecision",
    "champion_version",
    "evaluate_gate",
    "forecast_model_uri",
    "holdout_windows",
    "promote",
    "register_and_gate",
    "register_version",
    "rollback",
    "score_model_uri",
    "significance_check",
    "verify_artifacts",
    "wait_ready",
]
