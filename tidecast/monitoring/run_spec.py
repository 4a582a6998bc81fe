"""The spec of one monitor run: the project's spec plus a ``run`` section (``as_of``, ``--input``).

The ``run`` section enters the cached monitor steps' keys (:mod:`tidecast.monitoring.steps`), so
each simulated time and each input file gets its own cache entry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tidecast.durations import freq_timedelta
from tidecast.errors import DataError
from tidecast.frames import TARGET, TIME
from tidecast.spec import Spec


class MonitorRun(BaseModel):
    """What one monitor run is asked: the simulated time and the data file (the ``run`` section)."""

    model_config = ConfigDict(extra="forbid")

    as_of: str | None = Field(None, description="Only data strictly before this instant (UTC) is seen.")
    input: str | None = Field(None, description="A data file read instead of data.source.")


class MonitorSpec(Spec):
    """A project's spec plus the ``run`` section of one monitor run (it enters the steps' cache keys)."""

    run: MonitorRun = Field(default_factory=MonitorRun)

    def base(self) -> Spec:
        """The project's spec without the run section (with ``--input`` as its data source)."""
        data = self.model_dump(mode="python", exclude={"run"})
        spec = Spec.model_validate(data)
        spec.root = self.root
        spec.source_file = self.source_file
        return spec


def parse_as_of(value: Any, spec: Spec | None = None) -> pd.Timestamp | None:
    """A timestamp as naive UTC. Naive input is read in ``data.timezone`` (like the data), aware input is converted."""
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataError(f"--as-of: cannot read {value!r} as a timestamp (write e.g. '2024-03-01 00:00')") from None
    if ts is pd.NaT:
        raise DataError(f"--as-of: cannot read {value!r} as a timestamp")
    if ts.tzinfo is None:
        tz = spec.data.timezone if spec is not None else None
        if tz:
            ts = ts.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
        else:
            return ts
    return ts.tz_convert("UTC").tz_localize(None)


def monitor_spec(spec: Spec, *, as_of: Any = None, input: str | os.PathLike[str] | None = None) -> MonitorSpec:
    """The spec of one monitor run: ``as_of`` (naive values in ``data.timezone``) and ``input`` (read
    instead of ``data.source``, resolved against the working folder)."""
    data = spec.model_dump(mode="python")
    ts = parse_as_of(as_of, spec)
    source = None
    if input is not None:
        path = Path(input).expanduser()
        source = str(path if path.is_absolute() else (Path.cwd() / path).resolve())
        if not Path(source).exists():
            raise DataError(f"--input: no such file '{input}'")
        data["data"]["source"] = source
        data["data"]["format"] = None
        data["data"]["query"] = data["data"]["table"] = None
    data["run"] = {"as_of": ts.isoformat() if ts is not None else None, "input": source}
    out = MonitorSpec.model_validate(data)
    out.root = spec.root
    out.source_file = spec.source_file
    return out


def run_of(spec: Spec) -> MonitorRun:
    return getattr(spec, "run", None) or MonitorRun()


def step_of(spec: Spec) -> pd.Timedelta:
    return freq_timedelta(spec.data.frequency)


def resolve_as_of(frame: pd.DataFrame, spec: Spec) -> pd.Timestamp:
    """The run's ``as_of``, else one step after the last observed target value."""
    run = run_of(spec)
    if run.as_of:
        return pd.Timestamp(run.as_of)
    observed = frame.loc[frame[TARGET].notna(), TIME]
    if observed.empty:
        raise DataError(f"{spec.data.source}: no observed '{spec.data.target_column}' value")
    return pd.Timestamp(observed.max()) + step_of(spec)


def lookback_steps(spec: Spec) -> int:
    """History the monitor works on: three times the longest of the drift window and the input window, plus a day."""
    window, _ = spec.forecast_steps()
    drift = spec.steps(spec.monitoring.data_drift.window, "monitoring.data_drift.window")
    day = max(1, int(pd.Timedelta(days=1) / step_of(spec)))
    return 3 * max(window, drift) + day


__all__ = [
    "MonitorRun",
    "MonitorSpec",
    "lookback_steps",
    "monitor_spec",
    "parse_as_of",
    "resolve_as_of",
    "run_of",
    "step_of",
]
