"""A small builder for self-contained HTML reports: sections of text, tables, KPIs and figures.

Plotly figures carry plotly.js inline (once per document, no CDN: the file opens offline);
matplotlib figures are inlined as SVG (or PNG) so they also print and convert to PDF.

>>> doc = Document("Run report", subtitle="power-demo")
>>> part = doc.section("leaderboard", "Leaderboard")
>>> part.note("3 candidates")
>>> "<h2" in doc.render()
True
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

_ids = itertools.count(1)

CSS = """
:root { --ink:#1f2933; --muted:#61707f; --line:#e3e8ee; --accent:#1f6feb; --good:#1a7f37; --warn:#9a6700; --bad:#cf222e; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink);
       margin: 0; background: #f6f8fa; line-height: 1.45; }
header.report { background: #0d1b2a; color: #fff; padding: 22px 32px 18px; }
header.report h1 { margin: 0 0 4px; font-size: 24px; font-weight: 600; }
header.report .subtitle { color: #c9d3dd; font-size: 14px; }
nav.toc { padding: 8px 32px; background: #fff; border-bottom: 1px solid var(--line); font-size: 13px; }
nav.toc a { margin-right: 14px; color: var(--accent); text-decoration: none; }
main { padding: 12px 32px 40px; max-width: 1280px; }
section.part { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
section.part h2 { font-size: 18px; margin: 0 0 6px; }
section.part h3 { font-size: 15px; margin: 18px 0 4px; }
p.intro { color: var(--muted); margin: 0 0 10px; font-size: 14px; }
p.note { font-size: 13px; color: var(--muted); margin: 6px 0; }
p.empty { font-size: 14px; padding: 12px 14px; background: #fff8e5; border: 1px solid #f0d58c; border-radius: 6px; }
p.error { font-size: 13px; padding: 8px 12px; background: #ffebe9; border: 1px solid #ffb3ad; border-radius: 6px; }
div.kpis { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0 4px; }
div.kpi { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 150px; background: #fbfcfd; }
div.kpi .label { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
div.kpi .value { font-size: 20px; font-weight: 600; margin-top: 2px; }
div.kpi .detail { font-size: 12px; color: var(--muted); }
div.kpi.good .value { color: var(--good); } div.kpi.warn .value { color: var(--warn); } div.kpi.bad .value { color: var(--bad); }
table.data { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: right; }
table.data th { background: #f6f8fa; font-weight: 600; }
table.data td.text, table.data th.text { text-align: left; }
div.figure { margin: 8px 0 4px; }
div.figure .caption { font-size: 12px; color: var(--muted); margin-top: 2px; }
div.static-figure img, div.static-figure svg { max-width: 100%; height: auto; }
footer.report { color: var(--muted); font-size: 12px; padding: 0 32px 24px; }
@media print {
  body { background: #fff; }
  nav.toc { display: none; }
  main { padding: 0 6mm; max-width: none; }
  section.part { border: none; padding: 4mm 0; margin: 0; break-inside: avoid; }
  h2, h3, p.intro { break-after: avoid; }
  div.figure, table.data { page-break-inside: avoid; }
  header.report { padding: 6mm; }
}
@page { size: A4; margin: 12mm 10mm; }
"""


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def fmt_number(value: Any, digits: int = 3) -> str:
    """A compact number: ``1.23``, ``12.3``, ``1,234``; empty for missing values."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if number != number:
        return ""
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.{digits}g}" if abs(number) < 1 else f"{number:.{max(1, digits - 1)}f}".rstrip("0").rstrip(".")


@dataclass
class Section:
    """One part of a document; add content in the order it should appear."""

    id: str
    title: str
    intro: str = ""
    parts: list[str] = field(default_factory=list)
    figures: int = 0

    def heading(self, text: str) -> None:
        self.parts.append(f"<h3>{esc(text)}</h3>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{esc(text)}</p>')

    def empty(self, text: str) -> None:
        """A plain statement that something is missing (no data yet...)."""
        self.parts.append(f'<p class="empty" data-empty="1">{esc(text)}</p>')

    def error(self, text: str) -> None:
        self.parts.append(f'<p class="error" data-error="1">{esc(text)}</p>')

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def kpis(self, items: Iterable[tuple[str, str, str, str]]) -> None:
        """Cards of ``(label, value, detail, tone)``; tone is '', 'good', 'warn' or 'bad'."""
        cards = "".join(
            f'<div class="kpi {esc(tone)}"><div class="label">{esc(label)}</div>'
            f'<div class="value">{esc(value)}</div><div class="detail">{esc(detail)}</div></div>'
            for label, value, detail, tone in items
        )
        self.parts.append(f'<div class="kpis">{cards}</div>')

    def table(
        self, frame: pd.DataFrame, *, digits: int = 3, text_columns: Sequence[str] = (), max_rows: int = 200
    ) -> None:
        if frame is None or frame.empty:
            return
        shown = frame.head(max_rows)
        text_cols = set(text_columns) | {c for c in shown.columns if not pd.api.types.is_numeric_dtype(shown[c])}
        head = "".join(f'<th class="{"text" if c in text_cols else ""}">{esc(c)}</th>' for c in shown.columns)
        rows = []
        for _, row in shown.iterrows():
            cells = []
            for column in shown.columns:
                value = row[column]
                if column in text_cols:
                    cells.append(f'<td class="text">{esc("" if value is None or value != value else value)}</td>')
                else:
                    cells.append(f"<td>{esc(fmt_number(value, digits))}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        more = f'<p class="note">{len(frame) - max_rows} more rows not shown</p>' if len(frame) > max_rows else ""
        self.parts.append(
            f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>{more}'
        )

    def plotly(self, fig: Any, *, caption: str = "", height: int | None = None, name: str = "") -> None:
        """A plotly figure, drawn by the document's inline plotly.js."""
        div_id = f"fig-{self.id}-{next(_ids)}"
        height = height or int(fig.layout.height or 420)
        fig.update_layout(height=height)
        markup = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            default_height=f"{height}px",
            config={"displaylogo": False, "responsive": True},
        )
        label = f' data-chart="{esc(name)}"' if name else ""
        caption_html = f'<div class="caption">{esc(caption)}</div>' if caption else ""
        self.parts.append(f'<div class="figure plotly-figure"{label}>{markup}{caption_html}</div>')
        self.figures += 1

    def matplotlib(self, fig: Any, *, caption: str = "", fmt: str = "svg", name: str = "") -> None:
        """A matplotlib figure inlined as SVG (default) or PNG."""
        label = f' data-chart="{esc(name)}"' if name else ""
        caption_html = f'<div class="caption">{esc(caption)}</div>' if caption else ""
        self.parts.append(f'<div class="figure static-figure"{label}>{figure_markup(fig, fmt)}{caption_html}</div>')
        self.figures += 1

    def render(self) -> str:
        intro = f'<p class="intro">{esc(self.intro)}</p>' if self.intro else ""
        return f'<section class="part" id="{esc(self.id)}"><h2>{esc(self.title)}</h2>{intro}{"".join(self.parts)}</section>'


def figure_markup(fig: Any, fmt: str = "svg") -> str:
    """A matplotlib figure as inline markup: ``<svg>`` or an ``<img>`` with a PNG data URI."""
    buffer = io.BytesIO()
    if fmt == "svg":
        fig.savefig(buffer, format="svg")
        text = buffer.getvalue().decode("utf-8")
        return text[text.find("<svg") :]
    fig.savefig(buffer, format="png", dpi=110)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="chart" src="data:image/png;base64,{data}"/>'


class Document:
    """A report: a header, a table of contents, sections and a footer; :meth:`render` gives the HTML."""

    def __init__(self, title: str, *, subtitle: str = "", footer: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self.footer = footer
        self.sections: list[Section] = []

    def section(self, id: str, title: str, intro: str = "") -> Section:
        part = Section(id=id, title=title, intro=intro)
        self.sections.append(part)
        return part

    @property
    def plotly_figures(self) -> int:
        return sum(1 for s in self.sections for p in s.parts if "plotly-figure" in p)

    def render(self, *, toc: bool = True) -> str:
        scripts = ""
        if self.plotly_figures:
            from plotly.offline import get_plotlyjs

            scripts = f'<script type="text/javascript">{get_plotlyjs()}</script>'
        nav = ""
        if toc and len(self.sections) > 1:
            nav = (
                '<nav class="toc">'
                + "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in self.sections)
                + "</nav>"
            )
        body = "".join(s.render() for s in self.sections)
        footer = f'<footer class="report">{esc(self.footer)}</footer>' if self.footer else ""
        subtitle = f'<div class="subtitle">{esc(self.subtitle)}</div>' if self.subtitle else ""
        return (
            "<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(self.title)}</title><style>{CSS}</style>{scripts}</head>"
            f'<body><header class="report"><h1>{esc(self.title)}</h1>{subtitle}</header>{nav}<main>{body}</main>{footer}</body></html>\n'
        )


__all__ = ["CSS", "Document", "Section", "esc", "figure_markup", "fmt_number"]
