"""Steps and the graph they form.

A step is a plain function; its *parameter names* declare its inputs (as in Hamilton): a
parameter named ``clean`` receives the output of the step ``clean``. Two names are reserved:
``spec`` (the whole spec object) and ``ctx`` (a :class:`~tidecast.pipeline.context.StepContext`).
The graph is built from those declarations, never from a hand-kept list of edges::

    @step(spec=("data",), fingerprint=lambda spec: file_sha256(spec.data.source))
    def ingest(spec): ...

    @step(spec=("clean",))
    def clean(ingest, spec): ...

    @step()
    def features(clean, ctx): ...

    pipeline = Pipeline([ingest, clean, features])
    pipeline.order()              # ['ingest', 'clean', 'features']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from tidecast.errors import PipelineError, did_you_mean
from tidecast.pipeline.hashing import code_hash

#: Parameter names that do not name an upstream step.
RESERVED = ("spec", "ctx")
#: How a step's output is stored: by its type ("auto"), or always as one format.
KINDS = ("auto", "parquet", "json", "joblib")
_ATTRIBUTE = "__tidecast_step__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class StepDef:
    """A step as the engine sees it (made by :func:`step`; read it with ``Pipeline[name]``)."""

    name: str
    fn: Callable[..., Any]
    params: tuple[str, ...]
    """Every parameter name, in order (upstream steps and the reserved ``spec``/``ctx``)."""
    spec_sections: tuple[str, ...]
    """Top-level spec sections whose content enters the cache key."""
    fingerprint: Callable[[Any], str] | None
    kind: str
    version: str
    cache: bool
    code: str
    """Hash of the function's source and ``version``."""
    deps: Callable[[Any], Mapping[str, str]] | None = None
    """``deps(spec) -> {name: version}``: code and libraries outside the step's source that it
    runs (``plugin:<file>`` → content hash, ``library:<dist>`` → version, ``store:<what>`` → hash);
    they enter the cache key and ``tidecast.lock`` so that ``status`` can name what changed."""
    check: Callable[[Any, Any], str | None] | None = None
    """``check(spec, output)``: with a fresh step's cached output, the reason it no longer holds
    (its run is gone from a store...) or None; with ``None`` before the step runs, raise a
    :class:`~tidecast.errors.TidecastError` if it cannot run (its store does not answer)."""
    exclusive: bool | str = False
    """Which steps it never runs beside (the runner runs independent steps at the same time, in
    threads): ``True``, none (it runs alone); a name, the other steps that declare the same name
    (they share a process-wide state that is not thread-safe, e.g. ``"mlflow"``); ``False``, any."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The upstream steps this step reads, in parameter order."""
        return tuple(p for p in self.params if p not in RESERVED)

    def can_run_beside(self, other: StepDef) -> bool:
        """Whether the runner may run this step and ``other`` at the same time (see ``exclusive``)."""
        if self.exclusive is True or other.exclusive is True:
            return False
        return not (isinstance(self.exclusive, str) and self.exclusive == other.exclusive)

    @property
    def where(self) -> str:
        """``module.qualname`` of the function, for error messages."""
        return f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', self.name)}"


def _make_stepdef(
    fn: Callable[..., Any],
    *,
    spec: Sequence[str] = (),
    fingerprint: Callable[[Any], str] | None = None,
    kind: str = "auto",
    version: str = "1",
    cache: bool = True,
    deps: Callable[[Any], Mapping[str, str]] | None = None,
    check: Callable[[Any, Any], str | None] | None = None,
    exclusive: bool | str = False,
) -> StepDef:
    name = getattr(fn, "__name__", None)
    if not callable(fn) or not isinstance(name, str) or not name.isidentifier():
        raise PipelineError(f"{fn!r} cannot be a step: a step is a named function (def name(...): ...)")
    if kind not in KINDS:
        raise PipelineError(f"step '{name}': kind={kind!r} is not one of {', '.join(map(repr, KINDS))}")
    if isinstance(spec, str):
        spec = (spec,)
    sections = tuple(spec)
    bad = [s for s in sections if not isinstance(s, str) or not s]
    if bad:
        raise PipelineError(f"step '{name}': spec=... must list spec section names, got {bad!r}")
    if fingerprint is not None and not callable(fingerprint):
        raise PipelineError(f"step '{name}': fingerprint must be a function spec -> str")
    for option, value in (("deps", deps), ("check", check)):
        if value is not None and not callable(value):
            raise PipelineError(f"step '{name}': {option} must be a function")
    if not isinstance(exclusive, bool | str) or exclusive == "":
        raise PipelineError(
            f"step '{name}': exclusive must be True (it runs alone), a name shared with the steps it must not "
            f"run beside, or False; got {exclusive!r}"
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"step '{name}': cannot read its parameters: {exc}") from None
    params: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise PipelineError(
                f"step '{name}': parameter '{param.name}' is variadic (*args/**kwargs); every input of a step "
                "must be a named parameter"
            )
        params.append(param.name)
    if "spec" in params and not sections and cache:
        raise PipelineError(
            f"step '{name}' takes 'spec' but declares no spec sections; list the sections it reads in "
            f"@step(spec=(...)) so its cache key follows them (or use @step(cache=False))"
        )
    return StepDef(
        name=name,
        fn=fn,
        params=tuple(params),
        spec_sections=tuple(dict.fromkeys(sections)),
        fingerprint=fingerprint,
        kind=kind,
        version=str(version),
        cache=bool(cache),
        code=code_hash(fn, str(version)),
        deps=deps,
        check=check,
        exclusive=exclusive,
    )


@overload
def step(spec: F, /) -> F: ...


@overload
def step(
    spec: Sequence[str] = (),
    *,
    fingerprint: Callable[[Any], str] | None = None,
    kind: str = "auto",
    version: str = "1",
    cache: bool = True,
    deps: Callable[[Any], Mapping[str, str]] | None = None,
    check: Callable[[Any, Any], str | None] | None = None,
    exclusive: bool | str = False,
) -> Callable[[F], F]: ...


def step(
    spec: Sequence[str] | Callable[..., Any] = (),
    *,
    fingerprint: Callable[[Any], str] | None = None,
    kind: str = "auto",
    version: str = "1",
    cache: bool = True,
    deps: Callable[[Any], Mapping[str, str]] | None = None,
    check: Callable[[Any, Any], str | None] | None = None,
    exclusive: bool | str = False,
) -> Any:
    """Mark a function as a pipeline step (``@step`` or ``@step(...)``); the function is returned
    unchanged and can still be called directly.

    - ``spec``: the top-level spec sections the step depends on; only those enter its cache key.
      A step with a ``spec`` parameter must list them (unless ``cache=False``).
    - ``fingerprint(spec) -> str``: the state of an external input (a data file's hash...); it
      enters the cache key.
    - ``kind``: how the output is stored: ``"auto"`` (DataFrame → Parquet, JSON-exact dict/list →
      JSON, else joblib), or always ``"parquet"``, ``"json"`` or ``"joblib"``.
    - ``version``: bump it to invalidate the cache when something the source does not show changes
      (a helper function, a library).
    - ``cache=False``: the step runs on every run and its output is not stored.
    - ``deps(spec) -> {name: version}``: code and libraries the source does not show (plugin
      modules, library versions, the store it writes to); they enter the cache key and the lock.
    - ``check(spec, output)``: verifies a fresh step's cached output still holds outside the cache
      (returns why not, or None); called with ``None`` before the step runs, it raises if it cannot.
    - ``exclusive``: the runner runs steps whose inputs are ready at the same time, in threads of
      this process (see :func:`tidecast.pipeline.runner.run`); ``exclusive=True`` makes the step run
      alone, ``exclusive="name"`` keeps it apart from the other steps that declare ``"name"`` (they
      use a process-wide state that is not thread-safe: MLflow's active store, the working
      directory...). It does not enter the cache key.
    """
    if callable(spec) and not isinstance(spec, str | Sequence):
        fn = spec
        setattr(fn, _ATTRIBUTE, _make_stepdef(fn))
        return fn

    def decorate(fn: F) -> F:
        setattr(
            fn,
            _ATTRIBUTE,
            _make_stepdef(  # type: ignore[arg-type]
                fn, spec=spec, fingerprint=fingerprint, kind=kind, version=version, cache=cache, deps=deps,
                check=check, exclusive=exclusive,
            ),
        )
        return fn

    return decorate


def as_step(obj: Callable[..., Any] | StepDef) -> StepDef:
    """The :class:`StepDef` of a decorated function, a plain function (default options) or a StepDef."""
    if isinstance(obj, StepDef):
        return obj
    found = getattr(obj, _ATTRIBUTE, None)
    if isinstance(found, StepDef) and found.fn is obj:
        return found
    return _make_stepdef(obj)


class Pipeline:
    """The DAG of a set of steps, wired by their parameter names.

    Raises :class:`~tidecast.errors.PipelineError` for two steps with one name, a parameter that
    names no step, a step named like a reserved parameter, and cycles.
    """

    def __init__(self, steps: Iterable[Callable[..., Any] | StepDef]) -> None:
        defs: dict[str, StepDef] = {}
        for obj in steps:
            d = as_step(obj)
            if d.name in RESERVED:
                raise PipelineError(f"step '{d.name}' ({d.where}): '{d.name}' is a reserved parameter name")
            if d.name in defs:
                if defs[d.name].fn is d.fn:
                    continue
                raise PipelineError(
                    f"two steps are named '{d.name}' ({defs[d.name].where} and {d.where}); step names must be unique"
                )
            defs[d.name] = d
        for d in defs.values():
            for param in d.inputs:
                if param not in defs:
                    hint = did_you_mean(param, [*defs, *RESERVED])
                    raise PipelineError(
                        f"step '{d.name}': parameter '{param}' names no step of the pipeline "
                        f"and is not 'spec' or 'ctx'{hint}"
                    )
        self._defs = defs
        self._order = self._toposort()
        self._steps = {name: defs[name] for name in self._order}
        self._dependents: dict[str, list[str]] = {name: [] for name in self._order}
        for name in self._order:
            for parent in dict.fromkeys(defs[name].inputs):
                self._dependents[parent].append(name)

    def _toposort(self) -> list[str]:
        """Kahn's algorithm; ties keep the order the steps were given in."""
        position = {name: i for i, name in enumerate(self._defs)}
        missing = {name: len(set(d.inputs)) for name, d in self._defs.items()}
        children: dict[str, list[str]] = {name: [] for name in self._defs}
        for name, d in self._defs.items():
            for parent in set(d.inputs):
                children[parent].append(name)
        ready = sorted((n for n, k in missing.items() if k == 0), key=position.__getitem__)
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for child in children[name]:
                missing[child] -= 1
                if missing[child] == 0:
                    ready.append(child)
            ready.sort(key=position.__getitem__)
        if len(order) < len(self._defs):
            raise PipelineError(f"the steps form a cycle: {' -> '.join(self._find_cycle(set(self._defs) - set(order)))}")
        return order

    def _find_cycle(self, nodes: set[str]) -> list[str]:
        # every node left by Kahn's algorithm has a parent that is also left: walk parents until one repeats
        start = min(nodes, key=list(self._defs).index)
        path = [start]
        seen = {start: 0}
        current = start
        while True:
            parent = next(p for p in self._defs[current].inputs if p in nodes)
            if parent in seen:
                cycle = path[seen[parent] :]
                # report in data-flow order: parent -> child
                return [*reversed(cycle), cycle[-1]]
            seen[parent] = len(path)
            path.append(parent)
            current = parent

    # -- reading the graph ------------------------------------------------------------------
    def __getitem__(self, name: str) -> StepDef:
        try:
            return self._steps[name]
        except KeyError:
            raise PipelineError(f"no step named '{name}'{did_you_mean(name, self._steps)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"Pipeline({' -> '.join(self._order) if len(self._order) < 8 else f'{len(self._order)} steps'})"

    @property
    def steps(self) -> Mapping[str, StepDef]:
        """Every step by name, in topological order."""
        return dict(self._steps)

    def order(self) -> list[str]:
        """Step names in an order where every step comes after its inputs (ties: given order)."""
        return list(self._order)

    def inputs(self, name: str) -> list[str]:
        """The direct upstream steps of ``name``."""
        return list(dict.fromkeys(self[name].inputs))

    def dependents(self, name: str) -> list[str]:
        """The direct downstream steps of ``name``."""
        self[name]
        return list(self._dependents[name])

    def upstream(self, name: str) -> list[str]:
        """Every step ``name`` depends on, directly or not, in topological order."""
        found: set[str] = set()
        stack = list(self[name].inputs)
        while stack:
            current = stack.pop()
            if current not in found:
                found.add(current)
                stack.extend(self._steps[current].inputs)
        return [n for n in self._order if n in found]

    def downstream(self, name: str) -> list[str]:
        """Every step that depends on ``name``, directly or not, in topological order."""
        self[name]
        found: set[str] = set()
        stack = list(self._dependents[name])
        while stack:
            current = stack.pop()
            if current not in found:
                found.add(current)
                stack.extend(self._dependents[current])
        return [n for n in self._order if n in found]

    def subgraph(self, until: str | None = None) -> Pipeline:
        """The pipeline cut after ``until``: that step and everything it depends on (all if None)."""
        if until is None:
            return self
        keep = {*self.upstream(until), until}
        return Pipeline([self._steps[n] for n in self._order if n in keep])

    def edges(self) -> list[tuple[str, str]]:
        """``(upstream, downstream)`` pairs, in topological order of the downstream step."""
        return [(parent, name) for name in self._order for parent in dict.fromkeys(self._steps[name].inputs)]

    def roots(self) -> list[str]:
        """Steps without inputs."""
        return [n for n in self._order if not self._steps[n].inputs]

    def leaves(self) -> list[str]:
        """Steps nothing depends on."""
        return [n for n in self._order if not self._dependents[n]]
