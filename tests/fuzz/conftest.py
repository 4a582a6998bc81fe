"""Hypothesis profiles of the fuzz suite.

Default (``make test``, CI): ``derandomize=True`` and no example database, so every run tries the same
cases, and few enough of them that ``tests/fuzz`` stays within its time budget. ``HYPOTHESIS_PROFILE=thorough``
multiplies the cases and draws new ones on every run (``make test-faults``); ``TIDECAST_FUZZ_EXAMPLES=N``
sets the number of cases of every fuzz test outright (in either profile). While hunting a bug,
``TIDECAST_FUZZ_NO_SHRINK=1`` reports a failing case as found (shrinking a data file can take minutes) and
``TIDECAST_FUZZ_DEBUG=1`` (with ``-s``) prints every refusal of the data fuzz test.

The profiles are applied per test with :func:`fuzz_settings`, so loading this file does not change the
settings of the other hypothesis tests of the suite.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE", "").strip().lower() == "thorough"

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
settings.register_profile("tidecast-fuzz", derandomize=True, print_blob=False, **_COMMON)
settings.register_profile("tidecast-fuzz-thorough", derandomize=False, print_blob=True, **_COMMON)


def fuzz_examples(default: int, thorough: int) -> int:
    """The number of cases of one fuzz test in the active profile (``TIDECAST_FUZZ_EXAMPLES`` wins)."""
    forced = os.environ.get("TIDECAST_FUZZ_EXAMPLES", "").strip()
    if forced:
        return max(1, int(forced))
    return thorough if THOROUGH else default


def fuzz_settings(default: int, thorough: int) -> settings:
    """Settings for one fuzz test: the active profile with its number of cases
    (``TIDECAST_FUZZ_NO_SHRINK=1``: report a failing case as found, without minimising it)."""
    profile = settings.get_profile("tidecast-fuzz-thorough" if THOROUGH else "tidecast-fuzz")
    if os.environ.get("TIDECAST_FUZZ_NO_SHRINK"):
        return settings(profile, max_examples=fuzz_examples(default, thorough),
                        phases=[Phase.explicit, Phase.reuse, Phase.generate])
    return settings(profile, max_examples=fuzz_examples(default, thorough))
