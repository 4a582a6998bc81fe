"""Cron expressions, their crontab/systemd equivalents, and the scheduler's run loop with stand-in jobs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tidecast.cron import expand_field, parse_cron
from tidecast.errors import SpecError
from tidecast.monitoring.scheduler import (
    Scheduler,
    cron_lines,
    make_trigger,
    on_calendar,
    read_history,
    systemd_units,
)
from tidecast.pipeline import ProjectLock
from tidecast.spec import parse_spec


def make_spec(tmp_path: Path, **schedule):
    data = {
        "project": "sched",
        "data": {"source": "x.csv", "frequency": "1h"},
        "forecast": {"input_window": 24, "horizon": 24},
        "models": [{"name": "naive", "kind": "naive"}],
        "schedule": schedule,
    }
    spec = parse_spec(data, root=tmp_path, source=str(tmp_path / "tidecast.yaml"))
    return spec


def test_cron_fields_follow_crontab() -> None:
    assert expand_field("*/15", "minute") == [0, 15, 30, 45]
    assert expand_field("1-5", "day_of_week") == [1, 2, 3, 4, 5]
    assert expand_field("5-7", "day_of_week") == [0, 5, 6]  # 7 is Sunday too
    assert expand_field("mon,WED", "day_of_week") == [1, 3]
    assert expand_field("jan,jun", "month") == [1, 6]
    assert expand_field("*", "hour") is None
    assert parse_cron("*/2 * * * * *").has_seconds


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 25 * * *", "25 is out of range for the hour field"),
        ("every day", "2 fields"),
        ("0 2 * * funday", "'funday' is not a value of the day of week field"),
        ("0 2 * * 5-1", "range '5-1' runs backwards"),
        ("*/0 * * * *", "step '0'"),
    ],
)
def test_bad_expressions_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(SpecError, match=r"^schedule\.train: .*" + message.replace("(", r"\(")):
        make_trigger(expr, "UTC", field="schedule.train")


def test_weekday_numbers_are_crontab_ones() -> None:
    # APScheduler 3 counts weekdays from Monday = 0; crontab from Sunday = 0: 1 must mean Monday
    from datetime import datetime
    from zoneinfo import ZoneInfo

    trigger = make_trigger("0 2 * * 1", "Europe/Paris")
    fire = trigger.get_next_fire_time(None, datetime(2024, 7, 3, tzinfo=ZoneInfo("Europe/Paris")))  # a Wednesday
    assert fire.strftime("%A %H:%M") == "Monday 02:00"
    with pytest.raises(SpecError, match=r"schedule\.timezone: unknown time zone 'Mars/Olympus'"):
        make_trigger("0 2 * * *", "Mars/Olympus")


def test_systemd_calendar_and_crontab_lines(tmp_path: Path) -> None:
    assert on_calendar("0 2 * * *", "Europe/Paris") == "*-*-* 02:00:00 Europe/Paris"
    assert on_calendar("*/15 6-18 * * 1-5", "UTC") == "Mon..Fri *-*-* 06..18:00/15:00 UTC"
    assert on_calendar("30 6 1 jan,jul 0", "UTC") == "Sun *-01,07-01 06:30:00 UTC"
    spec = make_spec(tmp_path, train="0 2 * * 0", monitor="0 1 * * *", timezone="Europe/Paris")
    text = cron_lines(spec, executable="/opt/tidecast/bin/tidecast")
    assert "CRON_TZ=Europe/Paris" in text
    assert f"0 2 * * 0  cd {tmp_path} && /opt/tidecast/bin/tidecast run --spec {tmp_path / 'tidecast.yaml'}" in text
    assert "0 1 * * *  cd" in text and "tidecast monitor --spec" in text
    units = systemd_units(spec, executable="/opt/tidecast/bin/tidecast")
    assert sorted(units) == [
        "tidecast-sched-monitor.service", "tidecast-sched-monitor.timer",
        "tidecast-sched-train.service", "tidecast-sched-train.timer",
    ]
    assert "OnCalendar=Sun *-*-* 02:00:00 Europe/Paris" in units["tidecast-sched-train.timer"]
    assert "Type=oneshot" in units["tidecast-sched-train.service"]
    seconds = make_spec(tmp_path, monitor="*/5 * * * * *")
    assert "crontab cannot express" in cron_lines(seconds)
    with pytest.raises(SpecError, match=r"schedule\.monitor: '0 2 \* \*' is not a cron expression"):
        cron_lines(make_spec(tmp_path, monitor="0 2 * *"))


def test_scheduler_runs_jobs_records_failures_and_skips_when_locked(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, misfire_grace=1)
    calls: list[float] = []

    def ok() -> str:
        calls.append(time.monotonic())
        return "fine"

    def broken() -> str:
        raise RuntimeError("no luck")

    seen: list[dict] = []
    scheduler = Scheduler(spec, {"monitor": ("* * * * * *", ok), "train": ("* * * * * *", broken)}, on_event=seen.append)
    scheduler.run_forever(handle_signals=False, until=2.6)
    history = read_history(tmp_path / ".tidecast" / "schedule-history.jsonl")
    assert history == seen
    assert any(h["job"] == "monitor" and h["status"] == "ok" and h["verdict"] == "fine" for h in history)
    failed = [h for h in history if h["job"] == "train" and h["status"] == "failed"]
    assert failed and failed[0]["error"] == "RuntimeError: no luck"
    assert calls and all(h.get("finished") or h["status"] in ("missed", "skipped") for h in history)

    # another tidecast process (here: another thread's descriptor) holds the project lock: the job waits
    # up to misfire_grace for it, then is recorded as skipped
    holder = ProjectLock(spec.state_dir, timeout=0)
    grabbed = threading.Event()

    def hold() -> None:
        holder.acquire()
        grabbed.set()
        time.sleep(2.5)
        holder.release()

    thread = threading.Thread(target=hold)
    thread.start()
    grabbed.wait(5)
    scheduler = Scheduler(spec, {"monitor": ("* * * * * *", ok)})
    started = len(calls)
    [entry] = scheduler.run_once()
    thread.join()
    assert entry["status"] == "skipped" and "gave up waiting" in entry["verdict"]
    assert len(calls) == started
    [entry] = scheduler.run_once()
    assert entry["status"] == "ok"


def test_nothing_to_schedule_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="nothing to schedule"):
        Scheduler(make_spec(tmp_path), {})
