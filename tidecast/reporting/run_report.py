"""The run report: one self-contained HTML file per ``tidecast run`` (plotly inline, opens offline),
plus static PNGs of its key charts and CSV tables for MLflow.

Sections (their HTML ids): ``summary``; ``data`` (the cleaned series, with the gaps filled,
outliers clipped and duplicates merged marked); ``leaderboard``; ``backtest`` (each fold's
forecast of the top candidates against the actuals, with intervals); ``horizon`` (error by
horizon step); ``residuals`` (histogram, autocorrelation); ``coverage`` (interval coverage vs the
nominal level); ``explain`` (permutation importance, SHAP, fitted components).

A section that cannot be drawn says why in the report (and in :attr:`RunReport.warnings`) instead
of failing the run: the model is already trained and registered when the report is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

import tidecast
from tidecast.frames import ID, TIME
from tidecast.reporting import analysis, charts, static
from tidecast.reporting.html import Document, Section, fmt_number

#: Candidates (best first) drawn fold by fold, by horizon step and in the residual diagnostics.
TOP = 3


@dataclass
class RunReport:
    """A rendered run report: the HTML text, the static figures and the tables to log beside it."""

    html: str
    figures: dict[str, Any] = field(default_factory=dict)
    """``file stem -> matplotlib Figure`` (saved as ``plots/<stem>.png``)."""
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """``file stem -> table`` (saved as ``<stem>.csv``)."""
    warnings: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    charts: int = 0

    def write(self, folder: Path, *, name: str = "report.html") -> dict[str, Path]:
        """Write ``report.html``, ``plots/*.png`` and ``explain/*.csv`` into ``folder``; returns the paths."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"html": folder / name}
        paths["html"].write_text(self.html, encoding="utf-8")
        for stem, fig in self.figures.items():
            paths[f"plots/{stem}"] = static.save(fig, folder / "plots" / f"{stem}.png")
        for stem, table in self.tables.items():
            target = folder / f"{stem}.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(target, index=False)
            paths[stem] = target
        return paths


def _guard(section: Section, warnings: list[str], what: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception as exc:  # one broken chart must not cost the others
        message = f"{what} could not be drawn: {type(exc).__name__}: {exc}"
        section.error(message)
        warnings.append(message)


def _top(board: pd.DataFrame, n: int) -> list[str]:
    ok = board[board["status"] == "ok"] if "status" in board else board
    return [str(c) for c in ok["candidate"].head(n)]


def _step_smoothing(horizon: int) -> int:
    return max(1, horizon // 24)


def build_run_report(
    spec: Any,
    *,
    backtest: Mapping[str, Any],
    select: Mapping[str, Any],
    clean: pd.DataFrame,
    changes: pd.DataFrame | None = None,
    clean_summary: dict[str, Any] | None = None,
    explained: dict[str, Any] | None = None,
    tracking: dict[str, Any] | None = None,
    top: int = TOP,
) -> RunReport:
    """Assemble the run report of one training from the outputs of its steps."""
    started = time.perf_counter()
    board: pd.DataFrame = backtest["leaderboard"]
    metric = str(backtest.get("metric") or select.get("metric") or "mae")
    results = backtest.get("results") or {}
    winner = select.get("winner")
    names = _top(board, top)
    horizon = int(select.get("horizon") or spec.forecast_steps()[1])
    quantiles = list(select.get("quantiles") or spec.forecast.quantiles)
    season = int(backtest.get("season_length") or 1)
    tracking = tracking or {}
    run_id = str(tracking.get("run_id") or "")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = Document(
        f"{spec.project}: training report",
        subtitle=" · ".join(
            part
            for part in (
                f"run {run_id[:12]}" if run_id else "",
                f"winner {winner}" if winner else "",
                f"generated {generated}",
            )
            if part
        ),
    )
    warnings: list[str] = []
    figures: dict[str, Any] = {}
    tables: dict[str, pd.DataFrame] = {}

    # ---------------------------------------------------------------------------------- summary
    summary = doc.section("summary", "Summary")

    def draw_summary() -> None:
        holdout = (select.get("holdout_metrics") or {}).get(metric)
        improvement = select.get("improvement_over_baseline")
        registration = tracking.get("registration") or {}
        alias = registration.get("alias")
        cards = [
            ("winner", str(winner), str(select.get("kind") or ""), "good"),
            (
                f"held-out {metric.upper()}",
                fmt_number(holdout),
                f"backtest {fmt_number((select.get('backtest_metrics') or {}).get(metric))}",
                "",
            ),
        ]
        if improvement is not None and select.get("baseline"):
            cards.append(
                (
                    "backtest vs baseline",
                    f"{float(improvement):+.1%}",
                    f"baseline {select.get('baseline')}",
                    "good" if improvement > 0 else "warn",
                )
            )
        if registration:
            cards.append(
                (
                    "registry",
                    f"v{registration.get('version')} → {alias}",
                    str(registration.get("model_name") or ""),
                    "good" if alias == "champion" else "warn",
                )
            )
        cards.append(
            (
                "data",
                f"{clean[ID].nunique():,} series",
                f"{len(clean):,} rows, {clean[TIME].min():%Y-%m-%d} → {clean[TIME].max():%Y-%m-%d}",
                "",
            )
        )
        summary.kpis(cards)
        if registration.get("reason"):
            summary.note(f"Promotion gate: {registration.get('reason')}")
        summary.note(
            f"Horizon {horizon} steps of {spec.data.frequency}, {len(backtest.get('folds') or [])} backtest folds, "
            f"ranked by {metric.upper()}; quantiles {', '.join(f'{q:g}' for q in quantiles) or 'none'}."
        )

    _guard(summary, warnings, "the summary", draw_summary)

    # ------------------------------------------------------------------------------------- data
    data = doc.section(
        "data",
        "Data and cleaning",
        "The cleaned series the models were trained on. Marks show what cleaning changed: gaps filled, "
        "outliers clipped (with the original value) and duplicated timestamps merged.",
    )

    def draw_data() -> None:
        counts = clean_summary or {}
        rows = [
            ("rows read", counts.get("rows_in")),
            ("rows after cleaning", counts.get("rows_out", len(clean))),
            ("gaps filled", counts.get("gaps_filled")),
            ("longest gap (steps)", counts.get("longest_gap_steps")),
            ("outliers", counts.get("outliers")),
            ("duplicates", counts.get("duplicates")),
            ("readings moved onto the grid", counts.get("regularized")),
            ("rows trimmed", counts.get("trimmed")),
        ]
        table = pd.DataFrame([(k, v) for k, v in rows if v is not None], columns=["", "count"])
        if not table.empty:
            data.table(table, text_columns=[""])
        too_short = counts.get("series_too_short") or []
        if too_short:
            data.note(f"Series too short for the window and horizon, left out: {', '.join(map(str, too_short[:20]))}")
        views = analysis.series_views(clean, changes)
        if clean[ID].nunique() > len(views):
            data.note(f"Showing {len(views)} of {clean[ID].nunique():,} series (those with the most changes).")
        for i, view in enumerate(views):
            overview, recent = charts.cleaned_series(view, spec.data.target_column)
            data.plotly(overview, name="series-overview")
            data.plotly(recent, name="series-recent")
            if i == 0:
                figures["cleaning"] = static.cleaned_series(view)

    _guard(data, warnings, "the cleaned series", draw_data)

    # ------------------------------------------------------------------------------ leaderboard
    lb = doc.section("leaderboard", "Leaderboard", f"Every candidate's mean {metric.upper()} over the backtest folds.")

    def draw_leaderboard() -> None:
        lb.plotly(charts.leaderboard(board, metric, winner), name="leaderboard")
        figures["leaderboard"] = static.leaderboard(board, metric, winner)
        columns = [
            c
            for c in (
                "rank",
                "candidate",
                "kind",
                metric,
                "mae",
                "rmse",
                "wape",
                "bias",
                "coverage",
                "fit_seconds",
                "status",
            )
            if c in board.columns
        ]
        lb.table(board[list(dict.fromkeys(columns))], text_columns=["candidate", "kind", "status"])
        failed = board[board["status"] != "ok"] if "status" in board else board.iloc[0:0]
        for _, row in failed.iterrows():
            lb.note(
                f"{row['candidate']} failed: {str(row.get('error') or '').splitlines()[0] if row.get('error') else 'no detail'}"
            )
        for name, detail in (backtest.get("details") or {}).items():  # executor.global_models: where it trained
            training = str((detail or {}).get("training") or "")
            if training.startswith("distributed") or ": " in training:
                lb.note(f"{name} trained {training}.")

    _guard(lb, warnings, "the leaderboard", draw_leaderboard)

    # ------------------------------------------------------------------------------- backtest
    bt = doc.section(
        "backtest",
        "Backtest folds",
        f"Each fold's forecast of the best {len(names)} candidates against what happened, with the widest prediction interval.",
    )

    def draw_backtest() -> None:
        for i, name in enumerate(names):
            forecasts = getattr(getattr(results.get(name), "backtest", None), "forecasts", None)
            if not isinstance(forecasts, pd.DataFrame) or forecasts.empty:
                bt.empty(f"{name}: no backtest forecasts recorded")
                continue
            uid = str(forecasts[ID].astype(str).iloc[0])
            bt.plotly(charts.backtest_folds(forecasts, f"#{i + 1} {name}", uid, index=i), name="backtest-folds")
        if names:
            n_series = clean[ID].nunique()
            if n_series > 1:
                bt.note(f"Drawn for the first series of {n_series:,}; the metrics pool every series.")

    _guard(bt, warnings, "the backtest folds", draw_backtest)

    # ------------------------------------------------------------------------ error by horizon
    hz = doc.section("horizon", "Error by horizon step", f"How the error grows from step 1 to step {horizon}.")

    def draw_horizon() -> None:
        first = getattr(results.get(names[0]), "evaluation", None) if names else None
        shown = analysis.step_metric(first, metric)
        series = {}
        for name in names:
            values = analysis.per_step(getattr(results.get(name), "evaluation", None), shown)
            if values is not None:
                series[name] = values
        if not series:
            hz.empty("No per-step metrics were recorded.")
            return
        points = _step_smoothing(horizon)
        hz.plotly(charts.error_by_step(series, shown), name="error-by-step")
        if points > 1:
            hz.plotly(charts.error_by_step(series, shown, smooth_points=points), name="error-by-step-smoothed")
        figures["error_by_step"] = static.error_by_step(series, shown, smooth_points=points)
        tables["error_by_step"] = pd.DataFrame(series).rename_axis("step").reset_index()

    _guard(hz, warnings, "the error by horizon step", draw_horizon)

    # ------------------------------------------------------------------------------- residuals
    rs = doc.section(
        "residuals",
        "Residual diagnostics",
        "Backtest residuals (actual − forecast): their spread, and their autocorrelation (bars outside the dashed band "
        "are structure the model left on the table).",
    )
    nlags = max(1, min(horizon - 1, max(24, season)))

    def draw_residuals() -> None:
        items = []
        for i, name in enumerate(names):
            forecasts = getattr(getattr(results.get(name), "backtest", None), "forecasts", None)
            if isinstance(forecasts, pd.DataFrame) and not forecasts.empty:
                rs.plotly(charts.residual_diagnostics(forecasts, name, nlags=nlags, index=i), name="residuals")
                items.append((name, forecasts))
        if items:
            figures["residuals"] = static.residual_diagnostics(items, nlags=nlags)
        else:
            rs.empty("No backtest forecasts to diagnose.")

    _guard(rs, warnings, "the residual diagnostics", draw_residuals)

    # -------------------------------------------------------------------------------- coverage
    cv = doc.section(
        "coverage",
        "Interval coverage",
        "The share of actuals inside each prediction interval on the backtest, against its nominal level; the mean "
        "width and the interval (Winkler) score: the width plus 2/α times each miss (lower is better).",
    )

    def draw_coverage() -> None:
        ok_names = _top(board, len(board))
        table = analysis.coverage_table(results, ok_names, quantiles)
        if table.empty:
            cv.empty(
                "The spec asks for no symmetric quantile pair (e.g. 0.1 and 0.9): there are no intervals to check."
            )
            return
        cv.plotly(charts.coverage(table), name="coverage")
        figures["coverage"] = static.coverage(table)
        tables["coverage"] = table
        cv.table(table, text_columns=["candidate", "interval"])
        key, nominal = next(iter(analysis.nominal_levels(quantiles).items()))
        series = {}
        for name in names:
            values = analysis.per_step(getattr(results.get(name), "evaluation", None), key)
            if values is not None:
                series[name] = values
        if series:
            cv.plotly(
                charts.coverage_by_step(series, nominal, smooth_points=max(3, _step_smoothing(horizon))),
                name="coverage-by-step",
            )

    _guard(cv, warnings, "the interval coverage", draw_coverage)

    # --------------------------------------------------------------------------------- explain
    ex = doc.section(
        "explain",
        "Explainability",
        "Which inputs the models rely on. Permutation importance: how much worse the last backtest fold gets when a "
        "group of inputs is scrambled. SHAP: each feature's contribution to a tree model's forecasts. Components: "
        "what statistical models fitted.",
    )

    def draw_explain() -> None:
        explanations = (explained or {}).get("explanations") or {}
        if not explanations:
            ex.empty("Nothing was explained in this run.")
            return
        perm = {
            n: e.permutation for n, e in explanations.items() if e.permutation is not None and not e.permutation.empty
        }
        if perm:
            ex.heading("Permutation importance of feature groups")
            ex.plotly(charts.permutation(perm), name="permutation-importance")
            figures["permutation_importance"] = static.permutation(perm)
            tables["explain/permutation_importance"] = pd.concat(
                [t.assign(candidate=n) for n, t in perm.items()], ignore_index=True
            )
            ex.note(
                "lags: the target's history shuffled; calendar: timestamps shifted by a random non-whole number of days; "
                "exogenous: the exogenous columns shuffled. Mean of the repeats (error bars: their spread)."
            )
        for name, explanation in explanations.items():
            result = explanation.shap
            if result is None:
                continue
            ex.heading(f"SHAP: {name}")
            ex.plotly(charts.shap_summary(result), name="shap-summary")
            ex.plotly(charts.shap_bar(result), name="shap-importance")
            for i, feature in enumerate(result.importance["feature"].head(3)):
                ex.plotly(charts.shap_dependence(result, feature, index=i), name="shap-dependence")
            stem = f"shap_summary_{name}"
            figures[stem] = static.shap_summary(result)
            tables[f"explain/shap_importance_{name}"] = result.importance
        for name, explanation in explanations.items():
            frame = explanation.components
            if frame is None or frame.empty:
                continue
            ex.heading(f"Fitted components: {name}")
            uid = str(frame[ID].iloc[0])
            ex.plotly(charts.components(frame, name, uid), name="components")
            figures[f"components_{name}"] = static.components(frame, name, uid)
        notes = [f"{n}: {note}" for n, e in explanations.items() for note in e.notes]
        for note in notes:
            ex.note(note)

    _guard(ex, warnings, "the explainability section", draw_explain)

    seconds = time.perf_counter() - started
    doc.footer = f"tidecast {tidecast.__version__} · {spec.project} · report built in {seconds:.1f} s · {generated}"
    html = doc.render()
    return RunReport(
        html=html,
        figures=figures,
        tables=tables,
        warnings=warnings,
        sections=[s.id for s in doc.sections],
        charts=doc.plotly_figures,
    )


__all__ = ["TOP", "RunReport", "build_run_report"]
