"""Honest monitoring verdicts: the state of every check, the overall verdict and the exit codes.

Each check of a monitor run ends in one of four states:

* ``ok``: the check ran and found nothing;
* ``drift``: the check ran and found drift (data drift of a column, or the model-drift alarm);
* ``stale``: the feed stopped: a series' newest actual is older than the check window
  (``monitoring.data_drift.window``) before ``--as-of`` (or before now, without ``--as-of``);
* ``unknown``: the check could not run, with the reason (too few points in the window, a missing
  column, a series that is not in the champion's reference profile, the newest actual older than
  the check window, no forecast with its actual yet).

The overall verdict is the worst state of all checks, in the order ``drift`` > ``stale`` >
``unknown`` > ``ok``: drift is a finding that calls for action (a retrain); a stale feed blinds every
check at once (an incident of the data pipeline); ``unknown`` says some checks did not look;
``ok`` only when every check ran and found nothing.

``tidecast monitor --fail-on-drift`` exits with :data:`EXIT_CODES` of the overall verdict
(2 stays bad input, as for every command).

>>> worst(["ok", "unknown", "stale"])
'stale'
>>> EXIT_CODES["drift"], EXIT_CODES["stale"], EXIT_CODES["unknown"]
(3, 4, 5)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from tidecast.frames import ID, TARGET, TIME

OK, UNKNOWN, STALE, DRIFT = "ok", "unknown", "stale", "drift"
STATES = (OK, UNKNOWN, STALE, DRIFT)
"""From the mildest to the worst."""
SEVERITY = {state: rank for rank, state in enumerate(STATES)}
EXIT_CODES = {OK: 0, DRIFT: 3, STALE: 4, UNKNOWN: 5}
"""Exit codes of ``tidecast monitor --fail-on-drift`` by overall verdict (2 is bad input)."""
DISPLAY = {OK: "ok", DRIFT: "drift", STALE: "stale", UNKNOWN: "unchecked"}
"""How the dashboard names each state: a check that did not run is ``unchecked``, never ``ok``."""
SHOWN_REASONS = 3


@dataclass
class Check:
    """One check of a monitor run: ``kind`` is ``data``, ``model`` or ``feed``; ``subject`` what it looked at."""

    kind: str
    subject: str
    state: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(states: Iterable[str]) -> str:
    """The worst of ``states`` (``ok`` for none)."""
    return max(states, key=lambda s: SEVERITY[s], default=OK)


def exit_code(state: str) -> int:
    """The exit code of ``--fail-on-drift`` for an overall verdict."""
    return EXIT_CODES[state]


def _fmt_time(ts: pd.Timestamp) -> str:
    return f"{pd.Timestamp(ts):%Y-%m-%d %H:%M} UTC"


def feed_check(
    ingested: pd.DataFrame, *, as_of: pd.Timestamp | None, now: pd.Timestamp, window: pd.Timedelta, window_label: str
) -> Check:
    """Whether the actuals still arrive: ``stale`` when a series' newest actual is older than ``window``
    before ``as_of`` (the run's ``--as-of``), or before ``now`` when the run has none.

    ``ingested`` is the monitor's ingested frame (``unique_id, ds, y``; future rows have ``y`` empty)."""
    ref = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(now)
    anchor = f"as_of {_fmt_time(ref)}" if as_of is not None else f"now ({_fmt_time(ref)})"
    observed = ingested[ingested[TARGET].notna() & (ingested[TIME] < ref)]
    newest = observed.groupby(observed[ID].astype(str), sort=True)[TIME].max()
    if newest.empty:
        return Check("feed", "actuals", STALE, f"no actual before {anchor}")
    limit = ref - window
    stopped = newest[newest < limit].sort_values()
    if stopped.empty:
        return Check(
            "feed", "actuals", OK, f"newest actual {_fmt_time(newest.min())} is within {window_label} of {anchor}"
        )
    single = len(newest) == 1
    parts = [(f"newest actual {_fmt_time(t)}" if single else f"'{uid}' {_fmt_time(t)}") for uid, t in stopped.items()]
    shown = ", ".join(parts[:SHOWN_REASONS]) + (
        f" (+{len(parts) - SHOWN_REASONS} more)" if len(parts) > SHOWN_REASONS else ""
    )
    where = "" if single else f"{len(stopped)} of {len(newest)} series stopped, newest actual: "
    return Check(
        "feed",
        "actuals",
        STALE,
        f"{where}{shown}, older than the check window ({window_label}) before {anchor}: the feed stopped",
    )


def observed_only(features: pd.DataFrame, ingested: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``features`` (the cleaned frame) with ``columns`` blanked where the data had no value: the cleaning
    fills gaps (exogenous columns without limit), and a check must count what arrived, not what was filled."""
    columns = [c for c in columns if c in features.columns and c in ingested.columns]
    if not columns or features.empty:
        return features
    raw = ingested[[ID, TIME, *columns]].assign(**{ID: ingested[ID].astype(str)})
    seen = raw.set_index([ID, TIME])[columns].notna().groupby(level=[0, 1]).any()
    keys = pd.MultiIndex.from_arrays([features[ID].astype(str), features[TIME]])
    mask = seen.reindex(keys).fillna(False).astype(bool).to_numpy()
    out = features.copy()
    for i, column in enumerate(columns):
        out[column] = out[column].where(mask[:, i])
    return out


def dropped_series(ingested: pd.DataFrame, checked: pd.DataFrame, as_of: pd.Timestamp | None) -> list[Check]:
    """``unknown`` checks for the series of the data that the cleaning dropped (too little recent history)."""
    before = ingested if as_of is None else ingested[ingested[TIME] < pd.Timestamp(as_of)]
    have = set(before.loc[before[TARGET].notna(), ID].astype(str))
    kept = set(checked[ID].astype(str)) if len(checked) else set()
    return [
        Check("data", f"series '{uid}'", UNKNOWN, f"series '{uid}' has too little recent history to clean: not checked")
        for uid in sorted(have - kept)
    ]


def data_checks(report: Any) -> list[Check]:
    """One check per (column, series) of a :class:`~tidecast.monitoring.drift.DriftReport`."""
    out = []
    for col in report.columns:
        reason = col.reason
        if col.state == DRIFT:
            reason = ", ".join(report.column_reasons(col))
        out.append(Check("data", col.label, col.state, reason))
    return out


def model_check(report: Any) -> Check:
    """The model-drift check of a :class:`~tidecast.monitoring.model_drift.ModelDriftReport`."""
    return Check("model", f"v{report.model_version}", report.state, report.state_reason)


def overall(checks: Iterable[Check]) -> str:
    return worst(c.state for c in checks)


def kind_state(checks: Iterable[Check], kind: str) -> str:
    """The state of one kind of check (``data`` or ``model``) for the history and the dashboard: the
    worst of its checks, and ``stale`` (unless it drifts) when the feed stopped: its newest data is old."""
    checks = list(checks)
    state = worst(c.state for c in checks if c.kind == kind)
    if state != DRIFT and any(c.kind == "feed" and c.state == STALE for c in checks):
        return STALE
    return state


def describe(checks: Iterable[Check], state: str, limit: int = SHOWN_REASONS) -> str:
    """``"unknown: 6 of 24 points in the window, at least 12 needed (y[b], temperature[b]); ..."``: the
    reasons of the checks in ``state``, each once with the subjects it applies to."""
    grouped: dict[str, list[str]] = {}
    for c in checks:
        if c.state == state:
            grouped.setdefault(c.reason or "no reason recorded", []).append(c.subject)
    parts = []
    for reason, subjects in grouped.items():
        named = ", ".join(subjects[:4]) + (f", +{len(subjects) - 4}" if len(subjects) > 4 else "")
        parts.append(f"{reason} ({named})" if subjects != ["actuals"] else reason)
    more = f"; +{len(parts) - limit} more" if len(parts) > limit else ""
    return f"{state}: " + "; ".join(parts[:limit]) + more


def verdict_text(main: str | None, checks: list[Check]) -> str:
    """The one-line verdict: ``main`` (drift and what was done about it) when there is one, then the
    stale and unknown checks with their reasons; ``ok`` only when every check ran and found nothing."""
    parts = [main] if main else []
    for state in (STALE, UNKNOWN):
        if any(c.state == state for c in checks):
            parts.append(describe(checks, state))
    return "; ".join(parts) if parts else OK


def check_tags(checks: list[dict[str, Any]], limit: int = 50) -> dict[str, str]:
    """MLflow tags of a run's checks: ``tidecast.checks`` (the count per state) and, for each check that is
    not ``ok`` (the first ``limit``), ``tidecast.check.<kind>.<subject>`` = ``"<state>: <reason>"``."""
    counts = {state: sum(c["state"] == state for c in checks) for state in reversed(STATES)}
    out = {"tidecast.checks": ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "none"}
    flagged = sorted((c for c in checks if c["state"] != OK), key=lambda c: -SEVERITY[c["state"]])
    for c in flagged[:limit]:
        subject = re.sub(r"[^\w.\-/ :]+", ".", str(c["subject"])).strip(".")
        out[f"tidecast.check.{c['kind']}.{subject}"[:250]] = f"{c['state']}: {c.get('reason') or ''}"[:5000]
    return out


__all__ = [
    "DISPLAY",
    "EXIT_CODES",
    "STATES",
    "Check",
    "check_tags",
    "data_checks",
    "describe",
    "dropped_series",
    "exit_code",
    "feed_check",
    "kind_state",
    "model_check",
    "observed_only",
    "overall",
    "verdict_text",
    "worst",
]
