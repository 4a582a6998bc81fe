"""The artifact cache (formats, atomic commits, leftovers), tidecast.lock and the run lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tidecast.errors import LockedError, PipelineError
from tidecast.pipeline import ArtifactCache, LockFile, ProjectLock, StepRecord

KEY = "0123456789abcdef"


@pytest.fixture
def cache(tmp_path: Path) -> ArtifactCache:
    return ArtifactCache(tmp_path / ".tidecast" / "cache")


def test_dataframe_is_stored_as_parquet(cache: ArtifactCache) -> None:
    df = pd.DataFrame(
        {"unique_id": ["a", "b"], "ds": pd.to_datetime(["2024-01-01", "2024-01-02"]), "y": [1.5, 2.0]}
    )
    path = cache.save("clean", KEY, df, duration_s=0.25)
    assert path == cache.path("clean", KEY) and (path / "output.parquet").is_file()
    assert cache.has("clean", KEY)
    pd.testing.assert_frame_equal(cache.load("clean", KEY), df)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["step"] == "clean" and meta["key"] == KEY and meta["format"] == "parquet"
    assert meta["type"] == "pandas.core.frame.DataFrame" and meta["duration_s"] == 0.25
    assert meta["sizes"]["output.parquet"] > 0 and meta["created"].endswith("Z")


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        ({"mae": 1.25, "folds": [1, 2]}, "json"),
        ([1, "two", None], "json"),
        ({"t": (1, 2)}, "joblib"),  # a tuple would come back as a list
        ({1: "int key"}, "joblib"),
        ({"x": float("nan")}, "joblib"),
        ("text", "joblib"),
        (None, "none"),
        (pd.DataFrame({"a": [1, "x"]}), "joblib"),  # Parquet refuses mixed object columns
    ],
)
def test_each_type_round_trips_in_its_format(cache: ArtifactCache, value: object, fmt: str) -> None:
    cache.save("s", KEY, value)
    assert cache.meta("s", KEY)["format"] == fmt
    loaded = cache.load("s", KEY)
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(loaded, value)
    elif isinstance(value, dict) and "x" in value:
        assert loaded.keys() == value.keys()
    else:
        assert loaded == value


def test_declared_kinds_are_enforced(cache: ArtifactCache) -> None:
    with pytest.raises(PipelineError, match="kind='parquet' but returned a dict"):
        cache.save("s", KEY, {"a": 1}, kind="parquet")
    with pytest.raises(PipelineError, match="kind='json' but its output is not JSON"):
        cache.save("s", KEY, {"a": object()}, kind="json")
    assert not cache.has("s", KEY)
    assert list((cache.root / "s").iterdir()) == []  # no leftovers
    cache.save("s", KEY, {"t": (1, 2)}, kind="json")
    assert cache.load("s", KEY) == {"t": [1, 2]}


def test_extra_files_become_part_of_the_entry(cache: ArtifactCache, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    (extra / "sub").mkdir(parents=True)
    (extra / "sub" / "plot.html").write_text("<html/>")
    cache.save("report", KEY, "ok", extra_dir=extra)
    assert (cache.artifacts("report", KEY) / "sub" / "plot.html").read_text() == "<html/>"
    assert cache.meta("report", KEY)["sizes"]["artifacts/sub/plot.html"] == 7

    with cache.begin("report", "f" * 16) as pending:
        (pending.artifact_dir / "model.bin").write_bytes(b"abc")
        assert pending.tmp.name.startswith(".tmp-" + "f" * 16 + f"-{os.getpid()}-")
        assert not cache.has("report", "f" * 16)  # not visible until committed
        pending.commit({"a": 1})
    assert (cache.artifacts("report", "f" * 16) / "model.bin").read_bytes() == b"abc"
    assert not cache.artifacts("other", KEY).exists()


def test_a_failed_write_commits_nothing(cache: ArtifactCache) -> None:
    with pytest.raises(Exception, match="pickle"):
        cache.save("s", KEY, threading.Lock())  # cannot be pickled
    assert not cache.has("s", KEY)
    assert list((cache.root / "s").iterdir()) == []

    with cache.begin("s", KEY) as pending:  # leaving without commit drops the folder
        (pending.artifact_dir / "half.bin").write_bytes(b"x")
    assert list((cache.root / "s").iterdir()) == []


def test_tmp_folders_are_ignored_and_cleaned(cache: ArtifactCache) -> None:
    cache.save("s", KEY, [1])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stray_dead = cache.root / "s" / f".tmp-{'a' * 16}-{dead_pid}-beef"
    stray_live_young = cache.root / "s" / f".tmp-{'b' * 16}-{os.getppid()}-beef"
    stray_live_old = cache.root / "s" / f".tmp-{'c' * 16}-{os.getppid()}-beef"
    for folder in (stray_dead, stray_live_young, stray_live_old):
        (folder / "artifacts").mkdir(parents=True)
        (folder / "meta.json").write_text("{}")  # even a complete-looking tmp folder is not an entry
    old = time.time() - 3600
    os.utime(stray_live_old, (old, old))
    assert not cache.has("s", "a" * 16)
    assert [(s, k) for s, k, _ in cache.entries()] == [("s", KEY)]

    with cache.begin("s", "d" * 16) as mine:  # a folder being written right now is kept
        os.utime(mine.tmp, (old, old))
        removed = cache.clean_tmp()
        assert mine.tmp.exists()
    assert set(removed) == {stray_dead, stray_live_old}
    assert stray_live_young.exists() and cache.has("s", KEY)


def test_a_complete_entry_wins_and_a_broken_one_is_replaced(cache: ArtifactCache) -> None:
    cache.save("s", KEY, [1])
    cache.save("s", KEY, [2])  # same key = same content in practice: the existing entry stays
    assert cache.load("s", KEY) == [1]
    broken = cache.path("s", "e" * 16)
    broken.mkdir(parents=True)
    (broken / "junk").write_text("x")
    assert not cache.has("s", "e" * 16)
    cache.save("s", "e" * 16, [3])
    assert cache.load("s", "e" * 16) == [3] and not (broken / "junk").exists()


def test_missing_and_damaged_entries_have_clear_errors(cache: ArtifactCache) -> None:
    with pytest.raises(PipelineError, match="no cached output for step 's'"):
        cache.load("s", KEY)
    cache.save("s", KEY, "x")
    (cache.path("s", KEY) / "output.joblib").write_bytes(b"garbage")
    with pytest.raises(PipelineError, match=r"cannot be read.*delete that folder"):
        cache.load("s", KEY)


def test_gc_keeps_only_the_listed_entries(cache: ArtifactCache) -> None:
    cache.save("a", "1" * 16, [1])
    cache.save("a", "2" * 16, [2])
    cache.save("b", "3" * 16, [3])
    removed = cache.gc({"a": "2" * 16})
    assert sorted(p.name for p in removed) == ["1" * 16, "3" * 16]
    assert [(s, k) for s, k, _ in cache.entries()] == [("a", "2" * 16)]
    assert not (cache.root / "b").exists()


# ------------------------------------------------------------------------------ lock file
def test_lock_file_round_trips_and_writes_atomically(tmp_path: Path) -> None:
    lock = LockFile(tmp_path / "tidecast.lock")
    assert lock.records == {}
    rec = StepRecord(
        key=KEY, code="c" * 16, spec={"clean": "1" * 16}, inputs={"ingest": "2" * 16}, fingerprint=None,
        outputs=".tidecast/cache/clean/" + KEY, duration_s=0.5, finished_at="2025-01-01T00:00:00Z",
    )
    lock.record("clean", rec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tidecast.lock"]  # no temp file left
    again = LockFile(tmp_path / "tidecast.lock")
    assert again.get("clean") == rec and "clean" in again
    import yaml

    data = yaml.safe_load((tmp_path / "tidecast.lock").read_text())
    assert data["schema"] == 1 and data["steps"]["clean"]["inputs"] == {"ingest": "2" * 16}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("schema: 2\nsteps: {}\n", "expected 'schema: 1', found 2"),
        ("schema: 1\nsteps: [1]\n", "'steps' must be a mapping"),
        ("schema: 1\nsteps: {a: {code: x}}\n", "steps.a: a step record needs"),
        ("schema: [\n", "not valid YAML"),
    ],
)
def test_a_broken_lock_file_is_named(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "tidecast.lock").write_text(text)
    with pytest.raises(PipelineError, match=match) as info:
        LockFile(tmp_path / "tidecast.lock")
    assert "tidecast.lock" in str(info.value) and "delete it" in str(info.value)


# ------------------------------------------------------------------------------- run lock
HOLDER = textwrap.dedent(
    """
    import sys
    from tidecast.pipeline.lock import ProjectLock
    with ProjectLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def test_project_lock_refuses_a_second_process(tmp_path: Path) -> None:
    state = tmp_path / ".tidecast"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=rf"another tidecast run holds .*run\.lock \(pid {child.pid}\)"):
            ProjectLock(state).acquire()
        started = time.monotonic()
        with pytest.raises(LockedError, match="wait for it"):
            ProjectLock(state, timeout=0.3).acquire()
        assert time.monotonic() - started >= 0.3
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=20)
    with ProjectLock(state, timeout=5) as lock:  # free again once the holder is gone
        assert lock.held and (state / "run.lock").read_text().strip() == str(os.getpid())
    assert not lock.held


def test_project_lock_is_reentrant_in_a_thread_but_not_across_threads(tmp_path: Path) -> None:
    state = tmp_path / ".tidecast"
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            ProjectLock(state).acquire()
        except LockedError as exc:
            errors.append(exc)

    with ProjectLock(state):
        with ProjectLock(state):  # nested: fine
            pass
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    assert len(errors) == 1 and f"pid {os.getpid()}" in str(errors[0])
    with ProjectLock(state):  # released after the outer block
        pass


def test_a_locked_run_names_a_holder_that_writes_its_pid_a_moment_late(tmp_path) -> None:
    """The holder takes the lock, then writes its pid: a run refused in between waits for the pid
    instead of saying 'pid unknown' (a race seen with four runs started at once)."""
    import fcntl
    import os
    import threading

    path = tmp_path / "run.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, and the file still empty
    late = threading.Timer(0.1, lambda: os.pwrite(fd, b"4242\n", 0))
    late.start()
    try:
        with pytest.raises(LockedError, match=r"\(pid 4242\)"):
            ProjectLock(tmp_path, timeout=0).acquire()
    finally:
        late.join()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ------------------------------------------------------------- complete keys (issue 15, items 1-2)
def test_code_dependencies_walk_project_imports_without_importing(tmp_path: Path) -> None:
    from tidecast.models.plugins import code_dependencies

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from .shared import K\n")
    (tmp_path / "pkg" / "shared.py").write_text("import json\nK = 1\n")
    (tmp_path / "pkg" / "models.py").write_text(
        "import os\nimport numpy as np\nfrom . import shared\n\ndef build():\n    import helper\n    from sklearn.linear_model import Ridge\n    return Ridge()\n"
    )
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "helper.py").write_text("raise RuntimeError('never imported')\n")
    (tmp_path / "unused.py").write_text("x = 1\n")
    files, external = code_dependencies([("kind", "pkg.models:build")], [tmp_path, tmp_path / "plugins"], tmp_path)
    assert set(files) == {"plugin:pkg/__init__.py", "plugin:pkg/shared.py", "plugin:pkg/models.py", "plugin:plugins/helper.py"}
    assert external == {"numpy", "sklearn"}  # os and json are the standard library
    assert "pkg.models" not in sys.modules and "helper" not in sys.modules
    before = dict(files)
    (tmp_path / "pkg" / "shared.py").write_text("import json\nK = 2\n")
    after, _ = code_dependencies([("kind", "pkg.models:build")], [tmp_path, tmp_path / "plugins"], tmp_path)
    assert [k for k in after if after[k] != before[k]] == ["plugin:pkg/shared.py"]
    # an installed module named by a path is a library, not a file
    files, external = code_dependencies([("estimator", "sklearn.linear_model.Ridge")], [tmp_path], tmp_path)
    assert files == {} and external == {"sklearn"}


def test_code_dependencies_name_a_broken_or_missing_module(tmp_path: Path) -> None:
    from tidecast.errors import PluginError
    from tidecast.models.plugins import code_dependencies

    (tmp_path / "bad.py").write_text("def build(:\n    pass\n")
    with pytest.raises(PluginError, match=r"candidate 'm': kind 'bad:build': bad.py cannot be parsed: .*\(line 1\)"):
        code_dependencies([("candidate 'm': kind", "bad:build")], [tmp_path], tmp_path)
    with pytest.raises(PluginError, match="module 'nowhere_to_be_found' not found"):
        code_dependencies([("kind", "nowhere_to_be_found:build")], [tmp_path], tmp_path)


def test_dependency_changes_in_words() -> None:
    from tidecast.pipeline.deps import describe_changes

    old = {"plugin:my_models.py": "a", "library:lightgbm": "4.5.0", "store:tracking store": "x"}
    new = {"plugin:my_models.py": "b", "library:lightgbm": "4.6.0", "store:tracking store": "y", "plugin:h.py": "c"}
    assert describe_changes(old, new) == [
        "plugin my_models.py changed", "lightgbm 4.5.0 → 4.6.0", "tracking store changed", "plugin h.py added"
    ]
    assert describe_changes(old, new, explained=True)[-1] == "tracking store changed"  # added deps follow the spec
    assert describe_changes(old, old) == []
    assert describe_changes(None, new) == ["the key now covers plugin code, library versions and the tracking store"]


class _Spec:
    def __init__(self, root: Path, store: dict[str, str]) -> None:
        self.root, self.store = root, store

    @property
    def state_dir(self) -> Path:
        return self.root / ".tidecast"

    def section(self, *names: str) -> dict[str, object]:
        return {}


def test_a_check_that_fails_reruns_the_step_and_its_dependents(tmp_path: Path) -> None:
    """A cached output that no longer holds outside the cache (its run gone from the store) re-runs
    with the same key, replaces the cached output, and the steps downstream re-run too."""
    from tidecast.pipeline import Pipeline, run, status, step

    calls: list[str] = []

    @step
    def source() -> int:
        calls.append("source")
        return 1

    def check(spec: _Spec, output: dict | None) -> str | None:
        if output is None:
            return None
        return None if output["run"] in spec.store else f"run {output['run']} is missing from the store"

    @step(check=check, deps=lambda spec: {"store:tracking store": "same"})
    def publish(source: int, ctx: Any) -> dict:
        calls.append("publish")
        run_id = f"r{len(ctx.spec.store) + 1}"
        ctx.spec.store[run_id] = "active"
        return {"run": run_id}

    @step
    def report(publish: dict) -> str:
        calls.append("report")
        return f"report of {publish['run']}"

    pipeline = Pipeline([source, publish, report])
    spec = _Spec(tmp_path, {})
    assert run(pipeline, spec).executed == ["source", "publish", "report"]
    assert [p.status for p in status(pipeline, spec)] == ["fresh", "fresh", "fresh"]
    spec.store.clear()  # the store lost the run
    plans = {p.name: p for p in status(pipeline, spec)}
    assert (plans["publish"].status, plans["publish"].reason) == ("stale", "run r1 is missing from the store")
    assert (plans["report"].status, plans["report"].reason) == ("stale", "upstream 'publish' re-runs")
    calls.clear()
    result = run(pipeline, spec)
    assert calls == ["publish", "report"] and result.outputs["report"] == "report of r1" and spec.store == {"r1": "active"}
    spec.store.clear()
    spec.store["r0"] = "active"
    result = run(pipeline, spec)
    assert result.outputs["publish"] == {"run": "r2"}  # the new output replaced the cached one
    assert result.outputs["report"] == "report of r2"
    assert [p.status for p in status(pipeline, spec)] == ["fresh", "fresh", "fresh"]
    assert LockFile(tmp_path / "tidecast.lock").get("publish").deps == {"store:tracking store": "same"}


def test_a_check_that_raises_before_a_run_stops_it_before_any_step(tmp_path: Path) -> None:
    from tidecast.errors import TrackingError
    from tidecast.pipeline import Pipeline, run, step

    ran: list[str] = []

    @step
    def first() -> int:
        ran.append("first")
        return 1

    def unreachable(spec: object, output: object) -> None:
        raise TrackingError("tracking URI http://nowhere is unreachable: connection refused")

    @step(check=unreachable)
    def publish(first: int) -> int:
        return first

    with pytest.raises(TrackingError, match="unreachable"):
        run(Pipeline([first, publish]), _Spec(tmp_path, {}))
    assert ran == [] and not (tmp_path / "tidecast.lock").exists()


MODEL_LIBRARIES = ("statsforecast", "mlforecast", "lightgbm", "sklearn", "torch", "hierarchicalforecast", "optuna", "mlflow")


def test_status_computes_keys_without_importing_a_model_library(tmp_path: Path) -> None:
    """`tidecast status` on a project with every kind of candidate (and a plugin module) computes
    every key, deps included, and imports none of the model libraries nor the plugin."""
    from tests.conftest import make_project

    models = """\
  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}
  - {name: lightgbm, kind: lightgbm, params: {n_estimators: 30}}
  - {name: ets, kind: autoets, params: {season_length: 1d}}
  - {name: mlp, kind: mlp}
  - {name: ridge, kind: sklearn, params: {estimator: "sklearn.linear_model:Ridge"}}
  - {name: median, kind: "my_models:build", params: {season_length: 1d}}
"""
    project = make_project(tmp_path / "p", days=20, models=models)
    examples = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "my_models.py"
    (project / "my_models.py").write_text(examples.read_text())
    code = textwrap.dedent(
        f"""
        import sys
        from tidecast.cli import app
        app(["status"], standalone_mode=False)
        print("IMPORTED", sorted(m for m in sys.modules if m.split(".")[0] in {MODEL_LIBRARIES!r} or m == "my_models"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    assert "IMPORTED []" in out.stdout, out.stdout
    lock = LockFile(project / "tidecast.lock")
    assert lock.records == {}  # status writes nothing
    assert "│ backtest │ missing" in out.stdout
