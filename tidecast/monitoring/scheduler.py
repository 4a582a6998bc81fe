"""``tidecast schedule``: the training and monitoring pipelines on cron expressions, in one long-running process.

``schedule.train`` and ``schedule.monitor`` in the spec are cron expressions (``minute hour
day month weekday``, weekday 0 or 7 = Sunday as in crontab; a sixth, leading *seconds* field is
accepted for tests), read in ``schedule.timezone``. The process (APScheduler):

* runs one job at a time (a single worker; ``max_instances=1``) and takes the project lock
  (:class:`~tidecast.pipeline.lock.ProjectLock`) for each job, waiting for a manual
  ``tidecast run`` that holds it, so nothing overlaps, in this process or across processes;
* starts a job that is late by at most ``schedule.misfire_grace`` seconds (a busy worker, a
  suspended machine); a later one is recorded as ``missed``, and missed runs are coalesced;
* appends every job to ``.tidecast/schedule-history.jsonl`` (job, scheduled, started,
  finished, status ``ok|failed|missed|skipped``, verdict or error);
* on SIGTERM or SIGINT stops scheduling, waits for the running job to finish, and exits 0
  (a second signal exits at once).

:func:`cron_lines` and :func:`systemd_units` print the equivalent crontab lines and systemd
``.service``/``.timer`` pairs, for running the same jobs without a resident process.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidecast.cron import FIELD_HELP as _FIELD_HELP
from tidecast.cron import CronSpec, expand_field, parse_cron
from tidecast.errors import LockedError, SpecError
from tidecast.flows import training_pipeline
from tidecast.monitoring.run import monitor
from tidecast.pipeline import ProjectLock
from tidecast.pipeline import run as run_pipeline
from tidecast.serving.history import append_history, read_lines
from tidecast.spec import load_spec
from tidecast.tracking.step import read_registration
from tidecast.training import preflight

HISTORY_FILENAME = "schedule-history.jsonl"
JOBS = ("train", "monitor")
Job = Callable[[], str]

_APS_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def _check_timezone(timezone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError(f"schedule.timezone: unknown time zone {timezone!r} (use e.g. 'UTC' or 'Europe/Paris')") from None


def make_trigger(expr: str, timezone: str, *, field: str = "schedule") -> Any:
    """An APScheduler CronTrigger for a cron expression with crontab's weekday numbers (0/7 = Sunday)."""
    from apscheduler.triggers.cron import CronTrigger

    cron = parse_cron(expr, field=field)
    _check_timezone(timezone)
    kwargs: dict[str, Any] = {}
    for name, text in cron.fields.items():
        if name == "day_of_week":
            days = cron.values[name]
            kwargs[name] = "*" if days is None else ",".join(_APS_DAYS[d] for d in days)
        else:
            kwargs[name] = "*" if text == "?" else text
    if "second" not in kwargs:
        kwargs["second"] = "0"
    try:
        trigger = CronTrigger(timezone=timezone, **kwargs)
    except ValueError as exc:
        raise SpecError(f"{field}: {expr!r} is not a cron expression: {exc} ({_FIELD_HELP})") from None
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise SpecError(f"{field}: {expr!r} never fires")
    return trigger


def configured_jobs(spec: Any) -> dict[str, str]:
    """``{job: cron expression}`` of the spec's schedule section (train, monitor), each checked."""
    jobs = {name: getattr(spec.schedule, name) for name in JOBS if getattr(spec.schedule, name)}
    _check_timezone(spec.schedule.timezone)
    for name, expr in jobs.items():
        make_trigger(expr, spec.schedule.timezone, field=f"schedule.{name}")
    return jobs


# ------------------------------------------------------------------------ crontab and systemd
def _command(spec: Any, job: str, executable: str | None = None) -> list[str]:
    script = Path(sys.executable).with_name("tidecast")
    exe = [executable] if executable else [str(script)] if script.exists() else [sys.executable, "-m", "tidecast.cli"]
    spec_file = str(Path(spec.source_file).resolve()) if spec.source_file else str(Path(spec.root).resolve() / "tidecast.yaml")
    sub = "run" if job == "train" else "monitor"
    return [*exe, sub, "--spec", spec_file]


def cron_lines(spec: Any, *, executable: str | None = None) -> str:
    """Crontab lines running the spec's scheduled jobs (``crontab -e``); uses ``CRON_TZ`` for the time zone."""
    jobs = configured_jobs(spec)
    root = Path(spec.root).resolve()
    log = root / ".tidecast" / "cron.log"
    out = [f"# tidecast jobs of project '{spec.project}' (from {spec.source_file or root / 'tidecast.yaml'})"]
    if not jobs:
        out.append("# (no schedule.train or schedule.monitor in the spec)")
        return "\n".join(out) + "\n"
    out.append(f"CRON_TZ={spec.schedule.timezone}")
    for job, expr in jobs.items():
        cron = parse_cron(expr, field=f"schedule.{job}")
        command = f"cd {shlex.quote(str(root))} && {shlex.join(_command(spec, job, executable))} >> {shlex.quote(str(log))} 2>&1"
        if cron.has_seconds:
            out.append(f"# {job}: '{expr}' has a seconds field, which crontab cannot express; the minute-level line:")
            fields = " ".join(cron.fields[n] for n in ("minute", "hour", "day", "month", "day_of_week"))
            out.append(f"# {fields} {command}")
            continue
        note = _or_note(cron)
        if note:
            out.append(f"# {job}: {note}")
        out.append(f"{expr}  {command}")
    return "\n".join(out) + "\n"


def _or_note(cron: CronSpec) -> str | None:
    if cron.values["day"] is not None and cron.values["day_of_week"] is not None:
        return "day of month and weekday are both set: crontab runs on either, tidecast schedule and systemd on both"
    return None


def _compact(values: list[int] | None, lo: int, hi: int, width: int = 2) -> str:
    """systemd calendar syntax of a value list: '*', 'a/step', 'a..b' ranges and commas."""
    if values is None or values == list(range(lo, hi + 1)):
        return "*"
    if len(values) > 2:
        step = values[1] - values[0]
        if step > 1 and values == list(range(values[0], hi + 1, step)):
            return f"{values[0]:0{width}d}/{step}"
    runs: list[str] = []
    start = prev = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        runs.append(f"{start:0{width}d}" if start == prev else f"{start:0{width}d}..{prev:0{width}d}")
        if value is not None:
            start = prev = value
    return ",".join(runs)


def on_calendar(expr: str, timezone: str, *, field: str = "schedule") -> str:
    """The systemd ``OnCalendar=`` value of a cron expression, e.g. ``'0 2 * * 1-5'`` →
    ``'Mon..Fri *-*-* 02:00:00 Europe/Paris'``."""
    cron = parse_cron(expr, field=field)
    v = cron.values
    days = v["day_of_week"]
    dow = ""
    if days is not None:
        runs = _compact(days, 0, 6, width=1).split(",")
        names = []
        for run in runs:
            a, _, b = run.partition("..")
            names.append(_SYSTEMD_DAYS[int(a)] + (f"..{_SYSTEMD_DAYS[int(b)]}" if b else ""))
        dow = ",".join(names) + " "
    date = f"*-{_compact(v['month'], 1, 12)}-{_compact(v['day'], 1, 31)}"
    seconds = _compact(v.get("second"), 0, 59) if cron.has_seconds else "00"
    clock = f"{_compact(v['hour'], 0, 23)}:{_compact(v['minute'], 0, 59)}:{seconds}"
    return f"{dow}{date} {clock} {timezone}"


def systemd_units(spec: Any, *, executable: str | None = None) -> dict[str, str]:
    """``{file name: content}``: a oneshot ``.service`` and its ``.timer`` per scheduled job."""
    jobs = configured_jobs(spec)
    root = Path(spec.root).resolve()
    out: dict[str, str] = {}
    for job, expr in jobs.items():
        unit = f"tidecast-{spec.project}-{job}"
        what = "training pipeline" if job == "train" else "monitoring pipeline"
        out[f"{unit}.service"] = (
            "[Unit]\n"
            f"Description=tidecast {what} of {spec.project}\n"
            "After=network-online.target\n\n"
            "[Service]\n"
            "Type=oneshot\n"
            f"WorkingDirectory={root}\n"
            f"ExecStart={shlex.join(_command(spec, job, executable))}\n"
        )
        cron = parse_cron(expr, field=f"schedule.{job}")
        note = _or_note(cron)
        out[f"{unit}.timer"] = (
            "[Unit]\n"
            f"Description=Run {unit}.service on '{expr}' ({spec.schedule.timezone})\n\n"
            "[Timer]\n"
            + (f"# {note}\n" if note else "")
            + f"OnCalendar={on_calendar(expr, spec.schedule.timezone, field=f'schedule.{job}')}\n"
            "Persistent=true\n"
            "AccuracySec=1s\n\n"
            "[Install]\n"
            "WantedBy=timers.target\n"
        )
    return out


# -------------------------------------------------------------------------------- the jobs
def train_job(spec_path: str | os.PathLike[str] | None, env: str | None = None) -> Job:
    """The training pipeline as a job (the spec is re-read each time); returns the registry verdict."""

    def job() -> str:
        spec = load_spec(spec_path, env=env)
        preflight(spec)
        result = run_pipeline(training_pipeline(), spec)
        if "track" not in result.executed:
            return "up to date: no step had to run"
        registration = (result.outputs["track"] or {}).get("registration") or {}
        if not registration:
            return "trained (not registered)"
        # read back from the store now, not from what the track step remembers
        now = read_registration(spec, str(registration.get("model_name")), str(registration.get("version")))
        if not now.exists:
            return f"trained: v{now.version} is no longer in the registry"
        if "champion" in now.aliases:
            return f"trained: v{now.version} promoted to champion"
        if "challenger" in now.aliases:
            return f"trained: v{now.version} challenger ({now.gate_reason})"
        return f"trained: v{now.version} (no alias now; champion: {'v' + now.champion if now.champion else 'none'})"

    return job


def monitor_job(spec_path: str | os.PathLike[str] | None, env: str | None = None) -> Job:
    """The monitoring pipeline as a job (the spec is re-read each time); returns its verdict."""

    def job() -> str:
        return monitor(load_spec(spec_path, env=env)).verdict

    return job


def default_jobs(spec: Any, spec_path: str | os.PathLike[str] | None, env: str | None = None) -> dict[str, tuple[str, Job]]:
    """``{name: (cron expression, job)}`` for every job the spec schedules."""
    makers = {"train": train_job, "monitor": monitor_job}
    return {name: (expr, makers[name](spec_path, env)) for name, expr in configured_jobs(spec).items()}


# ----------------------------------------------------------------------------- the scheduler
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Scheduler:
    """Runs ``jobs`` (``{name: (cron expression, callable returning a verdict)}``) until stopped.

    >>> Scheduler(spec, default_jobs(spec, "tidecast.yaml")).run_forever()   # doctest: +SKIP
    """

    def __init__(
        self,
        spec: Any,
        jobs: dict[str, tuple[str, Job]],
        *,
        history: str | os.PathLike[str] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        lock_poll_s: float = 0.2,
    ) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        if not jobs:
            raise SpecError(
                "schedule: nothing to schedule; set schedule.train and/or schedule.monitor (e.g. '0 2 * * *')"
            )
        self.spec = spec
        self.timezone = spec.schedule.timezone
        _check_timezone(self.timezone)
        self.history_path = Path(history) if history else Path(spec.state_dir) / HISTORY_FILENAME
        self.on_event = on_event
        self.lock_poll_s = lock_poll_s
        self.stopping = threading.Event()
        self._write_lock = threading.Lock()
        self._running: str | None = None
        self.scheduler = BackgroundScheduler(
            timezone=self.timezone,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(spec.schedule.misfire_grace)},
        )
        self.triggers = {}
        for name, (expr, fn) in jobs.items():
            trigger = make_trigger(expr, self.timezone, field=f"schedule.{name}")
            self.triggers[name] = trigger
            self.scheduler.add_job(self._wrap(name, fn), trigger, id=name, name=name)

    # -- history ------------------------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        entry = {"pid": os.getpid(), **entry}
        with self._write_lock:
            append_history(self.history_path, entry)
        if self.on_event is not None:
            with contextlib.suppress(Exception):  # a front end's printing must not break the scheduler
                self.on_event(entry)

    # -- running ------------------------------------------------------------------------------
    def _acquire(self, name: str) -> Any:
        """The project lock, waiting (interruptibly) up to misfire_grace for another tidecast run."""
        deadline = time.monotonic() + float(self.spec.schedule.misfire_grace)
        while True:
            try:
                return ProjectLock(self.spec.state_dir, timeout=0).acquire()
            except LockedError as exc:
                if self.stopping.is_set() or time.monotonic() >= deadline:
                    raise LockedError(f"{exc.message} (job '{name}' gave up waiting)") from None
                time.sleep(self.lock_poll_s)

    def _wrap(self, name: str, fn: Job) -> Callable[[], None]:
        def run_job() -> None:
            started = _now()
            self._running = name
            entry: dict[str, Any] = {"job": name, "started": started}
            try:
                if self.stopping.is_set():
                    entry.update(status="skipped", verdict="scheduler stopping")
                    return
                try:
                    lock = self._acquire(name)
                except LockedError as exc:
                    entry.update(status="skipped", verdict=str(exc))
                    return
                try:
                    verdict = fn()
                    entry.update(status="ok", verdict=str(verdict))
                except Exception as exc:  # a failing job is recorded; the scheduler goes on
                    entry.update(status="failed", verdict=None, error=f"{type(exc).__name__}: {exc}")
                finally:
                    lock.release()
            finally:
                entry["finished"] = _now()
                self._running = None
                self.record(entry)

        run_job.__name__ = f"tidecast_{name}"
        return run_job

    def _listen(self, event: Any) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

        when = getattr(event, "scheduled_run_time", None) or (getattr(event, "scheduled_run_times", None) or [None])[-1]
        if event.code == EVENT_JOB_MISSED:
            self.record({"job": event.job_id, "scheduled": str(when), "status": "missed",
                         "verdict": f"more than {self.spec.schedule.misfire_grace} s late (schedule.misfire_grace)"})
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self.record({"job": event.job_id, "scheduled": str(when), "status": "skipped",
                         "verdict": "the previous run of this job is still running"})

    def next_runs(self) -> dict[str, str]:
        out = {}
        for job in self.scheduler.get_jobs():
            when = getattr(job, "next_run_time", None)
            if when is None:
                when = self.triggers[job.id].get_next_fire_time(None, datetime.now(UTC))
            out[job.id] = str(when)
        return out

    def start(self) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

        self.scheduler.add_listener(self._listen, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self.scheduler.start()

    def stop(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait``, let the running job finish first."""
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)

    def run_forever(self, *, handle_signals: bool = True, until: float | None = None) -> None:
        """Start, then block until SIGTERM/SIGINT (or ``until`` seconds), and stop cleanly.

        A second signal while the running job is being waited for exits the process at once (status 143).
        """
        received: list[int] = []

        def handler(signum: int, _frame: Any) -> None:
            if received:
                os._exit(128 + signum)
            received.append(signum)
            self.stopping.set()

        previous = {}
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, handler)
        try:
            self.start()
            deadline = None if until is None else time.monotonic() + until
            while not self.stopping.wait(0.2):
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            self.stop(wait=True)
            for sig, old in previous.items():
                signal.signal(sig, old)

    def run_once(self) -> list[dict[str, Any]]:
        """Run every job now, one after the other (``tidecast schedule --once``); returns their records."""
        entries: list[dict[str, Any]] = []
        original = self.on_event

        def collect(entry: dict[str, Any]) -> None:
            entries.append(entry)
            if original is not None:
                original(entry)

        self.on_event = collect
        try:
            for job in list(self.scheduler.get_jobs()):
                job.func()
        finally:
            self.on_event = original
        return entries


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The schedule history (oldest first); unreadable lines are skipped."""
    return read_lines(path)


__all__ = [
    "HISTORY_FILENAME",
    "CronSpec",
    "Scheduler",
    "configured_jobs",
    "cron_lines",
    "default_jobs",
    "expand_field",
    "make_trigger",
    "monitor_job",
    "on_calendar",
    "parse_cron",
    "read_history",
    "systemd_units",
    "train_job",
]
