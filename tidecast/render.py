"""How the CLI prints results: metric figures a reader can't misread, the leaderboard, the winner line.

Ratio metrics are computed and stored as fractions (``mape`` 0.007; see
:mod:`tidecast.evaluation.metrics`) and printed as percentages (``0.70 %``) under a heading that
says so (``mape %``). Stored values (MLflow, ``leaderboard.csv``, ``tidecast compare --format
csv|json``) keep the raw fractions.

>>> format_metric("mape", 0.007), format_metric("mase", 0.7123), metric_heading("smape")
('0.70 %', '0.712', 'smape %')
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

#: Metrics that are fractions of something: printed ×100 with a ``%`` (``coverage_80`` included).
PERCENT_METRICS = ("mape", "smape", "wape", "coverage")


def is_percent(metric: str) -> bool:
    """Whether ``metric`` (``mape``, ``coverage_80``...) is a fraction shown as a percentage."""
    name = str(metric).lower()
    return any(name == m or name.startswith(m + "_") for m in PERCENT_METRICS)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_metric(metric: str, value: Any, digits: int = 3) -> str:
    """``value`` of ``metric`` for a reader: ``0.70 %`` for a ratio metric, ``0.712`` otherwise ('' if missing)."""
    number = _finite(value)
    if number is None:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    if is_percent(metric):
        return f"{number * 100:.{max(digits - 1, 0)}f} %"
    return f"{number:.{digits}f}"


def metric_heading(metric: str) -> str:
    """A column heading: the metric's name, with ``%`` when its figures are percentages."""
    return f"{metric} %" if is_percent(metric) else str(metric)


def _relative(value: float, base: float) -> str:
    """``value`` against ``base`` in words, as the gate measures it (``(base - value) / |base|``, two
    decimals like the gate's line): ``27.91% worse``."""
    change = (base - value) / abs(base)
    if abs(change) < 0.00005:
        return "the same"
    return f"{abs(change):.2%} {'better' if change > 0 else 'worse'}"


def winner_summary(select: Mapping[str, Any], board: Any = None) -> str:
    """The winner line, naming the stretch each figure comes from; plain text.

    ``backtest folds``: the mean over the rolling-origin folds (what ranks the leaderboard);
    ``held-out``: the last horizon, scored after training on what precedes it (what the
    registry's gate judges, with the same ``(baseline - winner) / |baseline|`` improvement)::

        winner: lightgbm (lightgbm); backtest folds: MAPE 0.70 % vs snaive_week 1.12 % (37.50% better);
        held-out last 288 steps: MAPE 2.20 % vs snaive_week 1.72 % (27.91% worse);
        80 % interval covered 78.1 % of the fold points, 81.2 % held out
    """
    metric = str(select.get("metric") or "")
    label = metric.upper()
    winner, baseline = select.get("winner"), select.get("baseline")
    parts = [f"winner: {winner} ({select.get('kind')})"]

    backtest = _finite((select.get("backtest_metrics") or {}).get(metric))
    base_backtest = None
    if board is not None and baseline and metric in getattr(board, "columns", ()):
        rows = board[board["candidate"] == baseline]
        if len(rows) and str(rows["status"].iloc[0]) == "ok":
            base_backtest = _finite(rows[metric].iloc[0])
    if backtest is not None:
        text = f"backtest folds: {label} {format_metric(metric, backtest)}"
        improvement = _finite(select.get("improvement_over_baseline"))
        if baseline and baseline != winner and base_backtest is not None and base_backtest != 0:
            text += f" vs {baseline} {format_metric(metric, base_backtest)} ({_relative(backtest, base_backtest)})"
        elif baseline and baseline != winner and improvement is not None:
            text += f" ({abs(improvement):.2%} {'better' if improvement > 0 else 'worse'} than {baseline})"
        parts.append(text)

    holdout = _finite((select.get("holdout_metrics") or {}).get(metric))
    if holdout is not None:
        horizon = select.get("holdout_steps") or select.get("horizon")
        stretch = f"held-out last {horizon} steps" if horizon else "held-out"
        text = f"{stretch}: {label} {format_metric(metric, holdout)}"
        base_holdout = _finite((select.get("baseline_holdout_metrics") or {}).get(metric))
        if baseline and baseline == winner:
            text += " (the winner is the baseline)"
        elif baseline and base_holdout is not None and base_holdout != 0:
            text += f" vs {baseline} {format_metric(metric, base_holdout)} ({_relative(holdout, base_holdout)})"
        parts.append(text)
    parts.append(interval_summary(select))
    parts += [ensemble_summary(name, summary, metric) for name, summary in (select.get("ensembles") or {}).items()]
    return "; ".join(p for p in parts if p)


def interval_summary(select: Mapping[str, Any]) -> str:
    """The winner's widest interval, as calibrated: ``80 % interval covered 76.5 % of the fold
    points, 79.9 % held out`` (empty without quantiles; a side that was not scored is left out)."""
    backtest = select.get("backtest_metrics") or {}
    holdout = select.get("holdout_metrics") or {}
    levels = [int(k[len("coverage_"):]) for k in {*backtest, *holdout} if re.fullmatch(r"coverage_\d+", k)]
    if not levels:
        return ""
    level = max(levels)
    folds, held = (_finite(m.get(f"coverage_{level}")) for m in (backtest, holdout))
    shares = ([f"{100 * folds:.1f} % of the fold points"] if folds is not None else []) + (
        [f"{100 * held:.1f} % held out"] if held is not None else []
    )
    return f"{level} % interval covered " + ", ".join(shares) if shares else ""


def ensemble_summary(name: str, summary: dict[str, Any], metric: str) -> str:
    """Where an ensemble beats the best single candidate on the backtest and where it does not::

        ensemble ens (lightgbm 62%, seasonal_naive 38%): MASE 0.774 vs best single lightgbm 0.781;
        better on 2 of 3 folds (fold 0 with equal weights), 180 of 288 horizon steps, 1 of 1 series
    """
    weights = {k: float(v) for k, v in (summary.get("weights") or {}).items() if float(v) > 0}
    shown = ", ".join(f"{k} {v:.0%}" for k, v in sorted(weights.items(), key=lambda kv: -kv[1]))
    text = f"ensemble {name} ({shown})"
    versus = summary.get("versus_best_single") or {}
    if not versus:
        return text
    label = metric.upper()
    text += (
        f": backtest {label} {format_metric(metric, versus.get('ensemble_value'))} vs best single "
        f"{versus.get('single')} {format_metric(metric, versus.get('single_value'))}; better on "
        f"{versus.get('folds_won')} of {len(versus.get('per_fold') or [])} folds (fold 0 with equal weights), "
        f"{versus.get('steps_won')} of {versus.get('steps')} horizon steps, {versus.get('series_won')} of "
        f"{versus.get('series')} series"
    )
    return text


def leaderboard_table(
    board: Any, metric: str, *, per_series: dict[str, Any] | None = None, width: int | None = None
) -> Table:
    """The leaderboard as a rich table: rank, candidate, the metrics, times, status.

    Ratio metrics (:data:`PERCENT_METRICS`) are shown as percentages, their heading says so.

    With ``selection.scope: per_series`` (``per_series``: the backtest's per-series choice), a
    ``series won`` column tells how many series each candidate forecasts (the fallback's unjudged
    series included), and a last row gives the aggregate metrics of the per-series choice, to
    compare with each candidate used for every series.

    ``width`` (the terminal's): columns are left out, least useful first (kind, then the metrics
    other than the ranking one, times), rather than squeezing every cell to an ellipsis."""
    import pandas as pd

    unit = ", in %" if is_percent(metric) else ""
    table = Table(
        title=f"Leaderboard (ranked by {metric.upper()}{unit}, mean over backtest folds)", title_justify="left"
    )
    shown = ("mase", "mae", "rmse", "smape", "wape", "bias", "pinball", "coverage", "interval_width", "interval_score")
    metric_cols = [c for c in shown if c in board]
    if metric in board and metric not in metric_cols:
        metric_cols.insert(0, metric)
    won = "series_won" in board
    show_kind, show_times = True, True
    if width:
        longest = max([len(str(c)) for c in board["candidate"]] + [len("per-series choice") if per_series else 9])
        kind_width = max([len(str(k)) for k in board["kind"]] + [4]) + 3

        def needed() -> int:
            cols = 4 + longest + 3 + len(metric_cols) * 11 + (13 if won else 0) + 10  # #, candidate, metrics, status
            return cols + (kind_width if show_kind else 0) + (22 if show_times else 0)

        for item in (
            "kind", "bias", "pinball", "interval_width", "wape", "smape", "times", "rmse", "interval_score", "coverage",
            "mae", "mase",
        ):
            if needed() <= width:
                break
            if item == "kind":
                show_kind = False
            elif item == "times":
                show_times = False
            elif item != metric and item in metric_cols:
                metric_cols.remove(item)
    headings = {c: metric_heading(c) for c in metric_cols}
    columns = ["#", "candidate", *(["kind"] if show_kind else []), *headings.values(), *(["series won"] if won else [])]
    columns += [*(["fit s", "predict s"] if show_times else []), "status"]
    for column in columns:
        table.add_column(
            column,
            justify="right" if column not in {"candidate", "kind", "status"} else "left",
            no_wrap=column not in {"status"},
        )
    for _, row in board.iterrows():
        ok = row["status"] == "ok"
        rank = row["rank"]
        cells = ["–" if rank is None or pd.isna(rank) else str(rank), str(row["candidate"])]
        if show_kind:
            cells.append(str(row["kind"]))
        for column in metric_cols:
            value = row[column]
            cells.append("" if value is None or pd.isna(value) else format_metric(column, value))
        if won:
            cells.append(str(int(row["series_won"])))
        if show_times:
            cells += [f"{row['fit_seconds']:.1f}", f"{row['predict_seconds']:.2f}"]
        error = str(row.get("error") or "").splitlines()[0] if not ok else ""
        cells.append("[green]ok[/green]" if ok else f"[red]failed[/red]: {escape(error[:200])}")
        style = "bold" if str(row["rank"]) == "1" and ok else None
        table.add_row(*cells, style=style)
    if per_series:
        aggregate = per_series.get("aggregate") or {}
        cells = ["", "per-series choice", *(["per_series"] if show_kind else [])]
        cells += [format_metric(c, aggregate[c]) if c in aggregate else "" for c in metric_cols]
        if won:
            cells.append(str(sum(int(v) for v in (per_series.get("counts") or {}).values())))
        cells += [*(["", ""] if show_times else []), "[green]selected[/green]"]
        table.add_section()
        table.add_row(*cells, style="bold")
    return table


def per_series_summary(per_series: dict[str, Any], metric: str) -> str:
    """Two lines for ``selection.scope: per_series``: how the series' winners are distributed, and
    the aggregate metric both ways (each series by its own winner vs the best single candidate)."""
    counts = {k: int(v) for k, v in (per_series.get("counts") or {}).items() if int(v)}
    unjudged = list(per_series.get("unjudged") or [])
    fallback = per_series.get("fallback")
    spread = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    line = f"[bold]series won:[/bold] {spread}"
    if unjudged:
        shown = ", ".join(unjudged[:5]) + (f" and {len(unjudged) - 5} more" if len(unjudged) > 5 else "")
        line += f" (of which {len(unjudged)} too short to judge, given the fallback {fallback}: {escape(shown)})"
    ours = (per_series.get("aggregate") or {}).get(metric)
    glob = (per_series.get("global_aggregate") or {}).get(metric)
    both = f"[bold]{metric.upper()}:[/bold] per-series choice " + (
        "n/a" if ours is None else format_metric(metric, ours)
    )
    both += f" vs best global candidate {per_series.get('global_winner')} "
    both += "n/a" if glob is None else format_metric(metric, glob)
    if ours is not None and glob:
        both += f" ({(glob - ours) / abs(glob):+.1%})"
    return line + "\n" + both


def step_times_table(
    durations: dict[str, float],
    steps: list[str],
    *,
    elapsed: float | None = None,
    side_by_side: Sequence[Sequence[str]] = (),
    busy: float | None = None,
) -> Table:
    """Each step's share of the run: seconds and percent (cached steps: 0 s). Percentages are of the
    run's ``elapsed`` wall time when given (with a row for what lies outside the steps: planning, the
    pre-run check, loading cached outputs), else of the steps' total.

    ``side_by_side``: the groups of steps that ran at the same time; each keeps its own seconds, so
    the shares add up to more than 100 %, which the table's caption says. ``busy``: the seconds
    during which some step ran (overlaps counted once), for the row of what lies outside the steps.

    >>> step_times_table({"backtest": 30.0, "select": 10.0}, ["ingest", "backtest", "select"], elapsed=50.0).row_count
    5
    >>> step_times_table({"a": 3.0, "b": 2.0}, ["a", "b"], elapsed=4.0, side_by_side=[["a", "b"]], busy=3.5).caption
    'a and b ran side by side: their seconds overlap'
    """
    total = sum(float(v) for v in durations.values())
    base = elapsed if elapsed else total
    table = Table(title="Time per step", title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    groups = [list(g) for g in side_by_side if len(g) > 1]
    if groups:
        names = "; ".join(", ".join(g[:-1]) + f" and {g[-1]}" for g in groups)
        table.caption = f"{names} ran side by side: their seconds overlap"
        table.caption_justify = "left"

    def share(seconds: float) -> str:
        return f"{seconds / base:.0%}" if base > 0 else ""

    for name in steps:
        if name in durations:
            seconds = float(durations[name])
            table.add_row(name, f"{seconds:.1f}", share(seconds))
        else:
            table.add_row(f"[dim]{name}[/dim]", "[dim]cached[/dim]", "")
    if elapsed is not None:
        outside = max(0.0, elapsed - (busy if busy is not None else total))
        table.add_row("[dim]outside the steps[/dim]", f"[dim]{outside:.1f}[/dim]", f"[dim]{share(outside)}[/dim]")
        table.add_section()
        table.add_row("[bold]total[/bold]", f"[bold]{elapsed:.1f}[/bold]", "")
    return table
