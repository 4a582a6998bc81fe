"""``tidecast init NAME --data FILE_OR_URL``: a project planned from a :class:`~tidecast.data.profile.Profile`.

:func:`plan` picks a horizon, an input window, the backtest folds and a candidate set that fit the
data's frequency and length, cheap enough for a first run of seconds: the naive and seasonal naive
baselines, AutoETS and MSTL (with the detected seasons) on bounded fit windows, LightGBM with lags at
those seasons. :func:`render` writes it as a commented ``tidecast.yaml``; :func:`write_project` builds
the folder in a temporary sibling and renames it into place, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tidecast.data.profile import Profile
from tidecast.data.profile_time import Grid, candidate_periods
from tidecast.durations import to_steps
from tidecast.errors import DataError, SpecError, TidecastError
from tidecast.spec import load_spec

#: statistical candidates fit every series on its own: above this many series only the global model runs
MAX_LOCAL_SERIES = 200
_DAY = pd.Timedelta(days=1)


@dataclass
class Plan:
    """What :func:`plan` chose, in steps of the profile's frequency."""

    horizon: int
    input_window: int
    folds: int
    season: int  # the seasonal naive's season (1: none)
    max_gap: int
    candidates: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # candidate name -> why it looks the way it does
    skipped: list[str] = field(default_factory=list)  # candidates left out, with the reason


def duration(steps: int, profile: Profile) -> str | int:
    """``steps`` as ``1d``/``6h``/``30min`` when the frequency is fixed and it divides evenly, else the count.

    >>> from types import SimpleNamespace as P
    >>> duration(288, P(fixed=True, step=pd.Timedelta("5min"))), duration(36, P(fixed=True, step=pd.Timedelta("1h")))
    ('1d', '36h')
    """
    if not profile.fixed or steps <= 0:
        return steps
    total = steps * profile.step
    if total % _DAY == pd.Timedelta(0):
        days = int(total // _DAY)
        return f"{days // 7}w" if days % 7 == 0 and days >= 14 else f"{days}d"
    for unit, length in (("h", pd.Timedelta(hours=1)), ("min", pd.Timedelta(minutes=1))):
        if total % length == pd.Timedelta(0):
            return f"{int(total // length)}{unit}"
    return steps


def parse_horizon(value: str, profile: Profile) -> int:
    """``--horizon``: a step count or a duration such as ``1d``, in steps of the profile's frequency."""
    text = value.strip()
    try:
        steps = to_steps(int(text) if text.isdigit() else text, profile.frequency, field="--horizon")
    except SpecError as exc:
        raise DataError(exc.message) from None
    if steps < 1:
        raise DataError("--horizon: must be at least one step")
    return steps


def _natural_horizon(profile: Profile) -> int:
    step = profile.step
    if step < _DAY:
        return max(1, int(_DAY // step))
    for limit, steps in ((1, 7), (2, 5), (8, 8), (31, 6), (92, 4)):
        if step <= limit * _DAY:
            return steps
    return 1


def _default_season(profile: Profile) -> int:
    periods = candidate_periods(
        Grid(profile.frequency, profile.step, profile.step if profile.fixed else pd.DateOffset())
    )
    return profile.seasons[0] if profile.seasons else (periods[0] if periods and profile.fixed else 1)


def _layout(length: int, h: int, window: int, need: int) -> int | None:
    """The most folds (3, 2 or 1) leaving the first fold ``max(window, need)`` training steps."""
    for folds in (3, 2, 1):
        if length - h * (folds + 1) >= max(window, need):
            return folds
    return None


def plan(profile: Profile, *, horizon: str | None = None, label: str = "data") -> Plan:
    """Horizon, input window, folds and candidates for ``profile`` (see the module docstring)."""
    length = profile.length
    season = _default_season(profile)
    if 2 * season + 1 > length:
        season = 1
    natural = _natural_horizon(profile)
    while natural > max(1, length // 6):  # half a day, a quarter... until six horizons fit
        natural = max(1, natural // 2)
    h = parse_horizon(horizon, profile) if horizon is not None else natural
    scale = 4 if profile.step >= _DAY else 2
    window = max(h, scale * season)
    folds = _layout(length, h, window, 2 * season)
    if folds is None:
        window = max(h, season)
        folds = _layout(length, h, window, season)
    if folds is None:
        flag = "a shorter --horizon" if horizon is not None else "more history"
        raise DataError(
            f"{label}: {length} steps of {profile.frequency} are too short to backtest a horizon of {h} steps "
            f"(a fold needs {max(window, season)} steps of history, and the last {2 * h} steps are forecast); "
            f"use {flag}"
        )
    train0 = length - h * (folds + 1)  # training steps of the first fold
    gap = max(profile.longest_gap, 1, season // 4)
    out = Plan(horizon=h, input_window=window, folds=folds, season=season, max_gap=gap)
    out.candidates.append({"name": "naive", "kind": "naive"})
    out.notes["naive"] = "tomorrow looks like the last reading"
    if season > 1:
        out.candidates.append({"name": "seasonal_naive", "kind": "seasonal_naive", "params": {"season_length": season}})
        out.notes["seasonal_naive"] = "the last season again: the baseline MASE and the gate compare with"
    local = profile.n_series <= MAX_LOCAL_SERIES
    if not local:
        out.skipped.append(f"autoets, mstl: {profile.n_series} series (> {MAX_LOCAL_SERIES}) would each be fitted")
    if local:
        ets_season = season if 2 * season <= train0 else 1
        ets_window = min(train0, _fit_window(ets_season, 8))
        out.candidates.append(
            {"name": "autoets", "kind": "autoets", "params": {"season_length": ets_season}, "fit_window": ets_window}
        )
        out.notes["autoets"] = "exponential smoothing, fitted on the last stretch only (fit_window) to stay fast"
    mstl = [s for s in profile.seasons if 2 * s <= train0]
    if local and mstl:
        mstl_window = min(train0, _fit_window(max(mstl), 4))
        mstl = [s for s in mstl if 2 * s <= mstl_window]
        out.candidates.append(
            {"name": "mstl", "kind": "mstl", "params": {"season_length": mstl}, "fit_window": mstl_window}
        )
        out.notes["mstl"] = "a trend plus every season the autocorrelation showed"
    elif local:
        out.skipped.append("mstl: no clear season in the data")
    lags = sorted({lag for lag in (1, 2, 3, *profile.seasons, season) if 1 <= lag <= window and lag < train0})
    features: dict[str, Any] = {"lags": lags}
    parts = _calendar_parts(profile)
    if parts:
        features["calendar"] = parts
    lightgbm: dict[str, Any] = {
        "name": "lightgbm",
        "kind": "lightgbm",
        "params": {"n_estimators": 100, "learning_rate": 0.05, "num_leaves": 15},
        "features": features,
    }
    longest = max([*profile.seasons, season])
    ml_window = max(_fit_window(longest, 4), 1000 // longest * longest)
    if ml_window < train0:  # long histories: the latest weeks teach enough, and a first run stays fast
        lightgbm["fit_window"] = ml_window
    out.candidates.append(lightgbm)
    out.notes["lightgbm"] = "one gradient-boosted model over all series: lags at the seasons, calendar parts"
    return out


def _fit_window(season: int, cycles: int) -> int:
    """``cycles`` seasons, and at least about 200 steps (whole seasons)."""
    return max(cycles * season, 200 // season * season)


def _calendar_parts(profile: Profile) -> list[str]:
    step = profile.step
    if step < _DAY:
        return ["hour", "weekday"]
    if profile.fixed and step == _DAY:
        return ["weekday", "month"]
    return ["month"] if step < pd.Timedelta(days=300) else []


# ---------------------------------------------------------------------------------------- render
def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_.\-/]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when it reads back as the same string, else double-quoted.

    >>> _scalar("load"), _scalar("Power (kW): total"), _scalar("2024"), _scalar("no")
    ('load', '"Power (kW): total"', '"2024"', '"no"')
    """
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _span(profile: Profile) -> str:
    return f"{profile.start:%Y-%m-%d %H:%M} to {profile.end:%Y-%m-%d %H:%M}"


def render(profile: Profile, chosen: Plan, *, project: str, source: str, origin: str) -> str:
    """The commented ``tidecast.yaml`` of ``chosen``."""
    d = lambda steps: _flow(duration(steps, profile))  # noqa: E731
    series = f"{profile.n_series} series" if profile.series_column else "one series"
    seasons = ", ".join(map(str, profile.seasons)) or "none clear"
    lines = [
        f"# {project}: made by `tidecast init` from {origin}",
        f"# {profile.rows} rows, {series} of {profile.frequency} steps ({_span(profile)} UTC), about "
        f"{profile.length} steps long; seasons (steps): {seasons}.",
        "# Edit freely: `tidecast schema` documents every key. `tidecast run` backtests every candidate below.",
        f"project: {_scalar(project)}",
        "",
        "data:",
        f"  source: {_scalar(source)}",
        f"  time_column: {_scalar(profile.time_column)}"
        + ("            # day-first dates (31/01/2024)" if profile.dayfirst else ""),
        f"  target_column: {_scalar(profile.target_column)}            # what to forecast",
    ]
    if profile.series_column:
        lines.append(
            f"  series_column: {_scalar(profile.series_column)}            # long format: one row per series and time"
        )
    lines += [
        f"  frequency: {profile.frequency}"
        + ("                    # given with --frequency" if profile.frequency_given else ""),
        "  # timezone: Europe/Paris        # if the times are local wall-clock times (they are read as UTC)",
    ]
    if profile.exogenous:
        lines.append("  exogenous:                      # known_in_future: true if their future values are known")
        lines += [f"    - {{name: {_scalar(c)}, known_in_future: false}}" for c in profile.exogenous]
    lines += [
        "",
        "clean:",
        f"  duplicates: mean                # {profile.duplicates} repeated (series, time) rows found: averaged",
        f"  gaps: {{method: interpolate, max_gap: {d(chosen.max_gap)}}}"
        f"   # {profile.missing_steps} missing steps found, the longest gap {profile.longest_gap}",
        "",
        "forecast:",
        f"  horizon: {d(chosen.horizon)}                    # {chosen.horizon} steps ahead (`tidecast init --horizon` sets it)",
        f"  input_window: {d(chosen.input_window)}               # the history a served model receives",
        "  quantiles: [0.1, 0.9]           # an 80 % prediction interval",
        "",
        "backtest:",
        f"  folds: {chosen.folds}                        # rolling origins, one horizon apart, before the held-out last horizon",
        "",
        "selection:",
        "  metric: mase                    # error relative to the seasonal naive's (below 1: better)",
        "",
        "models:                           # every candidate is backtested; the best is refitted and registered",
    ]
    for candidate in chosen.candidates:
        entry = {k: v for k, v in candidate.items() if k not in ("params", "fit_window", "features")}
        if "params" in candidate:
            entry["params"] = {k: _durations(k, v, profile) for k, v in candidate["params"].items()}
        if "fit_window" in candidate:
            entry["fit_window"] = duration(candidate["fit_window"], profile)
        if "features" in candidate:
            entry["features"] = {k: _durations(k, v, profile) for k, v in candidate["features"].items()}
        lines.append(f"  - {_flow(entry)}   # {chosen.notes.get(candidate['name'], '')}".rstrip("# ").rstrip())
    lines += [f"  # left out: {reason}" for reason in chosen.skipped]
    return "\n".join(lines) + "\n"


def _durations(key: str, value: Any, profile: Profile) -> Any:
    if key == "season_length":
        return [duration(v, profile) for v in value] if isinstance(value, list) else duration(value, profile)
    return value


# ----------------------------------------------------------------------------------------- write
def write_project(folder: Path, files: Callable[[Path], None], *, force: bool = False) -> Path:
    """Build the project in a temporary folder beside ``folder`` (``files(tmp)`` writes it, then the
    spec there is loaded to check it) and move it into place: an error leaves no folder behind."""
    folder = folder.absolute()
    if folder.exists() and not folder.is_dir():
        raise TidecastError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise TidecastError(f"{folder} exists and is not empty: choose another name, or use --force to write into it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.init-", dir=folder.parent))
    try:
        files(tmp)
        load_spec(tmp / "tidecast.yaml")
        if folder.is_dir():
            _merge(tmp, folder)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _merge(source: Path, target: Path) -> None:
    """Move ``source``'s files into ``target``, replacing files of the same name, keeping the others."""
    for item in source.iterdir():
        there = target / item.name
        if item.is_dir() and there.is_dir():
            _merge(item, there)
        elif there.is_dir():
            raise TidecastError(f"{there} is a folder: cannot write the file {item.name} there (move it away)")
        else:
            os.replace(item, there)


__all__ = ["MAX_LOCAL_SERIES", "Plan", "duration", "parse_horizon", "plan", "render", "write_project"]
