"""Kinds of day for conformal intervals: working days and days off have errors of different sizes.

A load, a footfall or a sales series is lower on weekends and public holidays, and so are its
forecast errors: ``examples/power``'s MLP errs by 1.3-2.7 kW a day on Friday to Sunday and by up
to 9 kW on working days. Quantiles pooled over both kinds are too wide for the one and too narrow
for the other. :class:`DayKinds` labels timestamps (0: working day, 1: Saturday, Sunday or a public
holiday of ``country``, on the local clock of ``timezone``); :func:`kind_factors` gives each kind
the ratio of its mean absolute residual to the overall one, and
:class:`~tidecast.models.conformal.ConformalForecaster` divides each residual by its kind's
factor before taking quantiles and multiplies the offsets by the forecast row's factor: the kinds
share the *shape* of the interval (estimated on every day) and differ in its *width* (normalized
conformal prediction, as the per-series scaling does for series of different sizes).

Measured on ``examples/power`` (docs/intervals.md): with each of 13 to 33 calibration days held out
in turn, the interval score improves for the MLP and LightGBM at 10, 14, 21 and 28 calibration
windows (8 of 8), at the same coverage. Only series of a day or finer have kinds of day
(:func:`day_kinds_for`); weekly, monthly and business-day series are left as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.data.features import off_days
from tidecast.durations import freq_timedelta

__all__ = ["DayKinds", "day_kinds_for", "kind_factors"]

MIN_KIND_SAMPLES = 50
"""A kind of day with fewer residuals than this keeps the factor 1 (too few to estimate a width)."""


@dataclass(frozen=True)
class DayKinds:
    """Labels timestamps 0 (working day) or 1 (day off) on the local clock of ``timezone``."""

    timezone: str | None = None
    country: str | None = None

    def labels(self, times: Any) -> np.ndarray:
        ds = pd.DatetimeIndex(pd.to_datetime(np.asarray(times)))
        if ds.tz is not None:
            ds = ds.tz_convert("UTC").tz_localize(None)
        return off_days(ds, timezone=self.timezone, country=self.country).astype(np.int8)


def day_kinds_for(freq: str, timezone: str | None, country: str | None) -> DayKinds | None:
    """The kinds of day of a series of frequency ``freq``, or ``None`` where a step is longer than a
    day or the calendar has no weekends (business days: ``B``, ``C``)."""
    if not calendar.is_fixed(freq):
        return None
    try:
        if freq_timedelta(freq) > pd.Timedelta(days=1):
            return None
    except Exception:  # an unusual fixed frequency: leave the intervals as they were
        return None
    return DayKinds(timezone=timezone, country=country)


def kind_factors(labels: np.ndarray, scaled_abs: np.ndarray, min_samples: int = MIN_KIND_SAMPLES) -> dict[int, float]:
    """Each kind's mean of ``scaled_abs`` (absolute residuals, each divided by its series' scale)
    over the overall mean; ``{}`` when fewer than two kinds have ``min_samples`` residuals.

    >>> kind_factors(np.array([0] * 60 + [1] * 60), np.array([2.0] * 60 + [1.0] * 60))
    {0: 1.3333333333333333, 1: 0.6666666666666666}
    """
    keep = np.isfinite(scaled_abs)
    labels, scaled_abs = labels[keep], scaled_abs[keep]
    overall = float(scaled_abs.mean()) if scaled_abs.size else 0.0
    if overall <= 0:
        return {}
    out = {}
    for kind in np.unique(labels):
        values = scaled_abs[labels == kind]
        if values.size >= min_samples and values.mean() > 0:
            out[int(kind)] = float(values.mean()) / overall
    return out if len(out) >= 2 else {}
