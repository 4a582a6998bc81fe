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

import getpass
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from tidecast.errors import TrackingError
from tidecast.faults import fault_point
from tidecast.tracking.gate import GateCheck, evaluate_gate, number
from tidecast.tracking.records import process_tags
from tidecast.tracking.store import connect, experiment_id, retry_locked
from tidecast.tracking.versions import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    PREVIOUS_TAG,
    alias_version,
    champion_version,
    on_project_store,
    register_version,
    verify_artifacts,
    wait_ready,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tidecast.spec import Spec



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


@on_project_store
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
        if number(value) is not None:
            tags[f"tidecast.holdout_{key}"] = f"{float(value):.10g}"
    for key, value in (select.get("backtest_metrics") or {}).items():
        if number(value) is not None:
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


@on_project_store
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


@on_project_store
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
    "alias_version",
    "champion_version",
    "evaluate_gate",
    "promote",
    "register_and_gate",
    "register_version",
    "rollback",
    "verify_artifacts",
    "wait_ready",
]
