"""The SVG chart builders: well-formed SVG, labels from data escaped, honest scales."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from cxloop.tasks.charts import (
    HeatCell,
    Limits,
    TrendPoint,
    bar_chart,
    heatmap,
    interval_bar,
    nice_ticks,
    score_color,
    trend_chart,
)
from cxloop.tasks.report import xmr_limits

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on malformed markup or unescaped data


def test_trend_chart_draws_series_limits_target_and_flags_points_beyond_limits() -> None:
    points = [TrendPoint(f"26-{m:02d}", v, v - 5, v + 5) for m, v in enumerate([30, 31, 29, 32, 30, 12], 1)]
    svg = trend_chart(points, limits=Limits(30, 22, 38), target=35, title="NPS <trend>")
    root = _parse(svg)
    assert root.find(f"{NS}title").text == "NPS <trend>"  # type: ignore[union-attr]
    assert len(root.findall(f".//{NS}polyline")) == 1
    classes = {e.get("class") for e in root.iter(f"{NS}line")}
    assert {"ucl", "lcl", "center", "target"} <= classes
    red = [c for c in root.iter(f"{NS}circle") if c.get("fill") == "#b91c1c"]
    assert len(red) == 1 and "26-06: 12.0" in red[0].findtext(f"{NS}title", "")


def test_close_line_labels_do_not_overlap() -> None:
    points = [TrendPoint(str(i), 50 + (i % 2)) for i in range(8)]
    svg = trend_chart(points, limits=Limits(50.5, 49.9, 51.1), target=50.4)
    ys = sorted(float(y) for y in re.findall(r'<text x="474" y="([\d.]+)"', svg))
    assert len(ys) == 4
    assert all(b - a >= 12.9 for a, b in zip(ys, ys[1:], strict=False))


def test_heatmap_escapes_labels_marks_pain_and_greys_small_cells() -> None:
    cells = {("s1", "t1"): HeatCell(-20.0, 120, pain=True),
             ("s1", "t2"): HeatCell(40.0, 12, insufficient=True),
             ("s2", "t1"): HeatCell(35.0, 200)}
    svg = heatmap([("s1", "<script>x</script>"), ("s2", "use")], [("t1", "App & web"), ("t2", "store")],
                  cells, lo=-40, hi=60, title="map")
    root = _parse(svg)
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "App &amp; web" in svg
    rects = {r.findtext(f"{NS}title", ""): r for r in root.iter(f"{NS}rect") if r.get("class")}
    pain = next(r for t, r in rects.items() if t.startswith("<script>x</script> × App & web"))
    assert pain.get("class") == "cell pain" and pain.get("stroke-width") == "3"
    small = next(r for t, r in rects.items() if "store" in t)
    assert small.get("fill") == "#d9dde2"
    # An empty crossing shows a dash, not a colour.
    assert any(t.text == "–" for t in root.iter(f"{NS}text"))


def test_colour_scale_runs_bad_to_good_and_flips_for_lower_is_better() -> None:
    assert score_color(0, 0, 100) == "#d73027" and score_color(100, 0, 100) == "#1a9850"
    assert score_color(0, 0, 100, higher_is_better=False) == "#1a9850"
    assert score_color(50, 0, 100) == "#fee08b"


def test_bars_and_mini_bars_are_valid_svg() -> None:
    root = _parse(bar_chart([("Late delivery", 44.0, "44 · 29%"), ("<b>", 4.0, "4")], title="themes"))
    widths = [float(r.get("width", 0)) for r in root.iter(f"{NS}rect")]
    assert widths[0] > widths[1] * 5
    _parse(interval_bar(30, 20, 40, 35, lo=-100, hi=100))
    _parse(interval_bar(None, None, None, None, lo=0, hi=100))


def test_nice_ticks_and_xmr_limits() -> None:
    assert nice_ticks(12, 38) == [10, 20, 30, 40]
    assert nice_ticks(4.6, 5.4)[0] <= 4.6 and nice_ticks(4.6, 5.4)[-1] >= 5.4
    lim = xmr_limits([10, 12, 11, 13, 12])
    assert lim is not None
    mr = (2 + 1 + 2 + 1) / 4
    assert (lim.center, round(lim.lcl, 6), round(lim.ucl, 6)) == (11.6, round(11.6 - 2.66 * mr, 6),
                                                                    round(11.6 + 2.66 * mr, 6))
    assert xmr_limits([1, 2, 3]) is None
