"""Plan a run: every step's cache key, its status (fresh, stale, missing) and why.

A step's key is a hash of its code version, the spec sections it declares, the keys of its upstream
steps, its external fingerprint and its ``deps`` (plugin modules, library versions, the store it
writes to: :mod:`tidecast.pipeline.deps`). Keys depend on the *keys* of inputs, not on their
content, so they are all computed before anything runs. A cached step with a ``check`` is asked
whether its output still holds outside the cache (its MLflow run still exists); when it does not,
it is stale, and so are the steps downstream of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tidecast.errors import PipelineError, TidecastError
from tidecast.pipeline.cache import ArtifactCache
from tidecast.pipeline.context import SpecLike, Status, StepPlan
from tidecast.pipeline.dag import Pipeline, StepDef, did_you_mean
from tidecast.pipeline.deps import describe_changes
from tidecast.pipeline.hashing import stable_hash
from tidecast.pipeline.lock import LOCK_FILENAME, LockFile, StepRecord


def _as_names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _resolve_force(pipeline: Pipeline, force: str | Iterable[str] | None) -> set[str]:
    names = _as_names(force)
    if "all" in names:
        return set(pipeline)
    for name in names:
        if name not in pipeline:
            raise PipelineError(f"cannot force '{name}': no such step{did_you_mean(name, pipeline)}")
    return set(names)


def _spec_hashes(d: StepDef, spec: Any) -> dict[str, str]:
    if not d.spec_sections:
        return {}
    try:
        sliced = spec.section(*d.spec_sections)
    except TidecastError:
        raise
    except Exception as exc:
        raise PipelineError(f"step '{d.name}': cannot read spec sections {list(d.spec_sections)}: {exc}") from exc
    hashes: dict[str, str] = {}
    for section in d.spec_sections:
        value = sliced.get(section) if isinstance(sliced, Mapping) else None
        if value is None and not hasattr(spec, section):
            raise PipelineError(f"step '{d.name}' declares spec section '{section}', which the spec does not have")
        hashes[section] = stable_hash(value)
    return hashes


def _call(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, a hook of a step: a :class:`TidecastError` passes through, any other error
    becomes a :class:`PipelineError` naming ``what`` failed."""
    try:
        return fn(*args)
    except TidecastError:
        raise
    except Exception as exc:
        raise PipelineError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def _fingerprint(d: StepDef, spec: Any) -> str | None:
    if d.fingerprint is None:
        return None
    value = _call(f"fingerprint of step '{d.name}'", d.fingerprint, spec)
    return value if isinstance(value, str) else stable_hash(value)


def _deps(d: StepDef, spec: Any) -> dict[str, str] | None:
    if d.deps is None:
        return None
    value = _call(f"dependencies of step '{d.name}'", d.deps, spec)
    return {str(k): str(v) for k, v in sorted(dict(value).items())}


def check(d: StepDef, spec: Any, output: Any) -> str | None:
    """``d.check(spec, output)``: why a cached output no longer holds (None: it does), or, with
    ``output`` None, raise if the step cannot run."""
    if d.check is None:
        return None
    reason = _call(f"checking step '{d.name}'", d.check, spec, output)
    return str(reason) if reason else None


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _what_changed(
    code: str, spec: Mapping[str, str], inputs: Mapping[str, str], fp: str | None, deps: Mapping[str, str] | None,
    rec: StepRecord,
) -> str:
    reasons: list[str] = []
    if rec.code != code:
        reasons.append("code of step changed")
    sections = [s for s in dict.fromkeys([*spec, *rec.spec]) if spec.get(s) != rec.spec.get(s)]
    if len(sections) == 1:
        reasons.append(f"spec section '{sections[0]}' changed")
    elif sections:
        reasons.append(f"spec sections {_quoted(sections)} changed")
    ups = [i for i in dict.fromkeys([*inputs, *rec.inputs]) if inputs.get(i) != rec.inputs.get(i)]
    if len(ups) == 1:
        reasons.append(f"upstream '{ups[0]}' changed")
    elif ups:
        reasons.append(f"upstream steps {_quoted(ups)} changed")
    if fp != rec.fingerprint:
        reasons.append("data fingerprint changed")
    if deps is not None:
        reasons.extend(describe_changes(rec.deps, deps, explained=bool(sections)))
    return "; ".join(reasons) or "inputs changed"


def default_cache(spec: Any, state_dir: str | os.PathLike[str] | None = None) -> ArtifactCache:
    return ArtifactCache(Path(state_dir if state_dir is not None else spec.state_dir) / "cache")


def default_lockfile(spec: Any) -> LockFile:
    return LockFile(Path(spec.root) / LOCK_FILENAME)


def plan(
    pipeline: Pipeline,
    spec: SpecLike,
    cache: ArtifactCache | None = None,
    lockfile: LockFile | None = None,
    until: str | None = None,
    force: str | Iterable[str] = (),
) -> list[StepPlan]:
    """The key, status and reason of every step up to ``until``, in run order. Runs nothing.

    A step whose key is in the cache is fresh, even if ``tidecast.lock`` records another key (a
    spec switched back to an earlier value reuses its cache), unless its ``check`` finds that the
    cached output no longer holds: it is then stale, and so is every step downstream of it. Forced
    steps are stale. Reasons compare with the lock file's record.
    """
    cache = cache if cache is not None else default_cache(spec)
    lockfile = lockfile if lockfile is not None else default_lockfile(spec)
    sub = pipeline.subgraph(until)
    forced = _resolve_force(pipeline, force)
    keys: dict[str, str] = {}
    invalid: set[str] = set()  # cached outputs that no longer hold: they and their dependents re-run
    plans: list[StepPlan] = []
    for name in sub.order():
        d = sub[name]
        spec_hashes = _spec_hashes(d, spec)
        fp = _fingerprint(d, spec)
        deps = _deps(d, spec)
        inputs = {i: keys[i] for i in dict.fromkeys(d.inputs)}
        payload: dict[str, Any] = {"step": name, "code": d.code, "spec": spec_hashes, "inputs": inputs, "fingerprint": fp}
        if deps is not None:  # steps without deps keep the keys they had before deps existed
            payload["deps"] = deps
        key = stable_hash(payload)
        keys[name] = key
        rec = lockfile.get(name)
        status: Status
        broken = next((i for i in inputs if i in invalid), None)
        if not d.cache:
            status, reason = "stale", "not cached (cache=False): runs every time"
        elif cache.has(name, key):
            why = None if name in forced or broken else check(d, spec, cache.load(name, key)) if d.check else None
            if name in forced:
                status, reason = "stale", "forced"
            elif broken is not None or why is not None:
                status, reason = "stale", why or f"upstream '{broken}' re-runs"
                invalid.add(name)
            elif rec is not None and rec.key != key:
                status, reason = "fresh", "reused from the cache of an earlier run"
            else:
                status, reason = "fresh", "up to date"
        elif rec is None:
            status, reason = "missing", "never run"
        elif rec.key == key:
            status, reason = "missing", "cached output missing"
        else:
            status, reason = "stale", _what_changed(d.code, spec_hashes, inputs, fp, deps, rec)
        plans.append(
            StepPlan(
                name=name, key=key, status=status, reason=reason, code=d.code, spec=spec_hashes,
                inputs=inputs, fingerprint=fp, cache=d.cache, deps=deps,
            )
        )
    return plans


def status(
    pipeline: Pipeline,
    spec: SpecLike,
    *,
    until: str | None = None,
    force: str | Iterable[str] = (),
    state_dir: str | os.PathLike[str] | None = None,
) -> list[StepPlan]:
    """:func:`plan` with the project's own cache and lock file: what ``run`` would do now."""
    return plan(pipeline, spec, default_cache(spec, state_dir), default_lockfile(spec), until=until, force=force)

