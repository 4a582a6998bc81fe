"""The fault suites: kills, concurrent runs, failing stores (pipeline side) and server faults.

Tests marked ``faults_full`` (the whole kill matrix, the random kills, the four-process run) are
skipped unless ``TIDECAST_FAULTS_FULL=1``, which ``make test-faults`` sets (CI runs it after
``make test``).
"""

from __future__ import annotations

import os

import pytest

FULL = os.environ.get("TIDECAST_FAULTS_FULL") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    skip = pytest.mark.skip(reason="part of the full fault suite: TIDECAST_FAULTS_FULL=1 (make test-faults)")
    for item in items:
        if item.get_closest_marker("faults_full") is not None:
            item.add_marker(skip)
