"""The run report's page: sections of tables and charts, and the one self-contained HTML page
they render to (inline CSS, charts as PNG data URIs, so it opens anywhere without a network).

A bottom module: every stage's ``report_section`` builds its :class:`Section` with these
pieces, and ``cdp.report`` puts the sections on the page, so nothing here imports a stage.
A script on the page marks, once loaded, how many charts the browser decoded
(``<body data-charts-rendered>``), which the browser test reads.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Chart:
    """A rendered figure: a title and PNG bytes."""

    title: str
    png: bytes


@dataclass
class Section:
    """One part of the page: a heading, HTML fragments and charts."""

    title: str
    parts: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)

    def table(
        self, headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = ""
    ) -> None:
        self.parts.append(html_table(headers, rows, caption))

    def text(self, message: str) -> None:
        self.parts.append(f"<p>{html.escape(message)}</p>")


def _cell(value: Any) -> str:
    if value is None:
        return "<td class='none'>-</td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int):
        return f"<td class='num'>{value:,}</td>"
    if isinstance(value, float):
        text = f"{value:,.4f}" if abs(value) < 100 else f"{value:,.1f}"
        return f"<td class='num'>{text}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    """An escaped HTML table; numbers right-aligned with thousands separators."""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    if not body:
        body = f"<tr><td colspan='{len(headers)}' class='none'>none</td></tr>"
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], *, xlabel: str) -> Chart:
    """A horizontal bar chart as PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, max(2.2, 0.32 * len(labels) + 1.2)))
    ax.barh(list(labels)[::-1], list(values)[::-1], color="#3b6ea8")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    for i, v in enumerate(list(values)[::-1]):
        ax.annotate(f"{v:,.0f}", (v, i), xytext=(3, 0), textcoords="offset points", va="center")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return Chart(title, buf.getvalue())


def count_chart(title: str, counts: Mapping[str, int], *, xlabel: str) -> Chart:
    """:func:`bar_chart` of a label -> count mapping, in its order."""
    return bar_chart(title, list(counts), [float(v) for v in counts.values()], xlabel=xlabel)


def size_bucket_label(size: int, buckets: Sequence[tuple[int, int | None]]) -> str:
    """The bucket label (``"3-5"``, ``"101+"``) holding a cluster of ``size`` records."""
    for low, high in buckets:
        if size >= low and (high is None or size <= high):
            if high is None:
                return f"{low}+"
            return str(low) if low == high else f"{low}-{high}"
    return str(size)


def metric_table(metrics: Mapping[str, str], prefix: str) -> list[tuple[str, str]]:
    """``prefix.<name>`` metrics of a run-log row as sorted (name, value) pairs."""
    return sorted((k[len(prefix) :], v) for k, v in metrics.items() if k.startswith(prefix))


def as_float(value: str | None) -> float | None:
    """A run-log metric (text) as a number; None when absent or not a number."""
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


_PAGE_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d2330;background:#fff}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #3b6ea8;padding-bottom:3px;margin-top:34px}
.meta{color:#5b6474;font-size:.9em}
table{border-collapse:collapse;margin:10px 0 16px;font-size:.88em}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d5dae3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.none{color:#8a93a3}.failed{color:#b3261e;font-weight:600}.ok{color:#1e7a34}
.charts{display:flex;flex-wrap:wrap;gap:14px}.charts figure{margin:0}
figcaption{font-size:.85em;color:#5b6474}img.chart{max-width:560px;border:1px solid #e3e7ee}
"""

_RENDER_CHECK = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img.chart'));
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-charts-total', String(imgs.length));
  document.body.setAttribute('data-charts-rendered', String(ok));
});
"""


def render_page(title: str, meta: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page: inline CSS, tables, charts as data URIs, and the render check."""
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_PAGE_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "".join(f"<div class='meta'>{html.escape(m)}</div>" for m in meta),
        "<nav><p>"
        + " · ".join(f"<a href='#s{i}'>{html.escape(s.title)}</a>" for i, s in enumerate(sections))
        + "</p></nav>",
    ]
    for i, section in enumerate(sections):
        out.append(f"<section id='s{i}'><h2>{html.escape(section.title)}</h2>")
        out.extend(section.parts)
        if section.charts:
            out.append("<div class='charts'>")
            for chart in section.charts:
                data = base64.b64encode(chart.png).decode("ascii")
                alt = html.escape(chart.title)
                out.append(
                    f"<figure><img class='chart' alt='{alt}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{alt}</figcaption></figure>"
                )
            out.append("</div>")
        out.append("</section>")
    out.append(f"<script>{_RENDER_CHECK}</script></body></html>")
    return "".join(out)
