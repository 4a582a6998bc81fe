"""Peak memory of a step: this process's own peak, and its worker processes' memory."""

from __future__ import annotations

import contextlib
import subprocess
import sys

from tidecast.pipeline.memory import PeakRSS, rss_mb

MB = 1024 * 1024


def test_a_transient_allocation_in_this_process_counts() -> None:
    before = rss_mb()
    with PeakRSS() as peak:
        block = bytearray(96 * MB)  # touched (zeroed), then freed before the block ends
        del block
    assert peak.mb >= before + 90, (before, peak.mb)


def test_a_child_process_counts() -> None:
    child = "b = bytearray(128 * 1024 * 1024); import time; time.sleep(1.5)"
    with PeakRSS(interval=0.1, children_every=2) as peak:
        subprocess.run([sys.executable, "-c", child], check=True)
    assert peak.children_peak_bytes >= 120 * MB and peak.mb >= 120 + rss_mb() * 0.5, peak.mb


def _children_mb() -> float:
    import psutil

    total = 0
    for child in psutil.Process().children(recursive=True):  # earlier tests' idle workers (loky, servers)
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total / MB


def test_a_quiet_block_stays_near_the_current_size() -> None:
    others = _children_mb()
    with PeakRSS() as peak:
        pass
    assert 0 < peak.mb < rss_mb() + max(others, _children_mb()) + 50


def test_overlapping_measurements_each_keep_their_peak() -> None:
    """Steps side by side: a measurement that starts resets the process's high-water mark, after
    folding it into the measurements under way, so the first one keeps the peak it reached.

    In a fresh process: in the suite's own, earlier tests' idle workers (counted as descendants)
    can outweigh the block and hide what is measured here."""
    script = (
        "from tidecast.pipeline.memory import PeakRSS, rss_mb\n"
        "MB = 1024 * 1024\n"
        "before = rss_mb()\n"
        "with PeakRSS(interval=60) as outer:  # no sampling: only the high-water mark can see the block\n"
        "    block = bytearray(96 * MB)\n"
        "    del block\n"
        "    with PeakRSS(interval=60) as inner:\n"
        "        pass\n"
        "print(before, outer.mb, inner.mb)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    before, outer, inner = (float(v) for v in out.split())
    assert outer >= before + 90, (before, outer)
    assert inner < outer - 50, (inner, outer)
