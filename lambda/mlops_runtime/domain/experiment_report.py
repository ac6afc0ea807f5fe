"""The decision report of one experiment as Markdown or a self-contained HTML page (pure, stdlib only).

Input: the body of ``GET /v1/experiments/{endpoint}`` (``inference_api.summarize_experiment``). The
page shows the outcome and why, per arm the matured counts, conversion and its anytime-valid
interval, the effect of the leader over each other arm with its interval, the statistics against
the threshold at the last look, the looks taken, traffic and the regret spent (estimated from the
observed means), and two inline SVG plots over the looks: each arm's interval narrowing, and the
test's statistics against the minimum effect. Served by the API with ``?format=html|markdown`` and
written by ``python -m mlops_platform.tools.experiment_report``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["estimated_regret", "render_html", "render_markdown"]

_COLOURS = ("#1c7ed6", "#2b8a3e", "#e8590c", "#ae3ec9", "#868e96", "#f08c00", "#0ca678", "#c92a2a", "#5c940d", "#364fc7")
_OUTCOME_TEXT = {
    "winner": "Winner",
    "no_meaningful_difference": "No meaningful difference",
    "stopped_at_limit": "Stopped at a limit",
    "keep_running": "Keep running",
}


def estimated_regret(evidence: Mapping[str, Any] | None) -> float | None:
    """Conversions lost to the arms that were not the best, estimated from the observed means:
    ``sum over arms of n * (best mean - arm mean)`` (matured predictions)."""
    arms = [arm for arm in (evidence or {}).get("arms", []) if arm.get("mean") is not None]
    if not arms:
        return None
    best = max(arm["mean"] for arm in arms)
    return sum(arm["invocations"] * (best - arm["mean"]) for arm in arms)


def _when(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _percent(value: Any, digits: int = 2) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{100 * value:.{digits}f} %"


def _points(value: Any, digits: int = 2) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{100 * value:+.{digits}f} pt"


def _headline(summary: Mapping[str, Any]) -> tuple[str, str]:
    decision = summary.get("decision") or {}
    evidence = decision or summary.get("evidence") or {}
    outcome = decision.get("outcome") or evidence.get("outcome") or "keep_running"
    return _OUTCOME_TEXT.get(outcome, outcome), evidence.get("reason") or "no look taken yet"


def _tables(summary: Mapping[str, Any]) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """(arms, differences, test) rows, shared by both formats."""
    decision = summary.get("decision") or {}
    evidence = decision or summary.get("evidence") or {}
    intervals = {arm["arm"]: arm for arm in evidence.get("arms", [])}
    arms = [["arm", "traffic share", "served", "matured", "conversions", "conversion", "anytime-valid interval"]]
    for arm in summary.get("arms", []):
        matured = intervals.get(arm["arm"], {})
        arms.append([arm["arm"], _percent(arm.get("weight"), 0), str(arm.get("invocations", 0)),
                     str(matured.get("invocations", "-")), f"{matured.get('reward_sum', 0):g}" if matured else "-",
                     _percent(matured.get("mean")),
                     f"[{_percent(matured.get('lower'))}, {_percent(matured.get('upper'))}]" if matured else "-"])
    differences = [["effect", "observed", "anytime-valid interval"]]
    for item in evidence.get("differences", []):
        differences.append([f"{item['arm']} - {item['other']}", _points(item.get("difference")),
                            f"[{_points(item.get('lower'))}, {_points(item.get('upper'))}]"])
    threshold = evidence.get("threshold")
    regret = estimated_regret(evidence)
    test = [["", ""],
            ["minimum effect", _points(threshold).lstrip("+")],
            ["alpha (wrong decision at any number of looks)", f"{evidence.get('alpha', '-')}"],
            ["winner statistic: smallest lower bound of leader - other (winner above the minimum effect)",
             _points(evidence.get("winner_statistic"), 3)],
            ["equivalence statistic: largest bound of any difference (no meaningful difference below it)",
             _points(evidence.get("equivalence_statistic"), 3).lstrip("+")],
            ["looks taken", str(evidence.get("looks", summary.get("steps", 0)))],
            ["matured predictions", str(evidence.get("matured_invocations", "-"))],
            ["regret spent (conversions, estimated)", "-" if regret is None else f"{regret:.1f}"],
            ["decided at", _when(decision.get("decided_at"))],
            ["updated at", _when(summary.get("updated_at"))]]
    return arms, differences, test


def _markdown_table(rows: Sequence[Sequence[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def render_markdown(summary: Mapping[str, Any]) -> str:
    """The report as Markdown (tables; the plots are in the HTML page)."""
    title, reason = _headline(summary)
    arms, differences, test = _tables(summary)
    parts = [f"# Experiment {summary.get('experiment')} (endpoint {summary.get('endpoint')}, round {summary.get('round', 1)})",
             f"**{title}.** {reason}", "## Arms", _markdown_table(arms)]
    if len(differences) > 1:
        parts += ["## Effect", _markdown_table(differences)]
    parts += ["## Test", _markdown_table(test)]
    return "\n\n".join(parts) + "\n"


# --- inline SVG ---------------------------------------------------------------------------------


def _svg_chart(title: str, series: Sequence[Mapping[str, Any]], x_label: str, y_label: str,
               lines: Sequence[tuple[float, str]] = (), percent: bool = True) -> str:
    """A line chart: each series ``{"name", "x", "y", "low", "high"}`` (band optional), horizontal
    reference ``lines`` ``(y, label)``. 640 x 280 px."""
    width, height, left, right, top, bottom = 640, 280, 64, 16, 28, 40
    xs = [x for item in series for x in item["x"]]
    ys = [y for item in series for key in ("y", "low", "high") for y in item.get(key) or [] if y is not None]
    ys += [y for y, _ in lines]
    if not xs or not ys:
        return ""
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or 0.01
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    fmt = (lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:g}")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
           'fill="none" stroke="#ced4da"/>']
    for step in range(5):
        y = y0 + (y1 - y0) * step / 4
        out.append(f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{fmt(y)}</text>')
    for step in range(5):
        x = x0 + (x1 - x0) * step / 4
        out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 14}" text-anchor="middle">{x:,.0f}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">{html.escape(x_label)}</text>')
    out.append(f'<text x="12" y="{(top + height - bottom) / 2}" transform="rotate(-90 12 {(top + height - bottom) / 2})" '
               f'text-anchor="middle">{html.escape(y_label)}</text>')
    for y, label in lines:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#c92a2a" '
                   'stroke-dasharray="4 3"/>')
        out.append(f'<text x="{width - right - 4}" y="{py(y) - 3:.1f}" text-anchor="end" fill="#c92a2a">'
                   f'{html.escape(label)}</text>')
    for index, item in enumerate(series):
        colour = _COLOURS[index % len(_COLOURS)]
        if item.get("low") and item.get("high"):
            upper = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(item["x"], item["high"]))
            lower = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in reversed(list(zip(item["x"], item["low"]))))
            out.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.18" stroke="none"/>')
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(item["x"], item["y"]) if y is not None)
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        out.append(f'<text x="{left + 8 + 110 * index}" y="{top + 14}" fill="{colour}">{html.escape(item["name"])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _plots(summary: Mapping[str, Any]) -> list[str]:
    looks = [look for look in summary.get("looks") or [] if isinstance(look.get("arms"), Mapping)]
    if not looks:
        return []
    matured = [sum(values[0] for values in look["arms"].values()) for look in looks]
    names = list(looks[-1]["arms"])
    series = []
    for name in names:
        rows = [look["arms"].get(name) for look in looks]
        series.append({"name": name, "x": matured,
                       "y": [row[1] / row[0] if row and row[0] else None for row in rows],
                       "low": [row[2] if row else None for row in rows],
                       "high": [row[3] if row else None for row in rows]})
    threshold = (summary.get("decision") or summary.get("evidence") or {}).get("threshold") or 0.0
    arms_chart = _svg_chart("Conversion per arm with its anytime-valid interval", series,
                            "matured predictions", "conversion")
    statistics = [{"name": "winner statistic", "x": matured, "y": [look.get("winner_statistic") for look in looks]},
                  {"name": "equivalence statistic", "x": matured,
                   "y": [look.get("equivalence_statistic") for look in looks]}]
    tests_chart = _svg_chart("The test's statistics against the minimum effect", statistics, "matured predictions",
                             "difference", lines=[(threshold, "minimum effect")])
    return [chart for chart in (arms_chart, tests_chart) if chart]


def _html_table(rows: Sequence[Sequence[str]]) -> str:
    head, *body = rows
    cells = "".join(f"<th>{html.escape(cell)}</th>" for cell in head)
    lines = [f"<table><thead><tr>{cells}</tr></thead><tbody>"]
    for row in body:
        lines.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def render_html(summary: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (inline SVG plots, no scripts, no external files)."""
    title, reason = _headline(summary)
    arms, differences, test = _tables(summary)
    name = html.escape(str(summary.get("experiment")))
    body = [f"<h1>Experiment {name}</h1>",
            f"<p>endpoint {html.escape(str(summary.get('endpoint')))}, round {summary.get('round', 1)}</p>",
            f'<p class="outcome"><strong>{html.escape(title)}.</strong> {html.escape(reason)}</p>',
            "<h2>Arms</h2>", _html_table(arms)]
    if len(differences) > 1:
        body += ["<h2>Effect</h2>", _html_table(differences)]
    body += ["<h2>Test</h2>", _html_table(test)]
    plots = _plots(summary)
    if plots:
        body += ["<h2>Over time</h2>", *plots]
    style = ("body{font-family:sans-serif;max-width:760px;margin:2em auto;color:#212529}"
             "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #dee2e6;padding:.3em .6em;"
             "text-align:left}th{background:#f1f3f5}.outcome{font-size:1.1em;background:#f1f3f5;padding:.6em}")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Experiment {name}</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
