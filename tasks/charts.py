"""Inline SVG charts for the report: no JavaScript, no CDN, so the page reads offline, in a mail
client and on paper.

Each function returns `markupsafe.Markup` (safe to drop into an autoescaped template) and escapes
every label itself, because labels come from data (department names, journey stages, themes).
Charts use a `viewBox` and `width="100%"`, so they shrink with the screen instead of overflowing it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

FONT = ("-apple-system,'Segoe UI','Noto Sans CJK SC','Noto Sans SC','PingFang SC',"
        "'Microsoft YaHei',Roboto,Helvetica,Arial,sans-serif")
INK = "#1f2933"
MUTED = "#6b7785"
GRID = "#e4e7eb"
SERIES = "#2563eb"
LIMIT = "#c2410c"
TARGET = "#15803d"
SIGNAL = "#b91c1c"
# Diverging scale for "bad -> neutral -> good"; colour-blind tolerant (ColorBrewer RdYlBu-like).
BAD, MID, GOOD = (0xd7, 0x30, 0x27), (0xfe, 0xe0, 0x8b), (0x1a, 0x98, 0x50)
EMPTY = "#eef0f2"


@dataclass(frozen=True)
class TrendPoint:
    label: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    signal: bool = False


@dataclass(frozen=True)
class Limits:
    """Process-behaviour (XmR) limits of a KPI's history."""

    center: float
    lcl: float
    ucl: float


@dataclass(frozen=True)
class HeatCell:
    value: float | None
    n: int
    pain: bool = False
    insufficient: bool = False


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _text_width(text: str, size: float) -> float:
    """Rough rendered width: CJK glyphs are about one em, Latin about 0.58 em."""
    return sum(size if ord(ch) > 0x2E80 else size * 0.58 for ch in text)


def _clip(text: str, max_width: float, size: float) -> str:
    if _text_width(text, size) <= max_width:
        return text
    out = ""
    for ch in text:
        if _text_width(out + ch + "…", size) > max_width:
            break
        out += ch
    return out + "…"


def _svg(width: float, height: float, body: str, title: str, css_class: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" viewBox="0 0 {_f(width)} '
        f'{_f(height)}" width="100%" style="max-width:{_f(width)}px" preserveAspectRatio="xMinYMin meet" '
        f'role="img" '
        f'aria-label="{escape(title)}" font-family="{FONT}" data-chart="{css_class}">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi] (1-2-5 steps), for readable axes."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 0.5:
        ticks.append(round(t, 10))
        t += step
    return ticks


def trend_chart(points: Sequence[TrendPoint], *, limits: Limits | None = None,
                target: float | None = None, title: str = "", labels: dict[str, str] | None = None,
                digits: int = 1) -> Markup:
    """A KPI's last cycles as a line with interval whiskers, XmR control limits and the target.

    Points beyond the control limits (or flagged as signals) are drawn red: that is what makes a
    month-to-month move worth a head of department's attention, not any wiggle of the line.
    """
    lab = {"ucl": "UCL", "lcl": "LCL", "center": "mean", "target": "target", **(labels or {})}
    width, height = 560.0, 210.0
    left, right, top, bottom = 40.0, 92.0, 14.0, 30.0
    if not points:
        return _svg(width, 40, f'<text x="8" y="24" font-size="13" fill="{MUTED}">–</text>', title,
                    "trend")
    ys: list[float] = []
    for p in points:
        ys += [p.value] + [v for v in (p.ci_low, p.ci_high) if v is not None]
    if limits:
        ys += [limits.lcl, limits.ucl, limits.center]
    if target is not None:
        ys.append(target)
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.08 if hi > lo else max(abs(hi) * 0.05, 1.0)
    ticks = nice_ticks(lo - pad, hi + pad)
    y0, y1 = ticks[0], ticks[-1]
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(i: int) -> float:
        return left + (plot_w * (i + 0.5) / len(points))

    def sy(v: float) -> float:
        return top + plot_h * (1 - (v - y0) / (y1 - y0))

    parts: list[str] = []
    for t in ticks:
        y = sy(t)
        parts.append(f'<line x1="{_f(left)}" x2="{_f(width - right)}" y1="{_f(y)}" y2="{_f(y)}" '
                     f'stroke="{GRID}" stroke-width="1"/>'
                     f'<text x="{_f(left - 6)}" y="{_f(y + 4)}" font-size="11" fill="{MUTED}" '
                     f'text-anchor="end">{escape(_f(t))}</text>')

    tags: list[tuple[float, str, str]] = []  # (y, colour, text) of the line labels

    def hline(v: float, color: str, dash: str, text: str, cls: str) -> None:
        y = sy(v)
        parts.append(f'<line class="{cls}" x1="{_f(left)}" x2="{_f(width - right)}" y1="{_f(y)}" '
                     f'y2="{_f(y)}" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}"/>')
        tags.append((y, color, text))

    if limits:
        hline(limits.ucl, LIMIT, "6 4", f"{lab['ucl']} {limits.ucl:.{digits}f}", "ucl")
        hline(limits.lcl, LIMIT, "6 4", f"{lab['lcl']} {limits.lcl:.{digits}f}", "lcl")
        hline(limits.center, MUTED, "2 3", f"{lab['center']} {limits.center:.{digits}f}", "center")
    if target is not None:
        hline(target, TARGET, "1 0", f"{lab['target']} {target:.{digits}f}", "target")
    # Labels of lines that lie close together are pushed apart so they stay readable.
    tags.sort()
    placed: list[float] = []
    for y, _, _ in tags:
        placed.append(max(y, placed[-1] + 13) if placed else y)
    overflow = (placed[-1] - (height - bottom + 4)) if placed else 0
    if overflow > 0:
        placed = [y - overflow for y in placed]
    for (_, color, text), y in zip(tags, placed, strict=True):
        parts.append(f'<text x="{_f(width - right + 6)}" y="{_f(y + 4)}" font-size="11" '
                     f'fill="{color}">{escape(text)}</text>')
    for i, p in enumerate(points):
        if p.ci_low is not None and p.ci_high is not None:
            parts.append(f'<line x1="{_f(sx(i))}" x2="{_f(sx(i))}" y1="{_f(sy(p.ci_low))}" '
                         f'y2="{_f(sy(p.ci_high))}" stroke="{SERIES}" stroke-opacity="0.3" '
                         f'stroke-width="5" stroke-linecap="round"/>')
    path = " ".join(f"{_f(sx(i))},{_f(sy(p.value))}" for i, p in enumerate(points))
    parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="{SERIES}" '
                 f'stroke-width="2.2" stroke-linejoin="round"/>')
    step = max(1, math.ceil(len(points) / 7))
    for i, p in enumerate(points):
        beyond = p.signal or bool(limits and (p.value > limits.ucl or p.value < limits.lcl))
        last = i == len(points) - 1
        color = SIGNAL if beyond else SERIES
        r = 5.5 if last else 3.5
        parts.append(f'<circle cx="{_f(sx(i))}" cy="{_f(sy(p.value))}" r="{r}" fill="{color}" '
                     f'stroke="#fff" stroke-width="1.5"><title>{escape(p.label)}: '
                     f'{p.value:.{digits}f}</title></circle>')
        if last:
            parts.append(f'<text x="{_f(sx(i))}" y="{_f(sy(p.value) - 10)}" font-size="12" '
                         f'font-weight="700" fill="{color}" text-anchor="middle">'
                         f'{p.value:.{digits}f}</text>')
        if i % step == 0 or last:
            parts.append(f'<text x="{_f(sx(i))}" y="{_f(height - 10)}" font-size="11" fill="{MUTED}" '
                         f'text-anchor="middle">{escape(p.label)}</text>')
    return _svg(width, height, "".join(parts), title, "trend")


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t),
            round(a[2] + (b[2] - a[2]) * t))


def score_color(value: float, lo: float, hi: float, higher_is_better: bool = True) -> str:
    """Fill colour for a value on a bad-to-good scale between lo and hi."""
    t = 0.5 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    if not higher_is_better:
        t = 1 - t
    rgb = _mix(BAD, MID, t * 2) if t < 0.5 else _mix(MID, GOOD, (t - 0.5) * 2)
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _ink_on(fill: str) -> str:
    r, g, b = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return "#ffffff" if 0.299 * r + 0.587 * g + 0.114 * b < 140 else INK


def heatmap(rows: Sequence[tuple[str, str]], cols: Sequence[tuple[str, str]],
            cells: dict[tuple[str, str], HeatCell], *, lo: float, hi: float,
            higher_is_better: bool = True, title: str = "", pain_label: str = "pain point",
            insufficient_label: str = "n too small", digits: int = 0) -> Markup:
    """Journey map: rows (journey stages) x columns (touchpoints) coloured by a KPI.

    `rows`/`cols` are (key, display label) pairs; `cells` is keyed by (row key, col key).
    Pain points get a heavy outline and a marker, so they survive black-and-white printing;
    cells with too few answers are grey and say so instead of showing a misleading colour.
    """
    cell_w, cell_h, size = 112.0, 52.0, 13.0
    label_w = min(170.0, max([_text_width(lbl, size) for _, lbl in rows] + [60.0]) + 14)
    head_h = 30.0
    legend_h = 34.0
    width = label_w + cell_w * max(len(cols), 1) + 8
    height = head_h + cell_h * max(len(rows), 1) + legend_h
    parts: list[str] = []
    for j, (_, lbl) in enumerate(cols):
        x = label_w + cell_w * (j + 0.5)
        parts.append(f'<text x="{_f(x)}" y="{_f(head_h - 10)}" font-size="{size}" fill="{INK}" '
                     f'font-weight="600" text-anchor="middle">{escape(_clip(lbl, cell_w - 6, size))}'
                     f"</text>")
    for i, (rkey, rlbl) in enumerate(rows):
        y = head_h + cell_h * i
        parts.append(f'<text x="{_f(label_w - 8)}" y="{_f(y + cell_h / 2 + 4)}" font-size="{size}" '
                     f'fill="{INK}" font-weight="600" text-anchor="end">'
                     f"{escape(_clip(rlbl, label_w - 12, size))}</text>")
        for j, (ckey, clbl) in enumerate(cols):
            x = label_w + cell_w * j
            cell = cells.get((rkey, ckey))
            tip = f"{rlbl} × {clbl}"
            if cell is None or cell.value is None or cell.n == 0:
                parts.append(f'<rect x="{_f(x + 2)}" y="{_f(y + 2)}" width="{_f(cell_w - 4)}" '
                             f'height="{_f(cell_h - 4)}" rx="4" fill="{EMPTY}"><title>{escape(tip)}'
                             f'</title></rect><text x="{_f(x + cell_w / 2)}" y="{_f(y + cell_h / 2 + 4)}" '
                             f'font-size="12" fill="{MUTED}" text-anchor="middle">–</text>')
                continue
            if cell.insufficient:
                fill, ink = "#d9dde2", MUTED
            else:
                fill = score_color(cell.value, lo, hi, higher_is_better)
                ink = _ink_on(fill)
            stroke = f' stroke="{INK}" stroke-width="3"' if cell.pain else ""
            cls = "cell pain" if cell.pain else "cell"
            parts.append(f'<rect class="{cls}" x="{_f(x + 2)}" y="{_f(y + 2)}" width="{_f(cell_w - 4)}" '
                         f'height="{_f(cell_h - 4)}" rx="4" fill="{fill}"{stroke}>'
                         f"<title>{escape(tip)}: {cell.value:.{digits}f} (n={cell.n})</title></rect>")
            parts.append(f'<text x="{_f(x + cell_w / 2)}" y="{_f(y + 25)}" font-size="16" '
                         f'font-weight="700" fill="{ink}" text-anchor="middle">'
                         f"{cell.value:.{digits}f}</text>"
                         f'<text x="{_f(x + cell_w / 2)}" y="{_f(y + 41)}" font-size="11" fill="{ink}" '
                         f'text-anchor="middle">n={cell.n}</text>')
            if cell.pain:
                parts.append(f'<circle cx="{_f(x + cell_w - 11)}" cy="{_f(y + 11)}" r="7" fill="{INK}"/>'
                             f'<text x="{_f(x + cell_w - 11)}" y="{_f(y + 15)}" font-size="11" '
                             f'font-weight="700" fill="#fff" text-anchor="middle">!</text>')
    # Legend: the colour ramp, the pain marker, the grey "too few answers".
    ly = head_h + cell_h * max(len(rows), 1) + 10
    ramp = [score_color(lo + (hi - lo) * k / 4, lo, hi, higher_is_better) for k in range(5)]
    stops = "".join(f'<stop offset="{k * 25}%" stop-color="{c}"/>' for k, c in enumerate(ramp))
    parts.append(f'<defs><linearGradient id="heat-ramp">{stops}</linearGradient></defs>'
                 f'<text x="{_f(label_w - 8)}" y="{_f(ly + 11)}" font-size="11" fill="{MUTED}" '
                 f'text-anchor="end">{escape(_f(lo))}</text>'
                 f'<rect x="{_f(label_w)}" y="{_f(ly)}" width="120" height="14" rx="3" '
                 f'fill="url(#heat-ramp)"/>'
                 f'<text x="{_f(label_w + 126)}" y="{_f(ly + 11)}" font-size="11" fill="{MUTED}">'
                 f"{escape(_f(hi))}</text>"
                 f'<circle cx="{_f(label_w + 170)}" cy="{_f(ly + 7)}" r="7" fill="{INK}"/>'
                 f'<text x="{_f(label_w + 170)}" y="{_f(ly + 11)}" font-size="11" font-weight="700" '
                 f'fill="#fff" text-anchor="middle">!</text>'
                 f'<text x="{_f(label_w + 182)}" y="{_f(ly + 11)}" font-size="11" fill="{MUTED}">'
                 f"{escape(pain_label)}</text>"
                 f'<rect x="{_f(label_w + 190 + _text_width(pain_label, 11))}" y="{_f(ly)}" width="14" '
                 f'height="14" rx="3" fill="#d9dde2"/>'
                 f'<text x="{_f(label_w + 210 + _text_width(pain_label, 11))}" y="{_f(ly + 11)}" '
                 f'font-size="11" fill="{MUTED}">{escape(insufficient_label)}</text>')
    width = max(width, label_w + 230 + _text_width(pain_label, 11) + _text_width(insufficient_label, 11))
    return _svg(width, height, "".join(parts), title, "heatmap")


def bar_chart(items: Sequence[tuple[str, float, str]], *, title: str = "", color: str = SIGNAL,
              max_value: float | None = None) -> Markup:
    """Horizontal bars (label, value, annotation), largest first as given; used for complaint themes."""
    size, row_h = 12.0, 26.0
    label_w = min(180.0, max([_text_width(lbl, size) for lbl, _, _ in items] + [40.0]) + 12)
    width, bar_max = 560.0, 560.0 - label_w - 90
    height = row_h * max(len(items), 1) + 6
    top = max([v for _, v, _ in items] + [max_value or 0.0, 1e-9])
    parts = []
    for i, (lbl, value, note) in enumerate(items):
        y = 4 + row_h * i
        w = max(2.0, bar_max * value / top)
        parts.append(f'<text x="{_f(label_w - 8)}" y="{_f(y + 15)}" font-size="{size}" fill="{INK}" '
                     f'text-anchor="end">{escape(_clip(lbl, label_w - 12, size))}</text>'
                     f'<rect class="bar" x="{_f(label_w)}" y="{_f(y + 3)}" width="{_f(w)}" height="16" '
                     f'rx="3" fill="{color}" fill-opacity="0.85"><title>{escape(lbl)}: {escape(note)}'
                     f"</title></rect>"
                     f'<text x="{_f(label_w + w + 6)}" y="{_f(y + 15)}" font-size="11" fill="{MUTED}">'
                     f"{escape(note)}</text>")
    return _svg(width, height, "".join(parts), title, "bars")


def interval_bar(value: float | None, ci_low: float | None, ci_high: float | None,
                 target: float | None, *, lo: float, hi: float, color: str = SERIES) -> Markup:
    """A tiny bullet chart for a scorecard cell: the interval as a band, the value as a dot and
    the target as a tick, so "missed but inside the noise" is visible at a glance."""
    width, height = 100.0, 14.0

    def sx(v: float) -> float:
        t = 0.5 if hi <= lo else min(1.0, max(0.0, (v - lo) / (hi - lo)))
        return 3 + (width - 6) * t

    parts = [f'<rect x="0" y="6" width="{_f(width)}" height="2" fill="{GRID}"/>']
    if ci_low is not None and ci_high is not None:
        parts.append(f'<rect x="{_f(sx(ci_low))}" y="3" width="{_f(max(1.0, sx(ci_high) - sx(ci_low)))}" '
                     f'height="8" rx="2" fill="{color}" fill-opacity="0.3"/>')
    if target is not None:
        parts.append(f'<rect x="{_f(sx(target) - 1)}" y="0" width="2" height="14" fill="{INK}"/>')
    if value is not None:
        parts.append(f'<circle cx="{_f(sx(value))}" cy="7" r="3.5" fill="{color}"/>')
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" class="mini" viewBox="0 0 {_f(width)} '
                  f'{_f(height)}" width="{_f(width)}" height="{_f(height)}" aria-hidden="true">'
                  f'{"".join(parts)}</svg>')


@dataclass(frozen=True)
class MatrixPoint:
    """A driver on the priority matrix: importance (x, % of the explained variance) and performance
    (y, 0..100 of its scale), each with its interval; `rank` as shown ("=1" when tied)."""

    label: str
    x: float
    x_low: float
    x_high: float
    y: float
    y_low: float
    y_high: float
    rank: str
    fix: bool = False


def priority_matrix(points: Sequence[MatrixPoint], *, x_cut: float, y_cut: float, title: str,
                    x_label: str, y_label: str, quadrants: Sequence[str]) -> Markup:
    """Importance x performance, both with interval whiskers: the drivers to fix sit bottom right
    (important, performing below the average driver). `quadrants`: the labels of the top-left,
    top-right, bottom-left and bottom-right areas. Overlapping whiskers are the point: two drivers
    whose intervals overlap are not told apart, and the ranks say so ("=1")."""
    width, height = 560.0, 360.0
    left, right, top, bottom = 52.0, 16.0, 12.0, 44.0
    pw, ph = width - left - right, height - top - bottom
    x_hi = max([p.x_high for p in points] + [x_cut, 1.0]) * 1.08
    ys = [p.y_low for p in points] + [p.y_high for p in points] + [y_cut]
    y_lo, y_hi = max(0.0, min(ys) - 5), min(100.0, max(ys) + 5)
    if y_hi - y_lo < 10:
        y_lo, y_hi = max(0.0, y_lo - 5), min(100.0, y_hi + 5)

    def sx(v: float) -> float:
        return left + pw * min(1.0, max(0.0, v / x_hi))

    def sy(v: float) -> float:
        return top + ph * (1 - min(1.0, max(0.0, (v - y_lo) / (y_hi - y_lo))))

    parts = [f'<rect x="{_f(left)}" y="{_f(top)}" width="{_f(pw)}" height="{_f(ph)}" fill="none" '
             f'stroke="{GRID}"/>']
    for t in nice_ticks(0, x_hi):
        if t <= x_hi:
            parts.append(f'<text x="{_f(sx(t))}" y="{_f(top + ph + 14)}" font-size="10" fill="{MUTED}" '
                         f'text-anchor="middle">{_f(t)}%</text>')
    for t in nice_ticks(y_lo, y_hi):
        if y_lo <= t <= y_hi:
            parts.append(f'<text x="{_f(left - 6)}" y="{_f(sy(t) + 3)}" font-size="10" fill="{MUTED}" '
                         f'text-anchor="end">{_f(t)}</text>')
    parts.append(f'<line class="cut" x1="{_f(sx(x_cut))}" x2="{_f(sx(x_cut))}" y1="{_f(top)}" '
                 f'y2="{_f(top + ph)}" stroke="{MUTED}" stroke-dasharray="4 3"/>'
                 f'<line class="cut" x1="{_f(left)}" x2="{_f(left + pw)}" y1="{_f(sy(y_cut))}" '
                 f'y2="{_f(sy(y_cut))}" stroke="{MUTED}" stroke-dasharray="4 3"/>')
    corners = [(left + 6, top + 14, "start"), (left + pw - 6, top + 14, "end"),
               (left + 6, top + ph - 6, "start"), (left + pw - 6, top + ph - 6, "end")]
    for (x, y, anchor), text in zip(corners, quadrants, strict=False):
        parts.append(f'<text class="quadrant" x="{_f(x)}" y="{_f(y)}" font-size="11" fill="{MUTED}" '
                     f'text-anchor="{anchor}">{escape(text)}</text>')
    for p in points:
        color = SIGNAL if p.fix else SERIES
        cx, cy = sx(p.x), sy(p.y)
        tip = (f"{p.label} · {p.rank} · {_f(p.x)}% ({_f(p.x_low)}–{_f(p.x_high)}) · "
               f"{_f(p.y)} ({_f(p.y_low)}–{_f(p.y_high)})")
        parts.append(f'<g class="driver" data-rank="{escape(p.rank)}">'
                     f'<line x1="{_f(sx(p.x_low))}" x2="{_f(sx(p.x_high))}" y1="{_f(cy)}" y2="{_f(cy)}" '
                     f'stroke="{color}" stroke-opacity="0.5" stroke-width="2"/>'
                     f'<line x1="{_f(cx)}" x2="{_f(cx)}" y1="{_f(sy(p.y_low))}" y2="{_f(sy(p.y_high))}" '
                     f'stroke="{color}" stroke-opacity="0.5" stroke-width="2"/>'
                     f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="4.5" fill="{color}">'
                     f'<title>{escape(tip)}</title></circle>'
                     f'<text x="{_f(cx + 7)}" y="{_f(cy - 6)}" font-size="11" fill="{INK}">'
                     f'{escape(_clip(f"{p.rank} {p.label}", 150, 11))}</text></g>')
    parts.append(f'<text x="{_f(left + pw / 2)}" y="{_f(height - 8)}" font-size="11" fill="{INK}" '
                 f'text-anchor="middle">{escape(x_label)}</text>'
                 f'<text x="12" y="{_f(top + ph / 2)}" font-size="11" fill="{INK}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {_f(top + ph / 2)})">{escape(y_label)}</text>')
    return _svg(width, height, "".join(parts), title, "priority")
