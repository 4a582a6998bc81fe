"""The tracking store or its artifact folder turns full or read-only in the middle of ``tidecast run``.

Real file systems, no mocks: the artifact folder (``.tidecast/mlartifacts``) or the whole store (a
``tracking.uri`` on its own folder) is a small tmpfs. The run is started armed to stop itself at a
fault point (``TIDECAST_FAULT_ACTION=stop``); while it is stopped the tmpfs is filled up or made
read-only (a read-only bind mount over it); then the run continues. Expected: exit code 2 with one
clear ``error:`` line naming the cause, the champion alias and its version untouched and loadable,
no partial cache entry, no run left RUNNING by a process that could still end it, ``tidecast
status`` truthful; once the space is back, a re-run recovers everything.

Mounting a tmpfs needs root (CAP_SYS_ADMIN): elsewhere these tests skip, saying so, unless
``TIDECAST_REQUIRE_STORE_FAULTS=1`` (CI sets it in ``.ci/run``), which turns that skip into a failure:
a CI that cannot mount must go red, not silently pass without these tests.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.pipeline_harness import FaultProject, Outcome, Snapshot, migrated_store

pytestmark = pytest.mark.timeout(600)
REQUIRE = "TIDECAST_REQUIRE_STORE_FAULTS"
STORE_EXTRA = "tracking: {uri: 'sqlite:///store/mlflow.db'}\n"


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


def _can_mount(folder: Path) -> str | None:
    """None when a tmpfs can be mounted here, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (CAP_SYS_ADMIN)"
    probe = folder / "mount-probe"
    probe.mkdir()
    done = _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe))
    if done.returncode != 0:
        return f"cannot mount a tmpfs here: {done.stderr.strip()}"
    subprocess.run(["umount", str(probe)], check=True)
    probe.rmdir()
    return None


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    assert done.returncode == 0, done.stderr
    try:
        yield path
    finally:
        # a read-only bind left by a failed test, then the tmpfs (lazily: this process's MLflow keeps files open)
        for _ in range(3):
            tries = (["umount", str(path)], ["umount", "-l", str(path)])
            if all(subprocess.run(cmd, capture_output=True, check=False).returncode for cmd in tries):
                break


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler.bin"
    chunk = b"\0" * 65536
    try:
        # unbuffered: a write refused for lack of space leaves nothing behind for close() to flush again
        handle = open(filler, "wb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:  # already full (not even room for the file): nothing to add
        assert exc.errno == errno.ENOSPC, exc
        return filler
    with handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    for size in (4096, 512, 1):  # the last partial blocks
        with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as handle:
            while True:
                handle.write(b"\0" * size)
    return filler


def read_only(path: Path) -> None:
    """Make ``path`` read-only: a read-only bind mount of itself over it (files opened before, by this
    process's MLflow client for one, keep writing below it; anything opened after is refused)."""
    for args in (("--bind", str(path), str(path)), ("-o", "remount,ro,bind", str(path))):
        done = _mount(*args)
        assert done.returncode == 0, done.stderr


def writable(path: Path) -> None:
    """Undo :func:`read_only`."""
    done = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def mountable(tmp_path_factory: pytest.TempPathFactory) -> None:
    reason = _can_mount(tmp_path_factory.mktemp("probe"))
    if reason:
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(
                f"{reason}; {REQUIRE}=1 requires the failing-store tests to run (run as root, or with CAP_SYS_ADMIN)"
            )
        pytest.skip(reason)


@pytest.fixture(scope="module")
def env_clean() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV"):
            mp.delenv(var, raising=False)
        yield


@pytest.fixture(scope="module")
def artifacts_project(
    mountable: None, env_clean: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FaultProject, Path]]:
    """The default store layout, its artifact folder a 24 MiB tmpfs; trained once (champion v1)."""
    base = tmp_path_factory.mktemp("artifacts-fail")
    project = FaultProject(base / "proj", template=migrated_store(base))
    with tmpfs(project.state / "mlartifacts", "128m") as mount:
        project.rerun()
        project.check_recovered()
        yield project, mount


@pytest.fixture(scope="module")
def store_project(
    mountable: None, env_clean: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FaultProject, Path]]:
    """The store (SQLite file and artifacts beside it) on a 128 MiB tmpfs of its own (room for the runs of
    every test here, each with its report); trained once."""
    base = tmp_path_factory.mktemp("store-fail")
    template = migrated_store(base)
    root = base / "proj"
    with tmpfs(root / "store", "128m") as mount:
        project = FaultProject(root, template=template, extra=STORE_EXTRA)
        assert project.db.parent == mount
        project.rerun()
        project.check_recovered()
        yield project, mount


def _run_with(project: FaultProject, point: str, change: Callable[[], object]) -> Outcome:
    """``tidecast run`` stopped at ``point``, the world changed by ``change()``, then let go."""
    proc, files = project.start("run", point=point, stop=True)
    try:
        project.wait_stopped(proc, files, point)
        change()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
    return project.finish(proc, files)


def _check_clear_failure(outcome: Outcome, *causes: str) -> str:
    assert outcome.returncode == 2, str(outcome)
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr and "internal error" not in outcome.stderr, outcome.stderr
    line = errors[0]
    assert any(c.lower() in line.lower() for c in causes), line
    return line


def _check_untouched(
    project: FaultProject, outcome: Outcome, before: Snapshot, *, dead: bool, by_path: bool = False
) -> None:
    """After the failed run: the champion and versions as before, nothing partial, status truthful."""
    project.check_status({"track", "report"})
    project.check_cache()  # the process lived to clean up its pending entry: no .tmp- folder at all
    project.check_lock()
    project.check_runs(dead_pids=[outcome.pid] if dead else [])
    champion = project.check_registry(load_champion=True, before=before, by_path=by_path)
    after = project.snapshot()
    assert champion == before.champion and after.versions == before.versions, (before, after)


def test_storage_errors_become_one_clear_tracking_error(tmp_path: Path) -> None:
    """Without mounts (any user): a full, read-only or forbidden store maps to a TrackingError naming it."""
    import sqlalchemy

    from tests.conftest import make_project
    from tidecast.errors import TrackingError
    from tidecast.spec import load_spec
    from tidecast.tracking.store import storage_error

    spec = load_spec(make_project(tmp_path / "proj", days=3))
    full = storage_error(OSError(errno.ENOSPC, "No space left on device"), spec, doing="record run r1")
    assert isinstance(full, TrackingError)
    assert str(full).startswith("cannot record run r1: no space left on device at ")
    assert str(spec.state_dir / "mlartifacts") in str(full)
    named = storage_error(OSError(errno.EROFS, "Read-only file system", "/srv/a.txt"), spec)
    assert named is not None and "read-only file system at /srv/a.txt" in str(named)
    try:  # SQLite's "disk is full", wrapped twice as MLflow raises it
        try:
            raise sqlalchemy.exc.OperationalError("INSERT ...", {}, Exception("database or disk is full"))
        except sqlalchemy.exc.OperationalError as inner:
            raise RuntimeError("SQLAlchemy database error") from inner
    except RuntimeError as exc:
        db_full = storage_error(exc, spec)
    assert db_full is not None and "the disk is full" in str(db_full) and "mlflow.db" in str(db_full)
    assert storage_error(ValueError("bad value"), spec) is None
    assert storage_error(OSError(errno.ENOENT, "No such file"), spec) is None


def test_the_require_flag_turns_the_skip_into_a_failure() -> None:
    """Where no tmpfs can be mounted (here: pytest run as an unprivileged user), the failing-store tests
    skip, and fail under ``TIDECAST_REQUIRE_STORE_FAULTS=1``, so CI cannot pass without running them."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tidecast-require-") as folder:  # not under pytest's 0700 tree
        Path(folder).chmod(0o777)
        outcomes = _run_unprivileged(Path(folder))
    code, out = outcomes[""]
    assert code == 0 and "1 skipped" in out and "needs root" in out, out
    code, out = outcomes["1"]
    assert code == 1 and "1 error" in out, out
    assert f"{REQUIRE}=1 requires the failing-store tests to run" in out, out


def _run_unprivileged(tmp_path: Path) -> dict[str, tuple[int, str]]:
    """One failing-store test in a pytest child that cannot mount, without and with the flag."""
    import sys

    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        f"{Path(__file__)}::test_artifact_folder_full_mid_logging",
    ]
    if os.geteuid() == 0:  # drop root for the child (nobody), so that it cannot mount
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {k: v for k, v in os.environ.items() if k != REQUIRE}
    env.update(HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    root = Path(__file__).parents[2]
    outcomes = {}
    for flag in ("", "1"):
        basetemp = tmp_path / f"run{flag or 0}"
        done = subprocess.run(
            [*command, f"--basetemp={basetemp}"],
            env={**env, REQUIRE: flag},
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        outcomes[flag] = (done.returncode, done.stdout[-3000:] + done.stderr[-2000:])
    return outcomes


def test_artifact_folder_full_mid_logging(artifacts_project: tuple[FaultProject, Path]) -> None:
    project, mount = artifacts_project
    project.edit("registry")
    before = project.snapshot()
    filler: list[Path] = []
    outcome = _run_with(project, "track.run-created", lambda: filler.append(fill(mount)))
    line = _check_clear_failure(outcome, "no space left on device")
    assert str(mount) in line or "artifact" in line, line
    _check_untouched(project, outcome, before, dead=False)
    if filler and filler[0].exists():
        filler[0].unlink()
    project.rerun()
    project.check_recovered(before=before)


@pytest.mark.faults_full
def test_artifact_folder_read_only_mid_logging(artifacts_project: tuple[FaultProject, Path]) -> None:
    project, mount = artifacts_project
    project.edit("registry")
    before = project.snapshot()
    outcome = _run_with(project, "track.metrics-logged", lambda: read_only(mount))
    try:
        _check_clear_failure(outcome, "read-only file system")
        # loading by models:/ URI writes registered_model_meta into the model's folder (MLflow): load by path
        _check_untouched(project, outcome, before, dead=False, by_path=True)
    finally:
        writable(mount)
    project.rerun()
    project.check_recovered(before=before)


@pytest.mark.faults_full
def test_tracking_store_full_mid_logging(store_project: tuple[FaultProject, Path]) -> None:
    project, mount = store_project
    project.edit("registry")
    before = project.snapshot()
    filler: list[Path] = []
    outcome = _run_with(project, "track.run-created", lambda: filler.append(fill(mount)))
    try:
        _check_clear_failure(outcome, "full", "no space left on device")
        # with the store full the run cannot even be marked FAILED: the next run reaps it
        _check_untouched(project, outcome, before, dead=True)
    finally:
        if filler and filler[0].exists():
            filler[0].unlink()
    project.rerun()
    project.check_recovered(before=before)


def test_tracking_store_read_only_mid_run(store_project: tuple[FaultProject, Path]) -> None:
    project, mount = store_project
    project.edit("registry")
    before = project.snapshot()
    # the data steps are done; the store turns read-only before the track step opens it
    outcome = _run_with(project, "step.track.start", lambda: read_only(mount))
    try:
        _check_clear_failure(outcome, "not writable", "read-only", "readonly")
        _check_untouched(project, outcome, before, dead=False, by_path=True)
    finally:
        writable(mount)
    project.rerun()
    project.check_recovered(before=before)
