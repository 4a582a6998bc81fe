"""Two and four ``tidecast run`` processes started at once on one project (one SQLite store, one cache).

Each must exit 0, or exit 2 with one clear "project locked" line naming the pid of a process that
really was running; afterwards the store (``PRAGMA integrity_check``, no RUNNING run, every finished
training complete), the cache, ``tidecast.lock`` and the registry must be consistent, with one
registered version per training that ran. Meanwhile ``tidecast status`` keeps telling the truth.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.pipeline_harness import STEPS, FaultProject, Outcome, migrated_store

FULL = os.environ.get("TIDECAST_FAULTS_FULL") == "1"
pytestmark = pytest.mark.timeout(600)
LOCKED = re.compile(
    r"^error: project locked: another tidecast run holds (?P<path>\S+) \(pid (?P<pid>\d+)\); wait for it"
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[FaultProject]:
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV"):
            mp.delenv(var, raising=False)
        yield FaultProject(tmp_path / "proj", template=migrated_store(tmp_path))


def _race(project: FaultProject, n: int, *, watch_status: bool) -> list[Outcome]:
    """Start ``n`` runs at once; while they run, compare ``tidecast status`` with the cache."""
    started = [project.start("run", name=f"run{i}") for i in range(n)]
    checks = 0
    while watch_status and any(proc.poll() is None for proc, _ in started):
        plans = project.plans()
        cached_before = {s for s in STEPS if project.cache.has(s, plans[s].key)}
        shown = project.cli_status()
        cached_after = {s for s in STEPS if project.cache.has(s, plans[s].key)}
        for step, state in shown.items():
            # entries only ever appear during a run: fresh means it was there by the end of the call,
            # not fresh means it was not there yet at its start
            assert (step in cached_after) if state == "fresh" else (step not in cached_before), (step, shown)
        checks += 1
        time.sleep(0.5)
    outcomes = [project.finish(proc, files, timeout=400) for proc, files in started]
    pids = {o.pid for o in outcomes}
    for outcome in outcomes:
        if outcome.returncode == 0:
            continue
        assert outcome.returncode == 2, str(outcome)
        lines = [line for line in outcome.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"a locked run should say one line:\n{outcome.stderr}"
        match = LOCKED.match(lines[0])
        assert match, lines[0]
        assert Path(match["path"]) == project.state / "run.lock"
        assert int(match["pid"]) in pids - {outcome.pid}, f"the lock names pid {match['pid']}, not a racing run"
        assert "remove the file" not in lines[0]
    assert any(o.returncode == 0 for o in outcomes), "\n\n".join(map(str, outcomes))
    assert not watch_status or checks >= 1
    return outcomes


def _trained(outcome: Outcome) -> bool:
    """Whether this run executed the track step (the CLI lists every step as "ran" or "cached")."""
    return outcome.returncode == 0 and re.search(r"^\s*track\s+ran\b", outcome.stderr, re.MULTILINE) is not None


def _check_consistent(project: FaultProject, outcomes: list[Outcome], versions_before: int) -> None:
    project.check_recovered()
    trainings = [r for r in project.runs() if r.data.tags.get("tidecast.kind") == "training"]
    assert all(r.info.status == "FINISHED" for r in trainings), [r.info.status for r in trainings]
    versions = project.snapshot().versions
    winners = sum(1 for o in outcomes if _trained(o))
    assert len(versions) - versions_before == winners, (sorted(versions), [str(o) for o in outcomes])


@pytest.mark.parametrize("n", [2, pytest.param(4, marks=pytest.mark.faults_full)])
def test_runs_started_at_once_finish_or_fail_locked(project: FaultProject, n: int) -> None:
    # round 1: a fresh project (nothing cached, no experiment yet); round 2: a registry edit (track, report)
    first = _race(project, n, watch_status=True)
    _check_consistent(project, first, 0)
    count = len(project.snapshot().versions)
    project.edit("registry")
    second = _race(project, n, watch_status=False)
    _check_consistent(project, second, count)
    outcomes = [*first, *second]
    finished = sum(o.returncode == 0 for o in outcomes)
    print(f"{n} runs at once, two rounds: {finished} finished, {len(outcomes) - finished} locked out")
