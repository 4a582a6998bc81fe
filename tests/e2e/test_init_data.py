"""``tidecast init x --data FILE && cd x && tidecast run`` through the real CLI, on five differently shaped
files made here (hourly, 5-minute, daily, long format with many series, day-first dates), then the bad
input (one line, exit code 2, no folder left behind) and the questions asked instead of a guess."""

from __future__ import annotations

import http.server
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.e2e.cli import tidecast

RNG = np.random.default_rng(11)


def _cycle(t: pd.DatetimeIndex, weekly: float = 0.0) -> np.ndarray:
    day = np.sin(2 * np.pi * (t.hour * 60 + t.minute) / 1440)
    return 20 + 5 * day + weekly * (t.weekday >= 5) + RNG.normal(0, 0.5, len(t))


def hourly_csv(path: Path) -> Path:
    t = pd.date_range("2024-03-01", periods=24 * 15, freq="h")
    frame = pd.DataFrame(
        {
            "timestamp": t.strftime("%Y-%m-%d %H:%M:%S"),
            "load": _cycle(t, 3).round(3),
            "temperature": (10 + RNG.normal(0, 2, len(t))).round(2),
        }
    )
    frame.to_csv(path, index=False)
    return path


def five_minute_csv(path: Path) -> Path:
    t = pd.date_range("2024-05-01", periods=288 * 3, freq="5min")
    frame = pd.DataFrame({"time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "kw": _cycle(t).round(3)})
    frame = frame.drop(index=range(300, 304))  # a 20-minute hole
    pd.concat([frame, frame.iloc[[50]]]).to_csv(path, index=False)  # and one repeated reading
    return path


def _weekly(n: int, level: float) -> np.ndarray:
    return level * np.tile([1.0, 0.9, 0.95, 1.0, 1.3, 1.6, 1.1], n // 7 + 1)[:n] + RNG.normal(0, 0.3, n)


def daily_csv(path: Path, *, day_first: bool = False) -> Path:
    t = pd.date_range("2023-01-02", periods=120, freq="D")
    frame = pd.DataFrame(
        {"date": t.strftime("%d/%m/%Y" if day_first else "%Y-%m-%d"), "sales": _weekly(120, 50).round(2)}
    )
    frame.to_csv(path, index=False)
    return path


def long_csv(path: Path, stores: int = 12) -> Path:
    t = pd.date_range("2023-06-01", periods=70, freq="D")
    frames = [
        pd.DataFrame(
            {"day": t.strftime("%Y-%m-%d"), "store": f"store_{k:02d}", "units": _weekly(70, 10 + 5 * k).round(2)}
        )
        for k in range(stores)
    ]
    pd.concat(frames).to_csv(path, index=False)
    return path


def init_and_run(tmp_path: Path, data: Path, *flags: str) -> tuple[str, str]:
    """``tidecast init proj --data data flags`` then ``tidecast run`` in it: (init's output, run's output)."""
    made = tidecast("init", "proj", "--data", str(data), *flags, cwd=tmp_path, timeout=120)
    assert made.returncode == 0, made.stderr + made.stdout
    project = tmp_path / "proj"
    assert (project / "tidecast.yaml").is_file() and (project / "data" / data.name).is_file()
    ran = tidecast("run", cwd=project, timeout=600)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    assert "Leaderboard" in ran.stdout and "winner:" in ran.stdout and _board(ran.stdout)
    return made.stdout, ran.stdout


def _board(output: str) -> dict[str, str]:
    """The leaderboard's rows: candidate -> status."""
    rows = re.findall(r"^│\s*\d+\s*│\s*(\S+)\s*│.*│\s*(\S+)\s*│$", output, flags=re.MULTILINE)
    return dict(rows)


def _row(output: str, key: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(key))


def test_hourly_with_a_temperature_column(tmp_path: Path) -> None:
    data = hourly_csv(tmp_path / "meter.csv")
    asked = tidecast("init", "proj", "--data", str(data), cwd=tmp_path)
    assert asked.returncode == 2 and "--target NAME" in asked.stderr and "'load', 'temperature'" in asked.stderr
    assert not (tmp_path / "proj").exists()
    shown, ran = init_and_run(tmp_path, data, "--target", "load")
    assert "timestamp" in _row(shown, "time") and "load" in _row(shown, "target")
    assert _row(shown, "frequency").split()[1] == "h" and "360 steps" in _row(shown, "length")
    assert "temperature" in _row(shown, "exogenous") and _row(shown, "seasons").split()[1].startswith("24")
    spec = (tmp_path / "proj" / "tidecast.yaml").read_text()
    assert "horizon: 1d" in spec and "{name: temperature, known_in_future: false}" in spec
    assert sorted(_board(ran)) == ["autoets", "lightgbm", "mstl", "naive", "seasonal_naive"]


def test_five_minute_with_a_hole_and_a_duplicate(tmp_path: Path) -> None:
    shown, ran = init_and_run(tmp_path, five_minute_csv(tmp_path / "kw.csv"))
    assert _row(shown, "frequency").split()[1] == "5min"
    assert "4 missing steps, longest 4" in _row(shown, "gaps") and _row(shown, "duplicates").split()[1] == "1"
    assert _row(shown, "seasons").split()[1].startswith("288")
    assert "horizon: 12h" in (tmp_path / "proj" / "tidecast.yaml").read_text()  # a day does not fit six times
    assert _board(ran).get("mstl") == "ok"


def test_daily_with_a_horizon_override(tmp_path: Path) -> None:
    shown, ran = init_and_run(tmp_path, daily_csv(tmp_path / "sales.csv"), "--horizon", "14d")
    assert _row(shown, "frequency").split()[1] == "D" and "120 steps" in _row(shown, "length")
    assert _row(shown, "seasons").split()[1].startswith("7") and "horizon 14 steps" in shown
    assert "horizon: 2w" in (tmp_path / "proj" / "tidecast.yaml").read_text()
    assert _board(ran).get("seasonal_naive") == "ok"


def test_long_format_many_series(tmp_path: Path) -> None:
    shown, ran = init_and_run(tmp_path, long_csv(tmp_path / "stores.csv"))
    assert "store: 12 series" in _row(shown, "series") and "units" in _row(shown, "target")
    assert "70 steps" in _row(shown, "length")
    assert "series_column: store" in (tmp_path / "proj" / "tidecast.yaml").read_text()
    assert _board(ran).get("lightgbm") == "ok"


def test_day_first_dates(tmp_path: Path) -> None:
    shown, ran = init_and_run(tmp_path, daily_csv(tmp_path / "ventes.csv", day_first=True))
    assert "(day-first dates): 2023-01-02" in _row(shown, "time")
    assert _row(shown, "frequency").split()[1] == "D" and "120 steps" in _row(shown, "length")
    assert "winner:" in ran


# ------------------------------------------------------------------------------- bad input
def _refused(tmp_path: Path, *args: str, needle: str) -> str:
    result = tidecast("init", "proj", *args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "proj").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".proj")]  # no temporary folder left
    return lines[0]


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    _refused(tmp_path, "--data", str(tmp_path / "empty.csv"), needle="empty")


def test_binary_file(tmp_path: Path) -> None:
    (tmp_path / "blob.csv").write_bytes(bytes(range(256)) * 20)
    _refused(tmp_path, "--data", str(tmp_path / "blob.csv"), needle="binary")


def test_single_column(tmp_path: Path) -> None:
    pd.DataFrame({"value": np.arange(50.0)}).to_csv(tmp_path / "one.csv", index=False)
    _refused(tmp_path, "--data", str(tmp_path / "one.csv"), needle="a single column ('value')")


def test_irregular_without_frequency(tmp_path: Path) -> None:
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.cumsum(RNG.integers(1, 900, 400)), unit="s")
    pd.DataFrame({"t": times.strftime("%Y-%m-%d %H:%M:%S"), "v": RNG.normal(size=400)}).to_csv(
        tmp_path / "odd.csv", index=False
    )
    _refused(tmp_path, "--data", str(tmp_path / "odd.csv"), needle="--frequency")


def test_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path, "--data", str(tmp_path / "nope.csv"), needle="no such file")


def test_url_that_does_not_answer(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _refused(tmp_path, "--data", f"http://127.0.0.1:{port}/meter.csv", needle="does not answer")


def test_ambiguous_time_and_series_questions(tmp_path: Path) -> None:
    t = pd.date_range("2024-01-01", periods=200, freq="h")
    frame = pd.DataFrame({"start": t, "end": t + pd.Timedelta("1h"), "v": RNG.normal(size=200)})
    frame.to_csv(tmp_path / "two.csv", index=False)
    line = _refused(tmp_path, "--data", str(tmp_path / "two.csv"), needle="--time NAME")
    assert "'start', 'end'" in line
    long = pd.read_csv(long_csv(tmp_path / "l.csv", stores=3))
    long["shop"] = "x" + ((long.groupby("store").cumcount() + long["store"].str[-1].astype(int)) % 3).astype(str)
    long.to_csv(tmp_path / "l2.csv", index=False)
    _refused(tmp_path, "--data", str(tmp_path / "l2.csv"), needle="--series NAME")
    made = tidecast("init", "proj", "--data", str(tmp_path / "two.csv"), "--time", "end", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "time_column: end" in (tmp_path / "proj" / "tidecast.yaml").read_text()


def test_non_empty_folder_and_template_with_data(tmp_path: Path) -> None:
    data = daily_csv(tmp_path / "s.csv")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "keep.txt").write_text("mine")
    result = tidecast("init", "proj", "--data", str(data), cwd=tmp_path)
    assert result.returncode == 2 and "not empty" in result.stderr
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == ["keep.txt"]
    (tmp_path / "proj" / "data").mkdir()
    (tmp_path / "proj" / "data" / "old.csv").write_text("t,v\n")
    forced = tidecast("init", "proj", "--data", str(data), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    kept = sorted(str(p.relative_to(tmp_path / "proj")) for p in (tmp_path / "proj").rglob("*") if p.is_file())
    assert kept == [".gitignore", "data/old.csv", "data/s.csv", "keep.txt", "tidecast.yaml"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".proj")]
    result = tidecast("init", "other", "--data", str(data), "--template", "retail", cwd=tmp_path)
    assert result.returncode == 2 and "either --template or --data" in result.stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on the test's folder: its base URL."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_is_referenced_not_copied(tmp_path: Path, served: str) -> None:
    daily_csv(tmp_path / "remote.csv")
    made = tidecast("init", "proj", "--data", f"{served}/remote.csv", cwd=tmp_path, timeout=120)
    assert made.returncode == 0, made.stderr + made.stdout
    spec = (tmp_path / "proj" / "tidecast.yaml").read_text()
    assert f'source: "{served}/remote.csv"' in spec and not (tmp_path / "proj" / "data").exists()
    missing = tidecast("init", "proj2", "--data", f"{served}/absent.csv", cwd=tmp_path)
    assert missing.returncode == 2 and "HTTP 404" in missing.stderr and not (tmp_path / "proj2").exists()
