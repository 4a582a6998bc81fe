"""What a step depends on outside its own source: plugin modules, library versions, a store.

A step's ``deps(spec)`` (see :func:`tidecast.pipeline.dag.step`) returns ``{name: value}`` with
names of three kinds, which :func:`describe_changes` turns into the words ``tidecast status`` shows:

- ``plugin:<file>`` → the file's content hash: ``plugin my_models.py changed``;
- ``library:<distribution>`` → its installed version: ``lightgbm 4.5.0 → 4.6.0``;
- ``store:<what>`` → a hash of where it writes: ``tracking store changed``.

Versions are read from the installed distributions' metadata: nothing here imports a library.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

NOT_INSTALLED = "not installed"
#: Import names whose distribution is named otherwise (the rest are looked up in the metadata).
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "skimage": "scikit-image", "yaml": "PyYAML", "PIL": "pillow"}


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    from importlib.metadata import packages_distributions

    return packages_distributions()


def distribution_of(module: str) -> str:
    """The distribution that installs the top-level module ``module`` (its own name if unknown)."""
    top = module.split(".", 1)[0]
    if top in _DISTRIBUTIONS:
        return _DISTRIBUTIONS[top]
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(top)
        return top
    except PackageNotFoundError:
        found = _packages_distributions().get(top)
        return found[0] if found else top


def library_versions(distributions: Iterable[str]) -> dict[str, str]:
    """``library:<name>`` → installed version (or ``not installed``), from metadata only."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in sorted(set(distributions)):
        try:
            out[f"library:{name}"] = version(name)
        except PackageNotFoundError:
            out[f"library:{name}"] = NOT_INSTALLED
    return out


def describe_changes(old: Mapping[str, str] | None, new: Mapping[str, str], *, explained: bool = False) -> list[str]:
    """The differences between two ``deps`` mappings, in words (empty when equal).

    ``old`` None: the record predates dependency tracking. ``explained``: another reason (a spec
    section) already accounts for the change, so deps only added or dropped are not listed.
    """
    if old is None:
        return ["the key now covers plugin code, library versions and the tracking store"] if new else []
    reasons: list[str] = []
    for name in dict.fromkeys([*new, *old]):
        before, after = old.get(name), new.get(name)
        if before == after or (explained and (before is None or after is None)):
            continue
        kind, _, what = name.partition(":")
        if kind == "plugin":
            reasons.append(
                f"plugin {what} " + ("changed" if before and after else "added" if after else "no longer used")
            )
        elif kind == "library":
            if before is not None and after is not None:
                reasons.append(f"{what} {before} → {after}")
            else:
                reasons.append(f"{what} {after} now used" if after else f"{what} no longer used")
        elif kind == "store":
            reasons.append(f"{what} changed")
        else:
            reasons.append(f"{name} changed")
    return reasons
