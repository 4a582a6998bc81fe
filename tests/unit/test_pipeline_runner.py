"""Planning and running: keys, what re-runs and why, failures, locking, crash safety."""

from __future__ import annotations

import copy
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tidecast.errors import DataError, LockedError, PipelineError
from tidecast.pipeline import (
    ArtifactCache,
    Pipeline,
    RunCallbacks,
    SpecLike,
    file_sha256,
    plan,
    run,
    status,
    step,
)


class FakeSpec:
    """The least a spec needs: sections as attributes, ``section()``, ``root``, ``state_dir``."""

    def __init__(self, root: Path, **sections: Any) -> None:
        self.root = Path(root)
        self._sections = sections
        for name, value in sections.items():
            setattr(self, name, value)

    @property
    def state_dir(self) -> Path:
        return self.root / ".tidecast"

    def section(self, *names: str) -> dict[str, Any]:
        return {name: copy.deepcopy(self._sections.get(name)) for name in names}

    def but(self, **changes: Any) -> FakeSpec:
        return FakeSpec(self.root, **{**copy.deepcopy(self._sections), **changes})


CALLS: list[str] = []


@step(spec=("data",), fingerprint=lambda spec: file_sha256(spec.data["path"]))
def ingest(spec):
    CALLS.append("ingest")
    return pd.read_csv(spec.data["path"])


@step(spec=("clean",))
def clean(ingest, spec):
    CALLS.append("clean")
    return ingest.assign(y=ingest["y"].clip(upper=spec.clean["cap"]))


@step(spec=("features",))
def features(clean, spec, ctx):
    CALLS.append("features")
    ctx.progress(1, 2, "lags")
    (ctx.artifact_dir / "columns.txt").write_text(",".join(clean.columns))
    ctx.progress(2, 2, "done")
    return clean.assign(lag=clean["y"].shift(spec.features["lag"]))


@step(spec=("backtest",))
def backtest(features, clean, spec):
    CALLS.append("backtest")
    return {"mae": float((features["y"] - features["lag"]).abs().mean()), "folds": spec.backtest["folds"]}


@step()
def report(backtest):
    CALLS.append("report")
    return f"mae={backtest['mae']:.3f}"


STEPS = [ingest, clean, features, backtest, report]
PIPELINE = Pipeline(STEPS)


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@pytest.fixture
def project(tmp_path: Path) -> FakeSpec:
    (tmp_path / "data.csv").write_text("y\n1\n5\n3\n9\n2\n")
    return FakeSpec(
        tmp_path,
        data={"path": str(tmp_path / "data.csv")},
        clean={"cap": 8},
        features={"lag": 1},
        backtest={"folds": 2},
        tracking={"uri": "sqlite://"},  # declared by no step
    )


def keys(spec: Any, pipeline: Pipeline = PIPELINE) -> dict[str, str]:
    return {p.name: p.key for p in status(pipeline, spec)}


def lock_steps(spec: FakeSpec) -> dict[str, Any]:
    return yaml.safe_load((spec.root / "tidecast.lock").read_text())["steps"]


def test_fake_spec_is_spec_like(project: FakeSpec) -> None:
    assert isinstance(project, SpecLike)


def test_first_run_executes_everything_and_second_run_nothing(project: FakeSpec) -> None:
    first = run(PIPELINE, project)
    assert first.executed == PIPELINE.order() == CALLS and first.skipped == []
    assert set(first.durations) == set(PIPELINE)
    assert first.outputs["report"].startswith("mae=")
    lock_text = (project.root / "tidecast.lock").read_text()
    steps = lock_steps(project)
    assert list(steps) == PIPELINE.order()
    assert steps["clean"]["inputs"] == {"ingest": first.keys["ingest"]}
    assert steps["clean"]["outputs"] == f".tidecast/cache/clean/{first.keys['clean']}"
    assert steps["ingest"]["fingerprint"] == file_sha256(project.data["path"])
    assert set(steps["backtest"]["spec"]) == {"backtest"} and steps["report"]["spec"] == {}

    CALLS.clear()
    second = run(PIPELINE, project)
    assert second.executed == [] and CALLS == []
    assert second.skipped == PIPELINE.order()
    assert (project.root / "tidecast.lock").read_text() == lock_text  # untouched
    assert second.outputs["report"] == first.outputs["report"]
    assert all(p.status == "fresh" for p in status(PIPELINE, project))


def test_keys_change_exactly_with_their_inputs(project: FakeSpec) -> None:
    base = keys(project)
    assert keys(project) == base  # deterministic
    # an unrelated section changes nothing
    assert keys(project.but(tracking={"uri": "file:///elsewhere"})) == base
    # a step's own section changes it and everything downstream, nothing upstream
    after = keys(project.but(features={"lag": 2}))
    assert [n for n in base if after[n] != base[n]] == ["features", "backtest", "report"]
    # the external fingerprint
    Path(project.data["path"]).write_text("y\n1\n2\n")
    after = keys(project)
    assert [n for n in base if after[n] != base[n]] == PIPELINE.order()

    # the code of one step
    Path(project.data["path"]).write_text("y\n1\n5\n3\n9\n2\n")

    @step(spec=("features",))
    def features(clean, spec, ctx):  # same name, another body
        return clean.assign(lag=clean["y"].shift(spec.features["lag"] + 1))

    edited = Pipeline([ingest, clean, features, backtest, report])
    after = keys(project, edited)
    assert [n for n in base if after[n] != base[n]] == ["features", "backtest", "report"]


def test_editing_one_section_reruns_only_dependent_steps(project: FakeSpec) -> None:
    run(PIPELINE, project)
    edited = project.but(backtest={"folds": 5})
    plans = {p.name: p for p in status(PIPELINE, edited)}
    assert {n: p.status for n, p in plans.items()} == {
        "ingest": "fresh", "clean": "fresh", "features": "fresh", "backtest": "stale", "report": "stale",
    }
    assert plans["backtest"].reason == "spec section 'backtest' changed"
    assert plans["report"].reason == "upstream 'backtest' changed"
    assert plans["ingest"].reason == "up to date"
    CALLS.clear()
    result = run(PIPELINE, edited)
    assert result.executed == CALLS == ["backtest", "report"]
    assert result.outputs["backtest"]["folds"] == 5


def test_reasons_name_code_and_fingerprint_changes(project: FakeSpec) -> None:
    run(PIPELINE, project)
    Path(project.data["path"]).write_text("y\n4\n4\n")

    @step(spec=("clean",))
    def clean(ingest, spec):
        return ingest

    plans = {p.name: p for p in status(Pipeline([ingest, clean, features, backtest, report]), project)}
    assert plans["ingest"].reason == "data fingerprint changed"
    assert plans["clean"].reason == "code of step changed; upstream 'ingest' changed"
    assert plans["features"].reason == "upstream 'clean' changed"
    assert plans["backtest"].reason == "upstream steps 'features', 'clean' changed"


def test_switching_back_reuses_the_cache_and_updates_the_lock(project: FakeSpec) -> None:
    run(PIPELINE, project)
    old_key = lock_steps(project)["clean"]["key"]
    edited = project.but(clean={"cap": 4})
    run(PIPELINE, edited)
    assert lock_steps(project)["clean"]["key"] != old_key
    plans = {p.name: p for p in status(PIPELINE, project)}
    assert plans["clean"].status == "fresh" and "reused" in plans["clean"].reason
    CALLS.clear()
    result = run(PIPELINE, project)
    assert result.executed == [] and CALLS == []
    assert lock_steps(project)["clean"]["key"] == old_key
    assert all(p.reason == "up to date" for p in status(PIPELINE, project))


def test_a_deleted_cache_entry_is_missing(project: FakeSpec) -> None:
    first = run(PIPELINE, project)
    import shutil

    shutil.rmtree(project.state_dir / "cache" / "features")
    plans = {p.name: p for p in status(PIPELINE, project)}
    assert (plans["features"].status, plans["features"].reason) == ("missing", "cached output missing")
    assert plans["backtest"].status == "fresh"  # keys do not depend on content
    assert plans["ingest"].reason == "up to date"
    fresh = status(PIPELINE, FakeSpec(project.root / "elsewhere", **project._sections))
    assert {(p.status, p.reason) for p in fresh} == {("missing", "never run")}
    CALLS.clear()
    assert run(PIPELINE, project).executed == CALLS == ["features"]
    assert (project.state_dir / "cache" / "features" / first.keys["features"] / "artifacts" / "columns.txt").is_file()


def test_fresh_outputs_are_loaded_only_when_a_running_step_needs_them(
    project: FakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(PIPELINE, project)
    loads: list[str] = []
    original = ArtifactCache.load

    def counting(self: ArtifactCache, name: str, key: str) -> Any:
        loads.append(name)
        return original(self, name, key)

    monkeypatch.setattr(ArtifactCache, "load", counting)
    result = run(PIPELINE, project.but(backtest={"folds": 3}))
    assert result.executed == ["backtest", "report"]
    assert sorted(loads) == ["clean", "features"]  # not ingest
    loads.clear()
    assert run(PIPELINE, project).executed == []  # back to the first spec: every entry exists
    assert loads == []  # and nothing is read


def test_until_and_force(project: FakeSpec) -> None:
    result = run(PIPELINE, project, until="clean")
    assert result.executed == ["ingest", "clean"] and list(result.outputs) == ["ingest", "clean"]
    assert set(lock_steps(project)) == {"ingest", "clean"}
    CALLS.clear()
    result = run(PIPELINE, project, force="clean")
    assert result.executed == CALLS == ["clean", "features", "backtest", "report"]  # the three were never run
    CALLS.clear()
    result = run(PIPELINE, project, force=["clean"])
    assert result.executed == ["clean"]  # forcing does not change keys: downstream stays fresh
    assert status(PIPELINE, project, force="clean")[1].reason == "forced"
    CALLS.clear()
    assert run(PIPELINE, project, force=("all",)).executed == PIPELINE.order()
    with pytest.raises(PipelineError, match=r"cannot force 'clen'.*did you mean 'clean'"):
        run(PIPELINE, project, force=("clen",))
    with pytest.raises(PipelineError, match="no step named 'reprt'"):
        run(PIPELINE, project, until="reprt")


def test_uncached_steps_always_run(project: FakeSpec) -> None:
    seen: list[int] = []

    @step(cache=False)
    def notify(backtest, spec, ctx):
        seen.append(1)
        (ctx.artifact_dir / "tmp.txt").write_text("gone after the step")
        return {"sent": backtest["folds"]}

    pipeline = Pipeline([*STEPS, notify])
    first = run(pipeline, project)
    second = run(pipeline, project)
    assert second.executed == ["notify"] and len(seen) == 2
    assert second.outputs["notify"] == {"sent": 2}
    assert first.keys["notify"] == second.keys["notify"]
    assert not (project.state_dir / "cache" / "notify").exists() or not any(
        (project.state_dir / "cache" / "notify").iterdir()
    )
    assert lock_steps(project)["notify"]["outputs"] is None
    assert status(pipeline, project)[-1].status == "stale"


def test_a_failing_step_leaves_no_trace(project: FakeSpec) -> None:
    @step(spec=("features",))
    def features(clean, spec, ctx):
        (ctx.artifact_dir / "half.bin").write_bytes(b"x" * 100)
        raise ZeroDivisionError("boom")

    broken = Pipeline([ingest, clean, features, backtest, report])
    with pytest.raises(PipelineError, match=r"step 'features' failed: ZeroDivisionError: boom") as info:
        run(broken, project)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert set(lock_steps(project)) == {"ingest", "clean"}  # completed steps are kept
    cache = project.state_dir / "cache"
    assert list((cache / "features").iterdir()) == []  # no entry, no tmp folder
    assert not (cache / "backtest").exists()


def test_a_failing_first_step_does_not_touch_the_lock(project: FakeSpec) -> None:
    run(PIPELINE, project)
    before = (project.root / "tidecast.lock").read_text()

    @step(spec=("data",), fingerprint=lambda spec: "another")
    def ingest(spec):
        raise DataError("data.csv: row 3: not a number")

    with pytest.raises(DataError, match="row 3") as info:  # tidecast errors pass through unchanged
        run(Pipeline([ingest, clean, features, backtest, report]), project)
    assert type(info.value) is DataError
    assert (project.root / "tidecast.lock").read_text() == before
    assert [p.name for p in (project.state_dir / "cache" / "ingest").iterdir()] == [keys(project)["ingest"]]


def test_unstorable_output_is_a_pipeline_error(project: FakeSpec) -> None:
    @step()
    def handle():
        return threading.Lock()

    with pytest.raises(PipelineError, match="step 'handle' returned a value that cannot be stored"):
        run(Pipeline([handle]), project)
    assert list((project.state_dir / "cache" / "handle").iterdir()) == []


def test_stray_tmp_folders_are_ignored_and_cleaned(project: FakeSpec) -> None:
    key = keys(project)["clean"]
    stray = project.state_dir / "cache" / "clean" / f".tmp-{key}-999999999-dead"
    (stray / "artifacts").mkdir(parents=True)
    (stray / "output.parquet").write_bytes(b"partial")
    assert status(PIPELINE, project)[1].status == "missing"
    result = run(PIPELINE, project)
    assert "clean" in result.executed and not stray.exists()


def test_callbacks_and_context(project: FakeSpec) -> None:
    events: list[tuple[Any, ...]] = []
    callbacks = RunCallbacks(
        on_plan=lambda plans: events.append(("plan", [p.status for p in plans])),
        on_step_start=lambda name, i, n: events.append(("start", name, i, n)),
        on_step_progress=lambda name, done, total, text: events.append(("progress", name, done, total, text)),
        on_step_end=lambda name, how, s: events.append(("end", name, how, s >= 0)),
    )
    run(PIPELINE, project, until="features", callbacks=callbacks)
    assert events[0] == ("plan", ["missing"] * 3)
    assert ("start", "clean", 2, 3) in events
    assert ("progress", "features", 1, 2, "lags") in events and ("progress", "features", 2, 2, "done") in events
    assert events[-1] == ("end", "features", "ran", True)
    events.clear()
    run(PIPELINE, project, until="features", callbacks=callbacks)
    assert [e for e in events if e[0] == "end"] == [("end", n, "cached", True) for n in ("ingest", "clean", "features")]


def test_outputs_are_what_the_cache_gives_back(project: FakeSpec) -> None:
    received: list[pd.DataFrame] = []

    @step()
    def indexed():
        return pd.DataFrame({"y": [1.0, 2.0]}, index=pd.date_range("2024-01-01", periods=2, freq="h"))

    @step()
    def reader(indexed):
        received.append(indexed)
        return len(indexed)

    p = Pipeline([indexed, reader])
    run(p, project)
    run(p, project, force="reader")
    # the first run hands 'reader' the frame as re-read from Parquet, like the second run does
    pd.testing.assert_frame_equal(received[0], received[1], check_freq=True)


def test_a_held_lock_refuses_the_run(project: FakeSpec) -> None:
    from tidecast.pipeline import ProjectLock

    errors: list[BaseException] = []
    with ProjectLock(project.state_dir):

        def other() -> None:
            try:
                run(PIPELINE, project)
            except LockedError as exc:
                errors.append(exc)

        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
    assert len(errors) == 1 and "another tidecast run holds" in str(errors[0])
    assert CALLS == []


def test_the_real_spec_drives_the_engine(tmp_path: Path) -> None:
    from tidecast.spec import parse_spec

    data = {
        "project": "demo",
        "data": {"source": "x.csv", "frequency": "h"},
        "forecast": {"input_window": 24, "horizon": 12},
    }

    @step(spec=("data", "forecast"))
    def window(spec):
        return {"h": spec.forecast_steps()[1]}

    spec = parse_spec(data, root=tmp_path)
    assert run(Pipeline([window]), spec).outputs["window"] == {"h": 12}
    assert run(Pipeline([window]), spec).executed == []
    assert run(Pipeline([window]), parse_spec({**data, "seed": 3}, root=tmp_path)).executed == []
    changed = parse_spec({**data, "forecast": {"input_window": 24, "horizon": 6}}, root=tmp_path)
    assert status(Pipeline([window]), changed)[0].reason == "spec section 'forecast' changed"

    @step(spec=("forcast",))
    def typo(spec):
        return 1

    with pytest.raises(PipelineError, match="declares spec section 'forcast'"):
        plan(Pipeline([typo]), spec)


KILLABLE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    from tidecast.pipeline import Pipeline, run, step


    class Spec:
        def __init__(self, root):
            self.root = Path(root)
            self.state_dir = self.root / ".tidecast"

        def section(self, *names):
            return {n: None for n in names}


    @step()
    def first():
        return {"a": 1}


    @step()
    def slow(first, ctx):
        (ctx.artifact_dir / "part.bin").write_bytes(b"x" * 100_000)
        marker = os.environ.get("TIDECAST_TEST_HANG")
        if marker:
            Path(marker).write_text("writing")
            time.sleep(60)
        return {"b": first["a"] + 1}


    PIPELINE = Pipeline([first, slow])

    if __name__ == "__main__":
        run(PIPELINE, Spec(sys.argv[1]))
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_run_commits_nothing_partial_and_a_rerun_completes(tmp_path: Path) -> None:
    script = tmp_path / "killable_pipeline.py"
    script.write_text(KILLABLE)
    project = tmp_path / "project"
    marker = tmp_path / "writing"
    env = {**os.environ, "TIDECAST_TEST_HANG": str(marker)}
    child = subprocess.Popen([sys.executable, str(script), str(project)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, "the child run ended early"
            assert time.monotonic() < deadline, "the child run never reached the slow step"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=20)
    cache = project / ".tidecast" / "cache"
    leftovers = list((cache / "slow").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-")  # only an uncommitted folder
    assert (leftovers[0] / "artifacts" / "part.bin").is_file()
    assert set(yaml.safe_load((project / "tidecast.lock").read_text())["steps"]) == {"first"}

    module_spec = importlib.util.spec_from_file_location("killable_pipeline", script)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    result = run(module.PIPELINE, module.Spec(project))  # the lock died with the child
    assert result.executed == ["slow"] and result.skipped == ["first"]
    assert result.outputs["slow"] == {"b": 2}
    entries = list((cache / "slow").iterdir())
    assert [e.name for e in entries] == [result.keys["slow"]]  # the tmp folder was cleaned
    assert (entries[0] / "artifacts" / "part.bin").stat().st_size == 100_000
    assert set(yaml.safe_load((project / "tidecast.lock").read_text())["steps"]) == {"first", "slow"}


def test_any_object_with_some_hooks_can_listen_and_outputs_load_lazily(
    project: FakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    class OnlyEnd:
        def __init__(self) -> None:
            self.ended: list[str] = []

        def on_step_end(self, name: str, state: str, seconds: float) -> None:
            self.ended.append(f"{name}:{state}")

    listener = OnlyEnd()
    run(PIPELINE, project, until="clean", callbacks=listener)
    assert listener.ended == ["ingest:ran", "clean:ran"]

    loads: list[str] = []
    original = ArtifactCache.load
    monkeypatch.setattr(ArtifactCache, "load", lambda self, n, k: loads.append(n) or original(self, n, k))
    result = run(PIPELINE, project, until="clean")
    assert "clean" in result.outputs and "report" not in result.outputs and list(result.outputs) == ["ingest", "clean"]
    assert loads == []  # membership and listing read nothing
    assert len(result.outputs["clean"]) == 5 and loads == ["clean"]
    result.outputs["clean"]
    assert loads == ["clean"]  # kept after the first access
