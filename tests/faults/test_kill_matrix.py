"""SIGKILL ``tidecast run`` at named fault points across every step (and at random moments), then check
that the project tells the truth and recovers.

One project lives through the whole matrix: each scenario edits it (new data, a new seed or a new
registry setting, so that the steps from ingest, backtest or track on have to run with keys never
seen before), starts ``tidecast run`` armed to SIGKILL itself at one point
(``TIDECAST_FAULT_POINT``, see :mod:`tidecast.faults`), and then checks:

* the process died at that very point (the fault trace ends with it);
* ``tidecast status`` exits 0 and shows exactly the interrupted step (unless its cache entry was
  committed) and the later steps as not fresh, in agreement with what the cache holds;
* the cache holds no partial entry (only the dead process's ``.tmp-`` folder), ``tidecast.lock``
  records only complete entries, no run is RUNNING but the dead process's, every registered
  version's artifacts are on disk, and the champion is untouched unless the kill came after the
  alias moved;
* a re-run (``tidecast run``) exits 0, after which every step is fresh, ``tidecast.lock`` = the
  cache = the registry, nothing temporary is left, the killed runs are reaped as FAILED, every
  finished training run is complete and the champion loads as a pyfunc.

A fast subset runs by default; ``TIDECAST_FAULTS_FULL=1`` (``make test-faults``) runs every point and
the random-time kills.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.pipeline_harness import STEPS, FaultProject, Snapshot, expected_not_fresh, migrated_store
from tidecast.faults import POINTS

FULL = os.environ.get("TIDECAST_FAULTS_FULL") == "1"
pytestmark = pytest.mark.timeout(900 if FULL else 300)

# (fault point, the edit that makes its step run): in pipeline order, so the project moves forward
MATRIX: list[tuple[str, str]] = [
    ("step.ingest.start", "data"),
    ("cache.ingest.before-rename", "data"),
    ("step.clean.committed", "data"),
    ("lock.before-replace:2", "data"),  # the record of clean
    ("step.features.end", "data"),
    ("step.backtest.start", "seed"),
    ("cache.backtest.before-rename", "seed"),
    ("step.select.end", "seed"),
    ("step.explain.start", "seed"),
    ("step.track.start", "registry"),
    ("track.run-created", "registry"),
    ("track.candidate-logged:1", "registry"),
    ("track.metrics-logged", "registry"),
    ("track.artifacts-partial", "registry"),
    ("track.artifacts-logged", "registry"),
    ("pyfunc.load:1", "registry"),  # MLflow validating the input example: the model is half logged
    ("track.model-logged", "registry"),
    ("registry.version-created", "registry"),
    ("registry.gate-evaluated", "registry"),
    ("registry.previous-set", "registry"),
    ("registry.champion-set", "registry"),
    ("track.registered", "registry"),
    ("track.finished", "registry"),
    ("cache.track.before-rename", "registry"),
    ("lock.before-replace:1", "registry"),  # the record of track
    ("report.built", "registry"),
    ("report.written", "registry"),
    ("report.logged", "registry"),
    ("step.report.end", "registry"),
]
FAST = {
    "cache.backtest.before-rename",
    "track.artifacts-partial",
    "pyfunc.load:1",
    "registry.previous-set",
    "lock.before-replace:1",
    "report.written",
}
RANDOM_SEED = 20251126
RANDOM_KILLS = 3


def _params() -> list[object]:
    marks = [pytest.mark.faults_full]
    return [pytest.param(p, e, id=p, marks=() if p in FAST else marks) for p, e in MATRIX]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProject]:
    """The project, trained once (champion v1) before the first scenario."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV"):
            mp.delenv(var, raising=False)
        base = tmp_path_factory.mktemp("kill-matrix")
        proj = FaultProject(base / "proj", template=migrated_store(base))
        proj.rerun()
        proj.check_recovered()
        yield proj


def test_matrix_covers_every_kind_of_point() -> None:
    """At least 20 distinct points, every step's start or end among them, every library point used."""
    assert len({p for p, _ in MATRIX}) >= 20
    named = {p.split(":")[0] for p, _ in MATRIX}
    for step in STEPS:
        assert any(n.split(".")[1] == step for n in named if n.startswith(("step.", "cache."))), step
    kinds = {p.split(".")[0] if p.startswith(("step.", "cache.")) else p for p in POINTS}
    used = {n.split(".")[0] if n.startswith(("step.", "cache.")) else n for n in named}
    assert kinds <= used, sorted(kinds - used)


def test_fault_points_are_inert_unless_armed(tmp_path: Path) -> None:
    """A point kills on exactly its n-th pass when armed, records every pass when traced, and does nothing else."""
    script = "from tidecast.faults import fault_point\nfor _ in range(3):\n    fault_point('x.y')\nprint('alive')\n"
    trace = tmp_path / "trace"

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDECAST_FAULT")}
        return subprocess.run([sys.executable, "-c", script], env={**clean, **env}, capture_output=True, text=True)

    assert run().stdout == "alive\n" and not trace.exists()
    assert run(TIDECAST_FAULT_POINT="x.y:4").stdout == "alive\n"
    assert run(TIDECAST_FAULT_POINT="other").stdout == "alive\n"
    killed = run(TIDECAST_FAULT_POINT="x.y:2", TIDECAST_FAULT_TRACE=str(trace))
    assert killed.returncode == -signal.SIGKILL and killed.stdout == ""
    assert trace.read_text().split() == ["x.y:1", "x.y:2"]
    assert run(TIDECAST_FAULT_POINT="x.y").returncode == -signal.SIGKILL


@pytest.mark.parametrize(("point", "edit"), _params())
def test_kill_at_point(project: FaultProject, point: str, edit: str) -> None:
    _heal(project)
    project.edit(edit)
    will_run = [n for n, p in project.plans().items() if p.will_run]
    before = project.snapshot()

    outcome = project.run_process("run", point=point)
    name, _, count = point.partition(":")
    assert outcome.killed, f"the run was not killed at {point}:\n{outcome}"
    assert outcome.trace and outcome.trace[-1] == f"{name}:{count or 1}", outcome.trace[-5:]

    plans = project.plans()
    expected = expected_not_fresh(point, will_run, outcome.trace, lambda s: project.cache.has(s, plans[s].key))
    moved = _check_after_kill(project, outcome.pid, outcome.trace, before, expected=expected)
    project.rerun()
    project.check_recovered(before=None if moved else before)


@pytest.fixture(scope="module")
def full_run_seconds(project: FaultProject) -> float:
    """How long a whole ``tidecast run`` subprocess (new data: every step) takes here, unkilled."""
    _heal(project)
    project.edit("data")
    outcome = project.run_process("run")
    assert outcome.returncode == 0, str(outcome)
    return outcome.seconds


@pytest.mark.faults_full
@pytest.mark.parametrize("index", range(RANDOM_KILLS))
def test_kill_at_random_moment(project: FaultProject, full_run_seconds: float, index: int) -> None:
    """SIGKILL after a delay drawn from a seeded RNG (the whole pipeline has to run: new data), a
    fraction of what a whole run takes on this machine, so that the kill lands before the run ends:
    a kill after the run finished would prove nothing, and fails the test. At most 65 %: the steps
    end before the process does (its start-up and exit are the rest), later runs of the module are
    faster than the one timed (warm imports), and track and explain now end together; a draw of
    75 % once landed after every step had committed. The kill matrix covers each step's own points."""
    fraction = random.Random(RANDOM_SEED + index).uniform(0.15, 0.65)
    delay = fraction * full_run_seconds
    _heal(project)
    project.edit("data")
    before = project.snapshot()
    outcome = project.run_process("run", kill_after=delay)
    assert outcome.kill_landed, (
        f"the SIGKILL after {delay:.1f} s ({fraction:.0%} of a whole run) did not land:\n{outcome}"
    )
    moved = _check_after_kill(project, outcome.pid, outcome.trace, before, expected=None)
    unfinished = [name for name, plan in project.plans().items() if plan.will_run]
    assert unfinished, "the killed run left every step fresh: it had finished before the kill"
    project.rerun()
    project.check_recovered(before=None if moved else before)


def _heal(project: FaultProject) -> None:
    """A scenario starts from a fully recovered project (re-run if an earlier scenario failed half way)."""
    if any(p.will_run for p in project.plans().values()):
        project.rerun()


def _check_after_kill(
    project: FaultProject, pid: int, trace: list[str], before: Snapshot, *, expected: set[str] | None
) -> bool:
    """The checks right after a kill; returns whether the killed run had moved the champion."""
    started = time.perf_counter()
    project.check_status(expected)
    plans = project.plans()
    fresh = [(n, plans[n].key) for n in STEPS if project.cache.has(n, plans[n].key)]
    project.check_cache(dead_pids=[pid], load=fresh)
    project.check_lock()
    project.check_runs(dead_pids=[pid])
    champion = project.check_registry(load_champion=False, before=before)
    moved = any(t.startswith("registry.champion-set:") for t in trace)
    after = project.snapshot()
    new_versions = after.versions - before.versions
    if moved:
        assert champion in new_versions, f"champion v{champion} after a kill past the alias move ({new_versions})"
    else:
        assert champion == before.champion, "a killed run moved the champion"
    assert time.perf_counter() - started < 60
    return moved
