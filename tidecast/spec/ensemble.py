"""The spec of ensemble candidates: ``kind: ensemble`` entries of ``models:`` and the one
``selection.ensemble: auto`` adds; checked when the spec is loaded (:func:`check_ensembles`).
The ensemble itself (weights, backtest, model) lives in :mod:`tidecast.models.ensemble` and
:mod:`tidecast.evaluation.ensembles`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KIND = "ensemble"
AUTO_NAME = "ensemble"
DEFAULT_ITERATIONS = 50
PARAMS = ("members", "max_iterations")


@dataclass(frozen=True)
class EnsembleSpec:
    """One ensemble candidate: its name, its members (``None``: every other candidate) and bag size."""

    name: str
    members: tuple[str, ...] | None
    max_iterations: int = DEFAULT_ITERATIONS
    explicit: bool = True


def _params_of(name: str, params: dict[str, Any], where: str) -> tuple[tuple[str, ...] | None, int]:
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValueError(f"{where}.params: unknown parameter(s) {', '.join(unknown)} (accepted: {', '.join(PARAMS)})")
    members = params.get("members")
    if members is not None:
        if isinstance(members, str):
            members = [members]
        if not isinstance(members, list | tuple) or not members or not all(isinstance(m, str) for m in members):
            raise ValueError(f"{where}.params.members: a non-empty list of candidate names, got {members!r}")
        members = tuple(dict.fromkeys(members))
    iterations = params.get("max_iterations", DEFAULT_ITERATIONS)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= 10_000:
        raise ValueError(f"{where}.params.max_iterations: an integer from 1 to 10000, got {iterations!r}")
    return members, int(iterations)


def ensemble_specs(spec: Any) -> list[EnsembleSpec]:
    """The spec's ensemble candidates (``kind: ensemble``), plus the one ``selection.ensemble: auto`` adds."""
    out = []
    for i, candidate in enumerate(spec.models):
        if candidate.kind == KIND:
            members, iterations = _params_of(candidate.name, dict(candidate.params), f"models[{i}] ({candidate.name})")
            out.append(EnsembleSpec(candidate.name, members, iterations))
    if getattr(spec.selection, "ensemble", None) == "auto" and not out:
        names = {c.name for c in spec.models}
        name = AUTO_NAME if AUTO_NAME not in names else "weighted_ensemble"
        out.append(EnsembleSpec(name, None, DEFAULT_ITERATIONS, explicit=False))
    return out


def check_ensembles(spec: Any) -> None:
    """Spec-time checks (ValueError naming the field): parameters, members that exist and are not
    ensembles, and a layout an ensemble can serve (global selection, no hierarchy)."""
    ensembles = ensemble_specs(spec)
    if not ensembles:
        return
    singles = [c.name for c in spec.models if c.kind != KIND]
    kinds = {c.name: c.kind for c in spec.models}
    where = {c.name: f"models[{i}] ({c.name})" for i, c in enumerate(spec.models)}
    for ens in ensembles:
        field = f"{where.get(ens.name, 'selection.ensemble')}.params.members" if ens.explicit else "selection.ensemble"
        for member in ens.members or ():
            if member == ens.name or kinds.get(member) == KIND:
                raise ValueError(f"{field}: '{member}' is an ensemble; members must be single candidates")
            if member not in kinds:
                raise ValueError(f"{field}: no candidate named '{member}' (candidates: {', '.join(singles) or 'none'})")
        if not singles:
            raise ValueError(f"{field}: an ensemble needs at least one other candidate")
        if spec.selection.scope != "global":
            raise ValueError(f"{field}: an ensemble needs selection.scope 'global'")
        if spec.hierarchy is not None:
            raise ValueError(f"{field}: an ensemble cannot be combined with hierarchy: (yet)")
