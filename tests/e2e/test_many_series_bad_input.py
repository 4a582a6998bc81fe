"""Bad long-format input through the real CLI: one clear line, exit code 2, nothing cached or locked.

Covers issue 9's bad inputs: duplicated (series, time) rows, a series id column that is missing,
all empty or partly empty, and a Dask scheduler address that answers nothing (fails in seconds,
before any step runs). The default duplicate policy (``clean.duplicates: mean``) is explicit and
counted: the last test checks that it merges and records what it merged.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.cli import assert_clean_failure, tidecast

SPEC = """\
project: meters-bad
data:
  source: data/meters.csv
  series_column: {series_column}
  time_column: timestamp
  target_column: load
  frequency: h
  static_columns: [customer_type]
clean:
  duplicates: {duplicates}
forecast: {{input_window: 1d, horizon: 12h}}
backtest: {{folds: 2}}
selection: {{metric: mae}}
models:
  - {{name: naive, kind: naive}}
  - {{name: seasonal_naive, kind: seasonal_naive, params: {{season_length: 1d}}}}
{extra}"""


def make_meters_project(
    root: Path, *, duplicates: str = "mean", series_column: str = "series_id", extra: str = ""
) -> tuple[Path, pd.DataFrame]:
    """Four hourly meters of different lengths (6 to 8 days) in one CSV; returns (folder, raw frame)."""
    from tidecast.datasets import make_meters

    (root / "data").mkdir(parents=True)
    frame = make_meters(4, days=12, seed=1).groupby("series_id").tail(24 * 8).reset_index(drop=True)
    frame.to_csv(root / "data" / "meters.csv", index=False)
    (root / "tidecast.yaml").write_text(SPEC.format(duplicates=duplicates, series_column=series_column, extra=extra))
    return root, frame


def test_duplicated_series_time_rows_are_an_error_when_asked(tmp_path: Path) -> None:
    project, frame = make_meters_project(tmp_path / "p", duplicates="error")
    # row 30 twice more, row 31 once more (meter_001), row 200 once more (meter_002): 4 extra rows, 3 pairs
    noisy = pd.concat([frame, frame.iloc[[30, 30, 31, 200]]]).sort_index(kind="stable")
    noisy.to_csv(project / "data" / "meters.csv", index=False)
    first = pd.Timestamp(frame["timestamp"].iloc[30])
    line = assert_clean_failure(
        tidecast("run", cwd=project), project, "meters.csv", "series 'meter_001'", f"timestamp {first} UTC",
        "appears 3 times", "4 duplicated row(s) over 3 (series, time) pair(s)", "clean.duplicates is 'error'",
    )
    assert "meter_002" not in line  # the first pair is named, not every one


def test_duplicates_are_merged_and_counted_by_default(tmp_path: Path) -> None:
    project, frame = make_meters_project(tmp_path / "p")  # clean.duplicates: mean (the default, documented)
    twice = frame.iloc[[30]].assign(load=frame["load"].iloc[30] + 10.0)
    pd.concat([frame, twice]).to_csv(project / "data" / "meters.csv", index=False)
    result = tidecast("run", "--until", "clean", cwd=project)
    assert result.returncode == 0, result.stderr
    entry = next((project / ".tidecast" / "cache" / "clean").glob("*/artifacts"))
    summary = json.loads((entry / "summary.json").read_text())
    assert summary["duplicates"] == 1
    changes = pd.read_parquet(entry / "changes.parquet")
    merged = changes[changes["kind"] == "duplicate"]
    assert merged["unique_id"].tolist() == ["meter_001"] and len(merged) == 1


def test_series_column_missing(tmp_path: Path) -> None:
    project, _ = make_meters_project(tmp_path / "p", series_column="meter")
    assert_clean_failure(
        tidecast("run", cwd=project), project, "no column 'meter' for data.series_column", "series_id"
    )


def test_series_column_all_empty(tmp_path: Path) -> None:
    project, frame = make_meters_project(tmp_path / "p")
    frame.assign(series_id=None).to_csv(project / "data" / "meters.csv", index=False)
    assert_clean_failure(
        tidecast("run", cwd=project), project, "meters.csv", "column 'series_id' (data.series_column) is empty"
    )


def test_series_column_partly_empty_names_the_rows(tmp_path: Path) -> None:
    project, frame = make_meters_project(tmp_path / "p")
    holes = frame.copy()
    holes.loc[[4, 9, 500], "series_id"] = None  # CSV lines 6, 11 and 502 (line 1 is the header)
    holes.to_csv(project / "data" / "meters.csv", index=False)
    assert_clean_failure(
        tidecast("run", cwd=project), project, "line 6, line 11, line 502:",
        "column 'series_id' (data.series_column) is empty", f"3 of {len(frame)} rows have no series id",
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.parametrize(
    "address", [f"tcp://127.0.0.1:{_closed_port()}", "tcp://10.255.255.1:8786"], ids=["refused", "no-answer"]
)
def test_unreachable_dask_address_fails_fast_before_any_step(tmp_path: Path, address: str) -> None:
    project, _ = make_meters_project(tmp_path / "p", extra=f"executor: {{kind: dask, address: '{address}'}}\n")
    started = time.perf_counter()
    result = tidecast("run", cwd=project)
    elapsed = time.perf_counter() - started
    assert_clean_failure(result, project, f"cannot reach the Dask scheduler at {address}", "dask scheduler")
    assert elapsed < 15, f"took {elapsed:.1f} s"


@pytest.fixture
def not_a_scheduler() -> Iterator[str]:
    """A TCP port where something else listens: it answers every connection like an HTTP server."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_an_address_where_something_else_listens_is_one_line(tmp_path: Path, not_a_scheduler: str) -> None:
    project, _ = make_meters_project(tmp_path / "p", extra=f"executor: {{kind: dask, address: '{not_a_scheduler}'}}\n")
    assert_clean_failure(tidecast("run", cwd=project), project, f"{not_a_scheduler} answers, but not as a Dask scheduler")


def test_a_real_scheduler_passes_the_probe() -> None:
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    from tidecast.pipeline.executors import check_address

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=":0") as cluster:
        check_address(cluster.scheduler_address)  # raises PipelineError if the handshake is not recognised
