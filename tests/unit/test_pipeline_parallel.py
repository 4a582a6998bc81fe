"""Steps side by side: the runner runs the steps whose inputs are done at the same time, in threads.

Real steps, real threads, real files: two steps that each wait for the other's start can only both
finish if they overlap (each wait has a generous bound, so a runner that serializes them fails
the test instead of hanging it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tidecast.errors import DataError, PipelineError
from tidecast.pipeline import Pipeline, RunCallbacks, RunResult, run, step
from tidecast.pipeline.executors import make_executor
from tidecast.pipeline.runner import PARALLEL_ENV, parallel_steps

HANDSHAKE_S = 60.0  # how long a step waits for the one that should run beside it (a bound, never reached)


class Spec:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def state_dir(self) -> Path:
        return self.root / ".tidecast"

    def section(self, *names: str) -> dict[str, Any]:
        return {}


@pytest.fixture
def spec(tmp_path: Path) -> Spec:
    return Spec(tmp_path)


def lock_steps(spec: Spec) -> dict[str, Any]:
    return yaml.safe_load((spec.root / "tidecast.lock").read_text())["steps"]


def step_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("tidecast-step-")]


def cached(spec: Spec, name: str) -> list[str]:
    folder = spec.state_dir / "cache" / name
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def handshake_pipeline(log: list[str]) -> Pipeline:
    """root -> (left, right) -> join; left and right each wait for the other to have started."""
    started = {"left": threading.Event(), "right": threading.Event()}

    @step()
    def root() -> int:
        log.append("root")
        return 1

    def meet(me: str, other: str) -> None:
        log.append(f"{me} start")
        started[me].set()
        if not started[other].wait(HANDSHAKE_S):
            raise AssertionError(f"{other} never ran beside {me}")
        log.append(f"{me} end")

    @step()
    def left(root: int) -> int:
        meet("left", "right")
        return root + 1

    @step()
    def right(root: int) -> int:
        meet("right", "left")
        return root + 2

    @step()
    def join(left: int, right: int) -> int:
        log.append("join")
        return left * right

    return Pipeline([root, left, right, join])


def test_independent_steps_run_side_by_side_and_keep_the_plan_order(spec: Spec) -> None:
    log: list[str] = []
    events: list[tuple[str, str]] = []
    callbacks = RunCallbacks(
        on_step_start=lambda name, i, n: events.append(("start", name)),
        on_step_end=lambda name, how, s: events.append(("end", name)),
    )
    result = run(handshake_pipeline(log), spec, max_parallel=2, callbacks=callbacks)
    assert result.outputs["join"] == 2 * 3
    assert log[0] == "root" and log[-1] == "join"  # dependencies first, whichever thread ran them
    assert set(log[1:5]) == {"left start", "right start", "left end", "right end"}
    assert result.executed == ["root", "left", "right", "join"] == list(result.durations) == list(result.peak_rss_mb)
    assert result.side_by_side == [["left", "right"]]
    (l0, l1), (r0, r1) = result.spans["left"], result.spans["right"]
    assert l0 < r1 and r0 < l1  # the two intervals overlap
    assert result.busy_s < sum(result.durations.values())
    assert events[:3] == [("start", "root"), ("end", "root"), ("start", "left")]
    assert events.index(("start", "right")) < min(events.index(("end", "left")), events.index(("end", "right")))
    assert events[-2:] == [("start", "join"), ("end", "join")]
    records = lock_steps(spec)
    assert set(records) == {"root", "left", "right", "join"}
    assert all(cached(spec, name) == [result.keys[name]] for name in records)  # committed, no tmp folder left
    assert step_threads() == []


def test_one_at_a_time_when_asked(spec: Spec, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    @step()
    def root() -> int:
        return 1

    @step()
    def left(root: int) -> int:
        order.append("left")
        return 2

    @step()
    def right(root: int) -> int:
        order.append(f"right (left {'done' if order == ['left'] else 'not done'})")
        return 3

    monkeypatch.setenv(PARALLEL_ENV, "1")
    result = run(Pipeline([root, left, right]), spec)
    assert order == ["left", "right (left done)"] and result.side_by_side == []


def test_how_many_steps_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARALLEL_ENV, raising=False)
    assert parallel_steps() == min(2, os.cpu_count() or 1)
    assert parallel_steps(3) == 3
    monkeypatch.setenv(PARALLEL_ENV, "1")
    assert parallel_steps() == 1 and parallel_steps(2) == 2  # the argument wins
    monkeypatch.setenv(PARALLEL_ENV, "two")
    with pytest.raises(PipelineError, match="TIDECAST_PARALLEL_STEPS='two' is not a whole number"):
        parallel_steps()
    with pytest.raises(PipelineError, match="max_parallel must be 1 or more"):
        parallel_steps(0)


def failing_beside(spec: Spec, error: Exception) -> tuple[Pipeline, dict[str, bool]]:
    """root -> (bad, slow) -> join, and slow -> after: bad fails while slow still runs."""
    seen = {"slow saw the failure": False, "after ran": False, "join ran": False}
    raising = threading.Event()

    @step()
    def root() -> int:
        return 1

    @step()
    def bad(root: int, ctx: Any) -> int:
        (ctx.artifact_dir / "half.bin").write_bytes(b"x" * 10)
        raising.set()
        raise error

    @step()
    def slow(root: int) -> int:
        assert raising.wait(HANDSHAKE_S), "bad never ran beside slow"
        for thread in threading.enumerate():  # wait until bad's thread has ended: its failure is out
            if thread.name == "tidecast-step-bad":
                thread.join(HANDSHAKE_S)
        seen["slow saw the failure"] = True
        return 5

    @step()
    def after(slow: int) -> int:
        seen["after ran"] = True
        return slow

    @step()
    def join(bad: int, slow: int) -> int:
        seen["join ran"] = True
        return bad + slow

    return Pipeline([root, bad, slow, after, join]), seen


def test_a_failure_beside_a_running_step_waits_for_it_and_starts_nothing_new(spec: Spec) -> None:
    pipeline, seen = failing_beside(spec, ZeroDivisionError("boom"))
    with pytest.raises(PipelineError, match=r"^step 'bad' failed: ZeroDivisionError: boom$") as info:
        run(pipeline, spec, max_parallel=2)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert seen == {"slow saw the failure": True, "after ran": False, "join ran": False}
    assert set(lock_steps(spec)) == {"root", "slow"}  # the step that succeeded meanwhile is recorded
    assert len(cached(spec, "slow")) == 1 and not cached(spec, "slow")[0].startswith(".")
    assert cached(spec, "bad") == []  # nothing of the failed step, not even its temporary folder
    assert step_threads() == []  # every step's thread was waited for


def test_a_tidecast_error_beside_a_running_step_passes_through_unchanged(spec: Spec) -> None:
    pipeline, seen = failing_beside(spec, DataError("row 3: not a number"))
    with pytest.raises(DataError, match="row 3") as info:
        run(pipeline, spec, max_parallel=2)
    assert type(info.value) is DataError and seen["slow saw the failure"] and not seen["after ran"]
    assert set(lock_steps(spec)) == {"root", "slow"}


def test_two_failures_raise_the_first_and_name_the_second(spec: Spec) -> None:
    first_failed = threading.Event()

    @step()
    def root() -> int:
        return 1

    @step()
    def one(root: int) -> int:
        first_failed.set()
        raise ValueError("first")

    @step()
    def two(root: int) -> int:
        assert first_failed.wait(HANDSHAKE_S)
        for thread in threading.enumerate():
            if thread.name == "tidecast-step-one":
                thread.join(HANDSHAKE_S)
        raise ValueError("second")

    with pytest.raises(PipelineError, match="step 'one' failed: ValueError: first") as info:
        run(Pipeline([root, one, two]), spec, max_parallel=2)
    assert info.value.__notes__ == ["step 'two' failed meanwhile: PipelineError: step 'two' failed: ValueError: second"]
    assert set(lock_steps(spec)) == {"root"}


@pytest.mark.parametrize("exclusive", [True, "store"])
def test_exclusive_steps_never_run_beside_the_others(spec: Spec, exclusive: bool | str) -> None:
    started = {"a": threading.Event(), "b": threading.Event(), "c": threading.Event()}
    overlapped: list[str] = []

    @step()
    def root() -> int:
        return 1

    @step(exclusive=exclusive)
    def a(root: int) -> int:
        started["a"].set()
        if started["b"].wait(1.0):  # the bound of a wrong answer: b starting while a runs
            overlapped.append("a with b")
        return 1

    @step(exclusive="store")
    def b(root: int) -> int:
        started["b"].set()
        return 2

    @step()
    def c(root: int) -> int:
        started["c"].set()
        return 3

    result = run(Pipeline([root, a, b, c]), spec, max_parallel=3)
    assert overlapped == [] and result.executed == ["root", "a", "b", "c"]
    assert not any({"a", "b"} <= set(group) for group in result.side_by_side)
    if exclusive is True:  # a runs alone: nothing beside it
        assert not any("a" in group for group in result.side_by_side)


def test_a_named_group_still_runs_beside_other_steps(spec: Spec) -> None:
    started = {"a": threading.Event(), "c": threading.Event()}

    @step()
    def root() -> int:
        return 1

    @step(exclusive="store")
    def a(root: int) -> int:
        started["a"].set()
        assert started["c"].wait(HANDSHAKE_S), "c did not run beside a"
        return 1

    @step()
    def c(root: int) -> int:
        started["c"].set()
        assert started["a"].wait(HANDSHAKE_S), "a did not run beside c"
        return 3

    result = run(Pipeline([root, a, c]), spec, max_parallel=2)
    assert result.side_by_side == [["a", "c"]]


def test_exclusive_must_be_a_flag_or_a_name() -> None:
    def lonely() -> int:
        return 1

    for bad in ("", 3):
        with pytest.raises(PipelineError, match="step 'lonely': exclusive must be True"):
            step(exclusive=bad)(lonely)  # type: ignore[arg-type]


def test_steps_in_threads_share_the_run_s_executors(spec: Spec) -> None:
    started = {"left": threading.Event(), "right": threading.Event()}
    inner: dict[str, Any] = {}

    @step()
    def root() -> int:
        return 1

    def pool_of(me: str, other: str) -> str:
        started[me].set()
        assert started[other].wait(HANDSHAKE_S)
        shared = make_executor(None, n_jobs=2)
        inner[me] = shared._inner  # type: ignore[attr-defined]
        return repr(shared)

    @step(cache=False)
    def left(root: int) -> str:
        return pool_of("left", "right")

    @step(cache=False)
    def right(root: int) -> str:
        return pool_of("right", "left")

    result = run(Pipeline([root, left, right]), spec, max_parallel=2)
    assert result.side_by_side == [["left", "right"]]
    assert result.outputs["left"].startswith("shared ")  # the run's executor scope, seen from each thread
    assert inner["left"] is inner["right"]  # one process pool for the run, asked for by both at once


def test_callbacks_from_two_threads_come_one_at_a_time(spec: Spec) -> None:
    busy = threading.Lock()
    clashes: list[str] = []
    progress: dict[str, int] = {"left": 0, "right": 0}
    started = {"left": threading.Event(), "right": threading.Event()}

    def on_progress(name: str, done: float, total: float | None, text: str) -> None:
        if not busy.acquire(blocking=False):
            clashes.append(name)
            return
        try:
            progress[name] += 1
            time.sleep(0)  # let the other thread in, were the runner not serializing the calls
        finally:
            busy.release()

    @step()
    def root() -> int:
        return 1

    def report(me: str, other: str, ctx: Any) -> int:
        started[me].set()
        assert started[other].wait(HANDSHAKE_S)
        for i in range(300):
            ctx.progress(i, 300, "working")
        return 1

    @step()
    def left(root: int, ctx: Any) -> int:
        return report("left", "right", ctx)

    @step()
    def right(root: int, ctx: Any) -> int:
        return report("right", "left", ctx)

    result = run(Pipeline([root, left, right]), spec, max_parallel=2, callbacks=RunCallbacks(on_step_progress=on_progress))
    assert result.side_by_side == [["left", "right"]]
    assert clashes == [] and progress == {"left": 300, "right": 300}


def test_overlap_groups_and_busy_time() -> None:
    result = RunResult(
        executed=["a", "b", "c", "d"], skipped=[], outputs={}, durations={},
        spans={"a": (0.0, 1.0), "b": (1.0, 5.0), "c": (2.0, 3.0), "d": (4.5, 6.0)},
    )
    assert result.side_by_side == [["b", "c", "d"]]  # d starts before b ends
    assert result.busy_s == pytest.approx(6.0)
    alone = RunResult(executed=["a"], skipped=[], outputs={}, durations={}, spans={"a": (1.0, 2.5)})
    assert alone.side_by_side == [] and alone.busy_s == pytest.approx(1.5)


INTERRUPTIBLE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tidecast.pipeline import Pipeline, run, step

    out = Path(sys.argv[1])

    class Spec:
        root = out
        state_dir = out / ".tidecast"
        def section(self, *names):
            return {}

    @step()
    def root():
        return 1

    def loop(me):
        (out / f"{me}.started").write_text("")
        try:
            while True:
                time.sleep(0.01)
        except KeyboardInterrupt:
            (out / f"{me}.interrupted").write_text("")
            raise

    @step()
    def left(root):
        loop("left")

    @step()
    def right(root):
        loop("right")

    try:
        run(Pipeline([root, left, right]), Spec(), max_parallel=2)
    except KeyboardInterrupt:
        print("KeyboardInterrupt")
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="needs SIGINT")
def test_ctrl_c_interrupts_the_steps_side_by_side_and_commits_nothing_of_them(tmp_path: Path) -> None:
    script = tmp_path / "interruptible.py"
    script.write_text(INTERRUPTIBLE)
    project = tmp_path / "project"
    project.mkdir()
    child = subprocess.Popen([sys.executable, str(script), str(project)], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ((project / "left.started").exists() and (project / "right.started").exists()):
            assert child.poll() is None, "the child run ended early"
            assert time.monotonic() < deadline, "the two steps never ran side by side"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)  # what Ctrl-C does: the main thread gets KeyboardInterrupt
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.strip() == "KeyboardInterrupt" and child.returncode == 0
    assert (project / "left.interrupted").exists() and (project / "right.interrupted").exists()
    assert set(yaml.safe_load((project / "tidecast.lock").read_text())["steps"]) == {"root"}
    cache = project / ".tidecast" / "cache"
    assert not (cache / "left").exists() or list((cache / "left").iterdir()) == []
    assert not (cache / "right").exists() or list((cache / "right").iterdir()) == []


def test_the_cli_progress_says_which_steps_ran_beside_which(spec: Spec, capsys: pytest.CaptureFixture[str]) -> None:
    """``tidecast run``'s display (no terminal: one plain line per step) and its table of times."""
    from rich.console import Console

    from tidecast.commands._common import ProgressCallbacks
    from tidecast.render import step_times_table

    log: list[str] = []
    with ProgressCallbacks() as callbacks:
        result = run(handshake_pipeline(log), spec, max_parallel=2, callbacks=callbacks)
    lines = [line.split() for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert next(line[0] for line in lines if line[1] == "ran") == "root" and lines[-1][0] == "join"
    said = {line[0]: " ".join(line[3:]) for line in lines}
    assert said["root"] == "s" and said["join"] == "s"  # ran alone: nothing more than its seconds
    assert said["left"] == "s, beside right" and said["right"] == "s, beside left"
    with ProgressCallbacks() as again:  # cached steps ran beside nothing
        run(handshake_pipeline(log), spec, max_parallel=2, callbacks=again, force=("left", "right"))
    said = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().err.splitlines() if line.strip()}
    assert said["root"] == ["cached", "0.0", "s"] and said["join"] == ["cached", "0.0", "s"]
    assert said["left"][-2:] == ["beside", "right"] and said["right"][-2:] == ["beside", "left"]

    console = Console(width=200, record=True, color_system=None)
    console.print(
        step_times_table(result.durations, result.executed, elapsed=10.0, side_by_side=result.side_by_side, busy=result.busy_s)
    )
    text = console.export_text()
    assert "left and right ran side by side: their seconds overlap" in " ".join(text.split())
    outside = next(line for line in text.splitlines() if "outside the steps" in line)
    assert float(outside.split("│")[2]) == pytest.approx(10.0 - result.busy_s, abs=0.06)  # overlaps counted once
