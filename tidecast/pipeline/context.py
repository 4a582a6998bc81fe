"""What the engine hands to steps and front ends: plans, the step context, callbacks, run results.

Nothing here runs a step: :mod:`tidecast.pipeline.planning` computes :class:`StepPlan` objects and
:mod:`tidecast.pipeline.runner` executes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

Status = Literal["fresh", "stale", "missing"]


@runtime_checkable
class SpecLike(Protocol):
    """What the engine needs of a spec (``tidecast.spec.Spec`` is one).

    ``section(*names)`` returns ``{name: JSON-able value}``; a section a step declares must also be
    an attribute of the spec (so that a typo in ``@step(spec=...)`` is caught).
    """

    @property
    def root(self) -> Path: ...

    @property
    def state_dir(self) -> Path: ...

    def section(self, *names: str) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class StepPlan:
    """What a run would do with one step, and why."""

    name: str
    key: str
    status: Status
    """fresh: its output is in the cache; stale: it will run although (or because) it ran
    before; missing: it never produced an output for this key."""
    reason: str
    """A human sentence: "never run", "spec section 'clean' changed", "forced"..."""
    code: str = ""
    spec: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    cache: bool = True
    deps: Mapping[str, str] | None = None

    @property
    def will_run(self) -> bool:
        return self.status != "fresh"


@dataclass
class RunCallbacks:
    """Optional hooks a front end (the CLI's progress bars) sets; the library never prints.

    - ``on_plan(plans)``: once, before any step runs.
    - ``on_step_start(name, index, total)``: for every step, ``index`` counting from 1.
    - ``on_step_progress(name, done, total, description)``: what a step reports via ``ctx.progress``.
    - ``on_step_end(name, status, seconds)``: status "ran" or "cached" (seconds 0.0).

    Any object with some of these methods works too (missing ones are skipped). Steps that run side
    by side (see :func:`tidecast.pipeline.runner.run`) each start, report and end in turn: two steps
    can be between their ``on_step_start`` and ``on_step_end`` at once, and their progress calls
    come from their own threads, but the runner never makes two calls at the same time.
    """

    on_plan: Callable[[list[StepPlan]], None] | None = None
    on_step_start: Callable[[str, int, int], None] | None = None
    on_step_progress: Callable[[str, float, float | None, str], None] | None = None
    on_step_end: Callable[[str, str, float], None] | None = None


@dataclass
class StepContext:
    """Given to a step that takes a ``ctx`` parameter."""

    name: str
    key: str
    artifact_dir: Path
    """A temporary folder inside the cache: files written here become part of the step's cache
    entry (``<cache>/<step>/<key>/artifacts/``) if the step succeeds. For ``cache=False`` steps
    it is removed after the step."""
    state_dir: Path
    spec: Any
    log: logging.Logger
    parts_dir: Path | None = None
    """Where a step writes the partitions of the partitioned output it returns (a ``PartitionedFrame``:
    see :mod:`tidecast.pipeline.cache`), inside the pending cache entry like ``artifact_dir``."""
    _on_progress: Callable[[str, float, float | None, str], None] | None = field(default=None, repr=False)

    def progress(self, done: float, total: float | None = None, description: str = "") -> None:
        """Report progress (``done`` out of ``total``) to the front end, if it listens."""
        if self._on_progress is not None:
            self._on_progress(self.name, done, total, description)


class Outputs(Mapping[str, Any]):
    """Step outputs by name, read from the cache on first access (then kept)."""

    def __init__(self, names: Iterable[str], values: dict[str, Any], loader: Callable[[str], Any]) -> None:
        self._names = list(names)
        self._values = values
        self._loader = loader

    def __contains__(self, name: object) -> bool:  # without loading anything
        return name in self._names

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._values:
            self._values[name] = self._loader(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Outputs({self._names})"


@dataclass
class RunResult:
    executed: list[str]
    """Steps whose function ran, in order."""
    skipped: list[str]
    """Fresh steps taken from the cache (not necessarily loaded)."""
    outputs: Mapping[str, Any]
    """Every step's output by name, loaded lazily from the cache."""
    durations: dict[str, float]
    """Seconds per executed step, in the plan's order (steps that ran side by side each count
    their own seconds: see :attr:`side_by_side`)."""
    plans: list[StepPlan] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    """Peak resident memory (MiB) per executed step: this process plus its local workers
    (:class:`~tidecast.pipeline.memory.PeakRSS`; for steps that ran side by side, the process's
    peak while the step ran, which includes what the other step held)."""
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    """When each executed step's function started and ended, in seconds since the run began."""

    @property
    def keys(self) -> dict[str, str]:
        return {p.name: p.key for p in self.plans}

    @property
    def side_by_side(self) -> list[list[str]]:
        """The groups of executed steps whose runs overlapped in time (each group in the plan's
        order; a step that ran alone is in none), e.g. ``[["track", "explain"]]``."""
        order = {p.name: i for i, p in enumerate(self.plans)}
        groups: list[list[str]] = []
        end = -1.0
        for name, (start, stop) in sorted(self.spans.items(), key=lambda item: item[1]):
            if groups and start < end:
                groups[-1].append(name)
            else:
                groups.append([name])
            end = max(end, stop) if len(groups[-1]) > 1 else stop
        return [sorted(g, key=lambda n: order.get(n, len(order))) for g in groups if len(g) > 1]

    @property
    def busy_s(self) -> float:
        """Seconds during which at least one step's function ran (overlapping steps count once)."""
        total, end = 0.0, float("-inf")
        for start, stop in sorted(self.spans.values()):
            if stop > end:
                total += stop - max(start, end)
                end = stop
        return total


class Hooks:
    """The callbacks of a :class:`RunCallbacks` or of any object with some of its methods, each
    missing one None; the others are called one at a time, whichever thread calls them."""

    def __init__(self, callbacks: Any) -> None:
        self._lock = threading.RLock()
        self.on_plan = self._serialized(getattr(callbacks, "on_plan", None))
        self.on_step_start = self._serialized(getattr(callbacks, "on_step_start", None))
        self.on_step_progress = self._serialized(getattr(callbacks, "on_step_progress", None))
        self.on_step_end = self._serialized(getattr(callbacks, "on_step_end", None))

    def _serialized(self, fn: Callable[..., Any] | None) -> Callable[..., Any] | None:
        if fn is None:
            return None
        lock = self._lock

        def call(*args: Any) -> Any:
            with lock:
                return fn(*args)

        return call
