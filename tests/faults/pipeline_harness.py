"""The harness of the pipeline fault tests: a tiny real project, ``tidecast run`` subprocesses that are
killed (at a named fault point, see :mod:`tidecast.faults`, or after a delay), and the checks that
every kill must leave the project in a state tidecast can tell truthfully and recover from.

Nothing is mocked: the project has hourly data written by :mod:`tidecast.datasets`, the runs are the
real CLI in a subprocess (``python -m tidecast.cli run``), the store is MLflow on SQLite with its
artifacts on disk. ``tidecast status`` and the re-run go through the CLI too, in this process (typer's
runner), which spares a Python start-up per call.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tidecast.faults import ENV_ACTION, ENV_POINT, ENV_TRACE
from tidecast.pipeline.cache import META, TMP_PREFIX, TRASH_PREFIX, ArtifactCache
from tidecast.pipeline.lock import LOCK_FILENAME, LockFile
from tidecast.spec import Spec, load_spec

#: The training pipeline's steps, in run order.
STEPS = ("ingest", "clean", "features", "backtest", "select", "track", "explain", "report")
MODELS = """\
  - {name: naive, kind: naive}
  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}
"""
# max_metric: a registry-only edit (see FaultProject.edit) changes it; it never blocks the gate
EXTRA = "registry: {gate: {max_metric: 1000.0}}\nseed: 0\n"
DAYS = 14  # 336 hourly rows
CLEAN_ENV_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV", ENV_POINT, ENV_TRACE, ENV_ACTION)


def migrated_store(folder: Path) -> Path:
    """An empty, fully migrated MLflow SQLite file (migrating one takes seconds; projects copy it)."""
    from mlflow import MlflowClient

    db = folder / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)
    return db


@dataclass
class Outcome:
    """How a ``tidecast`` subprocess ended."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    trace: list[str]
    """The fault points it reached, as ``name:count`` (the last one is where a point kill struck)."""
    seconds: float
    pid: int
    kill_landed: bool = False
    """A ``kill_after`` SIGKILL was sent while the process still ran, and it died of it."""

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def __str__(self) -> str:
        tail = "\n".join((self.stdout + self.stderr).strip().splitlines()[-25:])
        return f"tidecast {' '.join(self.args)} -> {self.returncode} after {self.seconds:.1f} s\n{tail}"


@dataclass
class Snapshot:
    """What the registry held before a scenario (to tell what a killed run may and may not have changed)."""

    champion: str | None
    versions: set[str] = field(default_factory=set)


class FaultProject:
    """A tiny project (two cheap models, 2 folds, 336 hourly rows) and the checks of the fault tests."""

    def __init__(self, root: Path, *, template: Path | None = None, days: int = DAYS, extra: str = "") -> None:
        """``template``: a migrated MLflow SQLite file to start the store from; ``extra``: more spec text
        (a ``tracking:`` section moves the store, see :attr:`db`)."""
        from tests.conftest import make_project

        self.root = make_project(root, days=days, models=MODELS, extra=EXTRA + extra)
        self.edits = 0
        if template is not None:
            self.db.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(template, self.db)
        self.logs = root.parent / f"{root.name}-logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------------------- the project
    @property
    def spec(self) -> Spec:
        return load_spec(self.root)

    @property
    def state(self) -> Path:
        return self.root / ".tidecast"

    @property
    def cache(self) -> ArtifactCache:
        return ArtifactCache(self.state / "cache")

    @property
    def db(self) -> Path:
        from tidecast.tracking.store import tracking_uri

        uri = tracking_uri(self.spec)
        assert uri.startswith("sqlite:///"), uri
        return Path(uri.removeprefix("sqlite:///"))

    def edit(self, kind: str) -> None:
        """Change the project so that the next run has work to do, with keys never seen before:
        ``data`` (new readings: every step), ``seed`` (backtest onwards) or ``registry`` (track and report)."""
        self.edits += 1
        spec_file = self.root / "tidecast.yaml"
        data = yaml.safe_load(spec_file.read_text())
        if kind == "data":
            from tidecast.datasets import make_power

            frame = make_power(days=DAYS, seed=100 + self.edits, freq="1h")
            frame.to_csv(self.root / "data" / "power.csv", index=False)
        elif kind == "seed":
            data["seed"] = self.edits
        elif kind == "registry":
            data["registry"]["gate"]["max_metric"] = 1000.0 + self.edits
        else:
            raise ValueError(kind)
        spec_file.write_text(yaml.safe_dump(data, sort_keys=False))

    def plans(self) -> dict[str, Any]:
        from tidecast.flows import training_pipeline
        from tidecast.pipeline import status

        return {p.name: p for p in status(training_pipeline(), self.spec)}

    # ------------------------------------------------------------------------------ the CLI
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV_VARS}
        env.update(extra)
        return env

    def start(
        self, *args: str, point: str | None = None, stop: bool = False, name: str = "run"
    ) -> tuple[subprocess.Popen[bytes], Any]:
        """Start ``tidecast ARGS --spec ROOT`` (armed to die, or with ``stop`` to stop, at ``point``);
        returns (process, its log files)."""
        stamp = f"{name}-{time.monotonic_ns()}"
        trace = self.logs / f"{stamp}.trace"
        out, err = self.logs / f"{stamp}.out", self.logs / f"{stamp}.err"
        extra = {ENV_TRACE: str(trace)}
        if point:
            extra[ENV_POINT] = point
        if stop:
            extra[ENV_ACTION] = "stop"
        command = [sys.executable, "-m", "tidecast.cli", *args, "--spec", str(self.root)]
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(command, cwd=self.root, env=self.env(**extra), stdout=o, stderr=e)
        return proc, (list(args), trace, out, err, time.perf_counter())

    @staticmethod
    def finish(
        proc: subprocess.Popen[bytes], files: Any, *, kill_after: float | None = None, timeout: float = 300
    ) -> Outcome:
        """Wait for a started process (SIGKILL it after ``kill_after`` seconds of its life, if given)."""
        args, trace, out, err, started = files
        sent = False
        if kill_after is not None:
            try:
                proc.wait(timeout=max(0.0, kill_after - (time.perf_counter() - started)))
            except subprocess.TimeoutExpired:
                sent = proc.poll() is None
                proc.send_signal(signal.SIGKILL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        seconds = time.perf_counter() - started
        lines = trace.read_text().split() if trace.exists() else []
        return Outcome(
            args,
            proc.returncode,
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
            lines,
            seconds,
            proc.pid,
            kill_landed=sent and proc.returncode == -signal.SIGKILL,
        )

    @staticmethod
    def wait_stopped(proc: subprocess.Popen[bytes], files: Any, point: str, timeout: float = 300) -> None:
        """Wait until a process started with ``stop=True`` has stopped itself at ``point``."""
        trace = files[1]
        name, _, count = point.partition(":")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log = files[3].read_text()
                raise AssertionError(f"the run ended ({proc.returncode}) before stopping at {point}: {log}")
            try:
                state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                state = ""
            lines = trace.read_text().split() if trace.exists() else []
            if state == "T" and lines and lines[-1] == f"{name}:{count or 1}":
                return
            time.sleep(0.1)
        raise AssertionError(f"the run did not stop at {point} within {timeout:.0f} s")

    def run_process(self, *args: str, point: str | None = None, kill_after: float | None = None) -> Outcome:
        proc, files = self.start(*args, point=point)
        return self.finish(proc, files, kill_after=kill_after)

    def cli(self, *args: str) -> Any:
        """``tidecast ARGS --spec ROOT`` in this process (typer's runner): the result has exit_code and output."""
        from typer.testing import CliRunner

        from tidecast.cli import app

        saved = {k: os.environ.pop(k) for k in CLEAN_ENV_VARS if k in os.environ}
        try:
            return CliRunner().invoke(app, [*args, "--spec", str(self.root)], env={"COLUMNS": "200"})
        finally:
            os.environ.update(saved)

    def rerun(self) -> None:
        result = self.cli("run")
        assert result.exit_code == 0, f"the re-run failed ({result.exit_code}): {result.output}\n{result.exception!r}"

    def cli_status(self) -> dict[str, str]:
        """``tidecast status``: step -> fresh/stale/missing, as the command prints it."""
        result = self.cli("status")
        assert result.exit_code == 0, f"tidecast status failed: {result.output}\n{result.exception!r}"
        found: dict[str, str] = {}
        for line in result.output.splitlines():
            cells = [c.strip() for c in line.split("│")]
            if len(cells) > 3 and cells[1] in STEPS:
                found[cells[1]] = cells[2]
        assert set(found) == set(STEPS), f"tidecast status did not list every step:\n{result.output}"
        return found

    # ------------------------------------------------------------------------------ the checks
    def check_status(self, expected_not_fresh: set[str] | None = None) -> dict[str, str]:
        """``tidecast status`` exits 0 and tells the truth: a step is fresh exactly when the cache holds a
        complete entry for its key; with ``expected_not_fresh``, exactly those steps are not fresh."""
        shown = self.cli_status()
        plans = self.plans()
        cache = self.cache
        for name in STEPS:
            in_cache = cache.has(name, plans[name].key)
            assert (shown[name] == "fresh") == in_cache, (
                f"status says {name} is {shown[name]} but the cache {'has' if in_cache else 'lacks'} its entry"
            )
        if expected_not_fresh is not None:
            not_fresh = {n for n, s in shown.items() if s != "fresh"}
            assert not_fresh == expected_not_fresh, f"status: {shown}; expected not fresh: {sorted(expected_not_fresh)}"
        return shown

    def check_cache(self, *, dead_pids: Iterable[int] = (), load: Iterable[tuple[str, str]] = ()) -> None:
        """No partial artifact: every entry has its meta.json and every file it lists, at its size; temporary
        folders only of the processes in ``dead_pids``; the entries of ``load`` read back."""
        allowed = {str(p) for p in dead_pids}
        root = self.cache.root
        for step_dir in sorted(root.iterdir()) if root.is_dir() else []:
            assert step_dir.is_dir(), f"stray file in the cache: {step_dir}"
            for entry in sorted(step_dir.iterdir()):
                if entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                    pid = entry.name.split("-")[-2]
                    assert pid in allowed, f"leftover temporary cache folder {entry} (pid {pid})"
                    continue
                meta_file = entry / META
                assert meta_file.is_file(), f"cache entry without meta.json: {entry}"
                meta = json.loads(meta_file.read_text())
                assert meta["step"] == step_dir.name and meta["key"] == entry.name, meta
                for rel, size in meta["sizes"].items():
                    file = entry / rel
                    assert file.is_file() and file.stat().st_size == size, f"cache entry {entry}: {rel} is partial"
        for step, key in load:
            self.cache.load(step, key)

    def check_lock(self, *, complete: bool = False) -> LockFile:
        """``tidecast.lock`` parses and every record points at a complete cache entry of its key (with
        ``complete``, it records every step with the key the plan computes now); no temporary lock file is left."""
        lock = LockFile(self.root / LOCK_FILENAME)
        cache = self.cache
        for name, record in lock.records.items():
            assert cache.has(name, record.key), f"tidecast.lock records {name} {record.key}, which the cache lacks"
            assert record.outputs and (self.root / record.outputs).resolve() == cache.path(name, record.key).resolve()
        if complete:
            plans = self.plans()
            assert {n: r.key for n, r in lock.records.items()} == {n: p.key for n, p in plans.items()}
            leftovers = sorted(p.name for p in self.root.glob(f".{LOCK_FILENAME}.*"))
            assert not leftovers, f"temporary lock files left: {leftovers}"
        return lock

    def client(self) -> Any:
        from mlflow import MlflowClient

        uri = f"sqlite:///{self.db}"
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def snapshot(self) -> Snapshot:
        from tidecast.tracking.registry import CHAMPION, alias_version

        client = self.client()
        name = self.spec.model_name
        champion = alias_version(client, name, CHAMPION) if self._has_model(client, name) else None
        versions = {str(v.version) for v in client.search_model_versions(f"name='{name}'")}
        return Snapshot(str(champion.version) if champion is not None else None, versions)

    @staticmethod
    def _has_model(client: Any, name: str) -> bool:
        return any(m.name == name for m in client.search_registered_models())

    def check_db(self) -> None:
        with sqlite3.connect(self.db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def check_registry(
        self, *, load_champion: bool = True, before: Snapshot | None = None, by_path: bool = False
    ) -> str | None:
        """Every registered version is READY and its artifacts (MLmodel, the pickled forecaster, the card) are
        on disk; ``champion`` names an existing version, which loads as a pyfunc (through ``models:/NAME@champion``,
        or with ``by_path`` from its folder, which writes nothing). Returns the champion."""
        import mlflow

        from tidecast.tracking.registry import CHALLENGER, CHAMPION, PREVIOUS, alias_version

        self.check_db()
        client = self.client()
        name = self.spec.model_name
        if not self._has_model(client, name):
            assert before is None or before.champion is None
            return None
        versions = {str(v.version): v for v in client.search_model_versions(f"name='{name}'")}
        folders: dict[str, Path] = {}
        for number, mv in versions.items():
            assert str(mv.status).endswith("READY"), f"v{number} is {mv.status}"
            uri = client.get_model_version_download_uri(name, number)
            folder = folders[number] = Path(uri.removeprefix("file://"))
            for rel in ("MLmodel", "artifacts/forecaster.pkl", "artifacts/model_card.json"):
                assert (folder / rel).is_file(), f"{name} v{number} ({mv.source}): {rel} missing under {folder}"
        for alias in (CHAMPION, CHALLENGER, PREVIOUS):
            mv = alias_version(client, name, alias)
            assert mv is None or str(mv.version) in versions, f"alias {alias} points at a missing version"
        champion = alias_version(client, name, CHAMPION)
        if before is not None and before.champion is not None:
            assert champion is not None, "the champion alias was lost"
        if champion is None:
            return None
        if load_champion:
            from tidecast.tracking.store import active_uris

            with active_uris(self.spec):
                where = str(folders[str(champion.version)]) if by_path else f"models:/{name}@{CHAMPION}"
                model = mlflow.pyfunc.load_model(where)
            assert model.metadata is not None
        return str(champion.version)

    def runs(self) -> list[Any]:
        client = self.client()
        exp = client.get_experiment_by_name(self.spec.project)
        if exp is None:
            return []
        return client.search_runs([exp.experiment_id], max_results=5000)

    def check_runs(self, *, dead_pids: Sequence[int] = ()) -> None:
        """No run is RUNNING but those of the processes in ``dead_pids`` (killed, not yet reaped); every
        FINISHED training run is complete (metrics, leaderboard, lineage, plots, registered version); every
        FAILED one says why."""
        allowed = {str(p) for p in dead_pids}
        client = self.client()
        for run in self.runs():
            tags, info = run.data.tags, run.info
            if info.status == "RUNNING":
                assert tags.get("tidecast.pid") in allowed, f"run {info.run_id} ({info.run_name}) is left RUNNING"
            elif info.status == "FAILED":
                assert tags.get("tidecast.error"), f"FAILED run {info.run_id} does not say why"
            elif info.status == "FINISHED" and tags.get("tidecast.kind") == "training":
                assert "backtest_mase" in run.data.metrics, f"training run {info.run_id} has no metrics"
                assert tags.get("tidecast.registry.version"), f"training run {info.run_id} has no registered version"
                files = {f.path for f in client.list_artifacts(info.run_id)}
                assert {"leaderboard.csv", "lineage.json", "spec.yaml", "plots"} <= files, (info.run_id, files)

    def check_agreement(self, before: Snapshot | None = None) -> None:
        """The lock file, the cache and the registry agree: the cached ``track`` output (the one tidecast.lock
        records) names a FINISHED run and a registered version holding the alias it reports."""
        from tidecast.tracking.registry import CHALLENGER, CHAMPION, alias_version

        lock = LockFile(self.root / LOCK_FILENAME)
        track = self.cache.load("track", lock.records["track"].key)
        registration = track["registration"]
        client = self.client()
        run = client.get_run(track["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags.get("tidecast.registry.version") == str(registration["version"])
        alias = registration["alias"]
        holder = alias_version(client, registration["model_name"], alias)
        assert holder is not None and str(holder.version) == str(registration["version"]), (alias, registration)
        assert alias in (CHAMPION, CHALLENGER)
        if before is not None and before.champion is not None and alias == CHALLENGER:
            champion = alias_version(client, registration["model_name"], CHAMPION)
            assert champion is not None and str(champion.version) == before.champion, "a challenger moved the champion"

    def check_recovered(self, *, before: Snapshot | None = None) -> None:
        """Everything a completed re-run must leave: all steps fresh, nothing temporary, lock = cache = registry."""
        self.check_status(expected_not_fresh=set())
        plans = self.plans()
        self.check_cache(load=[(n, plans[n].key) for n in STEPS])
        self.check_lock(complete=True)
        self.check_registry(before=before)
        self.check_runs()
        self.check_agreement(before)


def step_of(point: str, will_run: Sequence[str]) -> tuple[str, bool]:
    """The step a fault point interrupts, and whether that step's cache entry is committed by then.

    ``lock.before-replace:n`` interrupts the n-th lock write: the record of the n-th executed step,
    whose cache entry is already in place."""
    name, _, count = point.partition(":")
    n = int(count or 1)
    parts = name.split(".")
    if parts[0] == "step":
        return parts[1], parts[2] in ("committed", "end")
    if parts[0] == "cache":
        return parts[1], False
    if name == "lock.before-replace":
        return will_run[n - 1], True
    if parts[0] in ("track", "registry", "pyfunc"):
        return "track", False
    if parts[0] == "report":
        return "report", False
    raise ValueError(point)


def expected_not_fresh(
    point: str, will_run: Sequence[str], trace: Sequence[str] = (), in_cache: Callable[[str], bool] | None = None
) -> set[str]:
    """The steps ``tidecast status`` must show as not fresh after a kill at ``point``: the interrupted step
    unless committed, and every later step that had to run.

    Steps run side by side (track and explain): the run's fault ``trace`` says what the others did.
    One that passed its ``step.<name>.committed`` point is fresh, whatever its place in the plan; one
    that started and did not is not, unless it passed ``cache.<name>.before-rename`` (its own thread
    renames the entry, the coordinating thread then reaches ``committed``): then ``in_cache(name)``
    decides."""
    step, committed = step_of(point, will_run)
    index = STEPS.index(step)
    expected = {s for s in will_run if STEPS.index(s) > index or (s == step and not committed)}
    passed = {t.rpartition(":")[0] for t in trace}
    for other in will_run:
        if other == step:
            continue
        if f"step.{other}.committed" in passed:
            expected.discard(other)
        elif f"step.{other}.start" in passed:
            renamed = f"cache.{other}.before-rename" in passed and in_cache is not None and in_cache(other)
            (expected.discard if renamed else expected.add)(other)
    return expected
