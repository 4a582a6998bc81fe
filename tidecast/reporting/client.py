"""The weekly client report: last period's forecasts against what happened, in plain words.

Built from the prediction store and the actuals (what ``tidecast serve``/batch predictions log)
and from the registry (the model version in use and its backtest baseline):

* last period's forecast against the actuals, with the intervals and the largest misses marked;
* accuracy over the period against the model's backtest (and held-out) baseline;
* the largest misses with their timestamps;
* the drift status (from the monitoring's checks, or "no drift checks yet");
* the model version in use;
* the forecast for the next period with its intervals (the stored forecasts beyond the last actual).

A model without predictions or actuals yet gets a report that says so, section by section.

>>> report = gather(spec, model="power", alias="champion", period="7d")      # doctest: +SKIP
>>> write(report, "weekly.pdf", fmt="pdf")                                   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tidecast.durations import to_timedelta
from tidecast.errors import SpecError, TidecastError
from tidecast.extras import require
from tidecast.frames import ID, POINT, TARGET, TIME
from tidecast.reporting import static
from tidecast.reporting.analysis import widest_band
from tidecast.reporting.data import (
    DriftView,
    ModelInUse,
    accuracy,
    drift_history,
    resolve_model,
    rolling_accuracy,
    store,
)
from tidecast.reporting.html import Document, fmt_number

FORMATS = ("html", "pdf")
MISSES = 10
MAX_SERIES_CHARTS = 3


@dataclass
class ClientReport:
    """Everything the client report shows, gathered before rendering."""

    project: str
    model: ModelInUse
    period: pd.Timedelta
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    joined: pd.DataFrame
    """The period's latest forecast of each timestamp next to its actual."""
    metrics: dict[str, float]
    daily: pd.DataFrame
    misses: pd.DataFrame
    ahead: pd.DataFrame
    """Stored forecasts beyond the last actual (at most one period)."""
    recent: pd.DataFrame
    """Actuals just before the forecast ahead (for context)."""
    drift: DriftView
    has_predictions: bool
    has_actuals: bool
    versions_used: list[str] = field(default_factory=list)
    generated: str = ""

    @property
    def baseline_mae(self) -> float | None:
        return self.model.backtest("mae")


def parse_period(period: str) -> pd.Timedelta:
    """``7d`` / ``24h`` / ``2w`` as a Timedelta (a CLI-friendly error otherwise)."""
    try:
        delta = to_timedelta(period, field="--period")
    except SpecError as exc:
        raise TidecastError(exc.message) from None
    if delta <= pd.Timedelta(0):
        raise TidecastError(f"--period: must be positive, got {period!r}")
    return delta


def gather(
    spec: Any,
    *,
    model: str | None = None,
    alias: str = "champion",
    period: str | pd.Timedelta = "7d",
    until: Any = None,
) -> ClientReport:
    """Read the registry, the prediction store and the drift checks for one report.

    ``until`` ends the period (default: the last actual in the store, else the last forecast
    timestamp); the period is the ``period`` before it. An unknown model or alias raises a
    :class:`~tidecast.errors.TrackingError` naming the known ones.
    """
    delta = parse_period(period) if isinstance(period, str) else pd.Timedelta(period)
    in_use = resolve_model(spec, model, alias)
    db = store(spec)
    predictions = db.predictions(in_use.name, latest_only=False)
    actuals = db.actuals()
    if not predictions.empty:
        actuals = actuals[actuals[ID].isin(set(predictions[ID].astype(str)))]
    has_predictions, has_actuals = not predictions.empty, not actuals.empty
    if until is not None:
        try:
            end = pd.Timestamp(until)
        except (ValueError, TypeError):
            raise TidecastError(
                f"--until: cannot read {until!r} as a time (write e.g. 2024-07-01 or 2024-07-01T06:00)"
            ) from None
        if end.tzinfo is not None:
            end = end.tz_convert("UTC").tz_localize(None)
    elif has_actuals:
        end = pd.Timestamp(actuals[TIME].max())
    elif has_predictions:
        end = pd.Timestamp(predictions[TIME].min()) + delta
    else:
        end = None
    start = end - delta if end is not None else None
    joined = pd.DataFrame()
    if has_predictions and has_actuals and end is not None:
        latest = predictions.sort_values("id").drop_duplicates([ID, TIME], keep="last")
        window = latest[(latest[TIME] > start) & (latest[TIME] <= end)]
        joined = window.merge(actuals, on=[ID, TIME], how="inner").sort_values([ID, TIME]).reset_index(drop=True)
    metrics = accuracy(joined)
    daily = rolling_accuracy(joined, freq="1D").rename(columns={"period": "day"})
    misses = _largest_misses(joined)
    ahead = pd.DataFrame()
    recent = pd.DataFrame()
    if has_predictions:
        horizon_start = end if end is not None else pd.Timestamp.min
        future = predictions[predictions[TIME] > horizon_start]
        if not future.empty:
            future = future.sort_values("id").drop_duplicates([ID, TIME], keep="last")
            first = future[TIME].min()
            ahead = future[future[TIME] <= first + delta].sort_values([ID, TIME]).reset_index(drop=True)
            if has_actuals:
                recent = actuals[actuals[TIME] > first - pd.Timedelta(days=2)].sort_values([ID, TIME])
                recent = recent[recent[TIME] < first]
    used = sorted({str(v) for v in joined.get("model_version", pd.Series(dtype=str)).dropna()}, key=_version_key)
    return ClientReport(
        project=spec.project,
        model=in_use,
        period=delta,
        start=start,
        end=end,
        joined=joined,
        metrics=metrics,
        daily=daily,
        misses=misses,
        ahead=ahead,
        recent=recent,
        drift=drift_history(spec, in_use.name),
        has_predictions=has_predictions,
        has_actuals=has_actuals,
        versions_used=used,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _version_key(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (10**9, value)


def _largest_misses(joined: pd.DataFrame, n: int = MISSES) -> pd.DataFrame:
    if joined.empty:
        return pd.DataFrame()
    frame = joined.copy()
    frame["error"] = frame[TARGET] - frame[POINT]
    frame["abs_error"] = frame["error"].abs()
    band = widest_band(frame)
    if band is not None:
        frame["inside interval"] = np.where(
            (frame[TARGET] >= frame[band[0]]) & (frame[TARGET] <= frame[band[1]]), "yes", "no"
        )
    top = frame.sort_values("abs_error", ascending=False).head(n)
    columns = [TIME, ID, POINT, TARGET, "error"] + (["inside interval"] if band is not None else []) + ["model_version"]
    return top[[c for c in columns if c in top.columns]].reset_index(drop=True)


def _when(value: Any) -> str:
    return "" if value is None else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def _duration(delta: pd.Timedelta) -> str:
    days = delta / pd.Timedelta(days=1)
    if days >= 1 and float(days).is_integer():
        return f"{int(days)} day{'s' if days != 1 else ''}"
    hours = delta / pd.Timedelta(hours=1)
    return f"{hours:g} hours"


def render_html(report: ClientReport, *, figure_format: str = "svg") -> str:
    """The report as one self-contained HTML page (figures inline; ``figure_format`` png for PDFs)."""
    model = report.model
    span = f"{_when(report.start)} → {_when(report.end)} UTC" if report.end is not None else "no data yet"
    doc = Document(
        f"{report.project}: forecast report",
        subtitle=f"{model.label} · last {_duration(report.period)}: {span}",
        footer=f"Generated {report.generated} by tidecast from the prediction store and the model registry.",
    )
    metrics = report.metrics
    base = report.baseline_mae

    # ---------------------------------------------------------------------------- summary
    summary = doc.section("summary", "At a glance")
    cards = []
    if metrics:
        ratio = metrics["mae"] / base if base else None
        tone = "" if ratio is None else ("good" if ratio <= 1.2 else "warn" if ratio <= 1.5 else "bad")
        detail = f"backtest {fmt_number(base)}" + (f" ({ratio:.2f}×)" if ratio is not None else "")
        cards.append(("mean absolute error", fmt_number(metrics["mae"]), detail, tone))
        if "coverage" in metrics:
            nominal = metrics.get("nominal", float("nan"))
            gap = metrics["coverage"] - nominal
            cards.append(
                (
                    "inside the interval",
                    f"{metrics['coverage']:.0%}",
                    f"expected {nominal:.0%}",
                    "good" if abs(gap) <= 0.1 else "warn",
                )
            )
        cards.append(("forecasts checked", f"{int(metrics['n']):,}", "timestamps with an actual", ""))
    else:
        cards.append(("accuracy", "n/a", "nothing to compare yet", "warn"))
    drift_tone = (
        ""
        if report.drift.empty
        else (
            "bad"
            if any((row := report.drift.latest(k)) is not None and bool(row["drifted"]) for k in ("data", "model"))
            else "good"
        )
    )
    cards.append(
        ("drift", "no checks yet" if report.drift.empty else report.drift.status_line().split(";")[0], "", drift_tone)
    )
    cards.append(("model in use", f"v{model.version}", f"{model.alias or ''} · {model.winner or ''}", ""))
    summary.kpis(cards)
    if not report.has_predictions:
        summary.empty(
            f"No forecasts of model '{model.name}' are in the prediction store yet: serve the model or run batch "
            "predictions, then build this report again."
        )
    elif not report.has_actuals:
        summary.empty("No actuals have arrived yet, so the forecasts cannot be compared with what happened.")
    elif not metrics:
        summary.empty(f"No forecast of the last {_duration(report.period)} has a matching actual yet.")

    # -------------------------------------------------------------------------- last period
    last = doc.section("last-week", f"Last {_duration(report.period)}: forecast against what happened")
    if not report.joined.empty:
        for uid in list(dict.fromkeys(report.joined[ID].astype(str)))[:MAX_SERIES_CHARTS]:
            part = report.joined[report.joined[ID].astype(str) == uid]
            misses = report.misses[report.misses[ID].astype(str) == uid] if not report.misses.empty else None
            last.matplotlib(
                static.forecast_vs_actual(part, title=f"{uid}: forecast vs actual", misses=misses),
                fmt=figure_format,
                name="forecast-vs-actual",
            )
        if report.joined[ID].nunique() > MAX_SERIES_CHARTS:
            last.note(
                f"Charts for {MAX_SERIES_CHARTS} of {report.joined[ID].nunique()} series; the numbers cover all of them."
            )
        if len(report.daily) > 1:
            last.matplotlib(static.daily_error(report.daily, base), fmt=figure_format, name="daily-error")
        if report.versions_used:
            last.note(f"Forecasts made by version(s) {', '.join('v' + v for v in report.versions_used)}.")
    else:
        last.empty("Nothing to show: " + _missing_reason(report))

    # ------------------------------------------------------------------------------ accuracy
    acc = doc.section(
        "accuracy",
        "Accuracy against the model's baseline",
        "The period's errors next to what the backtest and the held-out check measured before deployment.",
    )
    if metrics:
        rows = []
        for key, label in (
            ("mae", "MAE"),
            ("rmse", "RMSE"),
            ("wape", "WAPE"),
            ("bias", "bias (forecast − actual)"),
            ("coverage", "interval coverage"),
        ):
            if key in metrics:
                live = metrics[key]
                backtest = model.backtest(key)
                holdout = model.holdout(key)
                rows.append(
                    {
                        "metric": label,
                        "this period": live,
                        "backtest": backtest,
                        "held-out": holdout,
                        "ratio to backtest": live / backtest if backtest else None,
                    }
                )
        acc.table(pd.DataFrame(rows), text_columns=["metric"])
        if base:
            ratio = metrics["mae"] / base
            verdict = (
                "in line with" if ratio <= 1.2 else "somewhat worse than" if ratio <= 1.5 else "clearly worse than"
            )
            acc.note(f"The error this period is {verdict} the backtest ({ratio:.2f}× its MAE).")
    else:
        acc.empty("No accuracy yet: " + _missing_reason(report))

    # -------------------------------------------------------------------------------- misses
    miss = doc.section("misses", "Largest misses", "The timestamps where the forecast was furthest from what happened.")
    if not report.misses.empty:
        shown = report.misses.rename(
            columns={TIME: "time (UTC)", ID: "series", POINT: "forecast", TARGET: "actual", "model_version": "version"}
        )
        shown["time (UTC)"] = shown["time (UTC)"].dt.strftime("%Y-%m-%d %H:%M")
        miss.table(shown, text_columns=["time (UTC)", "series", "inside interval", "version"])
    else:
        miss.empty("No misses to list: " + _missing_reason(report))

    # --------------------------------------------------------------------------------- drift
    drift = doc.section("drift", "Drift")
    if report.drift.empty:
        drift.empty("No drift checks yet: the monitoring has not compared recent data with the training data.")
    else:
        drift.note(report.drift.status_line())
        history = report.drift.history.tail(10).copy()
        history["checked_at"] = pd.to_datetime(history["checked_at"]).dt.strftime("%Y-%m-%d %H:%M")
        history["drifted"] = np.where(history["drifted"], "yes", "no")
        drift.table(
            history[[c for c in history.columns if c in ("checked_at", "kind", "drifted", "detail")]],
            text_columns=["checked_at", "kind", "drifted", "detail"],
        )

    # --------------------------------------------------------------------------------- model
    mdl = doc.section("model", "Model in use")
    facts = [
        ("registered model", model.name),
        ("version", f"v{model.version}"),
        ("alias", model.alias or ""),
        ("algorithm", model.winner or ""),
        ("trained on data up to", model.trained_until or ""),
        ("registered", _when(model.created)),
        ("promoted", model.tags.get("tidecast.promoted_at", "")),
        ("promotion check", model.tags.get("tidecast.gate_reason", "")),
        ("training run", model.run_id or ""),
    ]
    mdl.table(pd.DataFrame([(k, v) for k, v in facts if v], columns=["", "value"]), text_columns=["", "value"])

    # ---------------------------------------------------------------------------- next week
    nxt = doc.section("next-week", f"Next {_duration(report.period)}: the forecast")
    if not report.ahead.empty:
        first, final = report.ahead[TIME].min(), report.ahead[TIME].max()
        for uid in list(dict.fromkeys(report.ahead[ID].astype(str)))[:MAX_SERIES_CHARTS]:
            part = report.ahead[report.ahead[ID].astype(str) == uid]
            hist = report.recent[report.recent[ID].astype(str) == uid] if not report.recent.empty else pd.DataFrame()
            nxt.matplotlib(
                static.forecast_ahead(hist, part, title=f"{uid}: forecast from {_when(first)} UTC"),
                fmt=figure_format,
                name="forecast-ahead",
            )
        covered = final - first
        if covered + pd.Timedelta(hours=1) < report.period:
            nxt.note(
                f"The stored forecast covers {_when(first)} → {_when(final)} UTC, less than the full period "
                "(the model forecasts its trained horizon at a time)."
            )
        nxt.table(_daily_outlook(report.ahead), text_columns=["day"])
    else:
        nxt.empty("No forecast beyond the last actual is in the prediction store yet.")
    return doc.render(toc=False)


def _missing_reason(report: ClientReport) -> str:
    if not report.has_predictions:
        return f"no forecasts of model '{report.model.name}' were logged yet."
    if not report.has_actuals:
        return "no actuals have arrived yet."
    return f"no forecast of the last {_duration(report.period)} has a matching actual yet."


def _daily_outlook(ahead: pd.DataFrame) -> pd.DataFrame:
    band = widest_band(ahead)
    grouped = ahead.groupby(ahead[TIME].dt.floor("1D"))
    out = pd.DataFrame({"mean forecast": grouped[POINT].mean(), "peak forecast": grouped[POINT].max()})
    if band is not None:
        out[f"lowest {band[0]}"] = grouped[band[0]].min()
        out[f"highest {band[1]}"] = grouped[band[1]].max()
    out = out.rename_axis("day").reset_index()
    out["day"] = out["day"].dt.strftime("%a %Y-%m-%d")
    return out


def write(report: ClientReport, path: str | Path, *, fmt: str = "html") -> Path:
    """Render ``report`` to ``path`` as HTML or PDF (WeasyPrint)."""
    if fmt not in FORMATS:
        raise TidecastError(f"--format: unknown format {fmt!r} (use html or pdf)")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        target.write_text(render_html(report), encoding="utf-8")
        return target
    html = render_html(report, figure_format="png")
    to_pdf(html, target)
    return target


def to_pdf(html: str, path: Path) -> Path:
    """An HTML page (no scripts) printed to PDF with WeasyPrint."""
    try:
        weasyprint = require("weasyprint", "PDF output (--format pdf)")
    except OSError as exc:  # the Pango/Cairo system libraries are missing
        raise TidecastError(f"PDF output needs WeasyPrint's system libraries (pango): {exc}") from None
    HTML = weasyprint.HTML
    import logging

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    HTML(string=html, base_url=str(path.parent)).write_pdf(str(path))
    return path


def default_path(spec: Any, report: ClientReport, fmt: str) -> Path:
    """``.tidecast/reports/client-<model>-v<version>-<end date>.<fmt>``."""
    end = report.end.strftime("%Y%m%d") if report.end is not None else "empty"
    return spec.state_dir / "reports" / f"client-{report.model.name}-v{report.model.version}-{end}.{fmt}"


__all__ = ["FORMATS", "ClientReport", "default_path", "gather", "parse_period", "render_html", "to_pdf", "write"]
