"""The report in a real browser: headless Chromium renders the page, takes a screenshot, and the
charts must be there, laid out with a real size, not hidden or covered, and actually painted
(the screenshot has ink inside every chart's box).

No DevTools protocol client is needed: a copy of the page gets a small probe script that writes
the charts' boxes into the DOM (`--dump-dom`), and a second page loads the screenshot PNG into a
canvas and measures how much of each box is painted. A control run with the charts hidden by CSS
must fail the same checks, so the test cannot pass on a blank page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.test_report import PERIOD, seed

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
# In CI a missing browser is a failure, not a skip: `.ci/run` installs Debian's chromium.
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="Chromium not installed (apt-get install chromium)")
WIDTH, HEIGHT = 1200, 3400

BOX_PROBE = """<script>
window.addEventListener('load', () => {
  const out = [];
  document.querySelectorAll('svg[data-chart]').forEach((svg) => {
    const r = svg.getBoundingClientRect();
    const cs = getComputedStyle(svg);
    const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    const hit = document.elementFromPoint(Math.min(cx, innerWidth - 1), Math.min(cy, innerHeight - 1));
    out.push({kind: svg.dataset.chart, x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height,
              visible: cs.visibility === 'visible' && cs.display !== 'none' && Number(cs.opacity) > 0,
              on_top: !!hit && (hit === svg || svg.contains(hit)),
              shapes: svg.querySelectorAll('rect,circle,polyline,line,path').length});
  });
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

INK_PROBE = """<!DOCTYPE html><html><body><pre id="probe">pending</pre><script>
const boxes = %s;
const img = new Image();
img.onload = () => {
  const c = document.createElement('canvas');
  c.width = img.width; c.height = img.height;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const res = boxes.map((b) => {
    const x = Math.max(0, Math.floor(b.x)), y = Math.max(0, Math.floor(b.y));
    const w = Math.max(1, Math.min(Math.floor(b.w), img.width - x));
    const h = Math.max(1, Math.min(Math.floor(b.h), img.height - y));
    const d = g.getImageData(x, y, w, h).data;
    let ink = 0, colours = new Set();
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) ink++;
      colours.add((d[i] >> 4) << 8 | (d[i + 1] >> 4) << 4 | (d[i + 2] >> 4));
    }
    return {kind: b.kind, ink: ink / (w * h), colours: colours.size};
  });
  document.getElementById('probe').textContent = JSON.stringify({width: img.width, height: img.height, res});
};
img.onerror = () => { document.getElementById('probe').textContent = 'error'; };
img.src = 'shot.png';
</script></body></html>"""


def _chromium(*args: str, profile: Path) -> str:
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--allow-file-access-from-files", f"--user-data-dir={profile}",
         f"--window-size={WIDTH},{HEIGHT}", *args],
        capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _probe(html: str, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(boxes of the charts, ink measured in the screenshot) for a page."""
    work.mkdir(parents=True, exist_ok=True)
    page = work / "report.html"
    page.write_text(html, encoding="utf-8")
    shot = work / "shot.png"
    _chromium(f"--screenshot={shot}", page.as_uri(), profile=work / "profile")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    probe_page = work / "probe.html"
    probe_page.write_text(html.replace("</body>", BOX_PROBE + "</body>"), encoding="utf-8")
    dom = _chromium("--dump-dom", "--virtual-time-budget=3000", probe_page.as_uri(), profile=work / "profile")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe script did not run"
    boxes = json.loads(found.group(1).replace("&quot;", '"'))
    ink_page = work / "ink.html"
    ink_page.write_text(INK_PROBE % json.dumps(boxes), encoding="utf-8")
    dom = _chromium("--dump-dom", "--virtual-time-budget=5000", ink_page.as_uri(), profile=work / "profile")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found and found.group(1).startswith("{"), f"screenshot not measured: {found and found.group(1)}"
    return boxes, json.loads(found.group(1).replace("&quot;", '"'))


def _problems(boxes: list[dict[str, Any]], ink: dict[str, Any]) -> list[str]:
    """Why the charts are not 'present and visible' (empty list: all good)."""
    problems = []
    kinds = [b["kind"] for b in boxes]
    for kind, count in (("trend", 4), ("heatmap", 1), ("bars", 1)):
        if kinds.count(kind) != count:
            problems.append(f"expected {count} {kind} chart(s), found {kinds.count(kind)}")
    for b, m in zip(boxes, ink["res"], strict=True):
        name = f"{b['kind']} chart at ({b['x']:.0f},{b['y']:.0f})"
        if b["w"] < 250 or b["h"] < 80:
            problems.append(f"{name} is only {b['w']:.0f}x{b['h']:.0f} px")
        if not b["visible"]:
            problems.append(f"{name} is hidden by CSS")
        if not b["on_top"]:
            problems.append(f"{name} is covered by another element")
        if b["y"] + b["h"] > ink["height"]:
            problems.append(f"{name} lies outside the screenshot")
        if m["ink"] < 0.03 or m["colours"] < 4:
            problems.append(f"{name} is blank in the screenshot (ink {m['ink']:.3f}, {m['colours']} colours)")
    return problems


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_charts_are_present_and_visible_in_chromium(engine: Engine, tmp_path: Path) -> None:
    from cxloop.tasks.report import write_reports

    seeded = seed(engine, tmp_path / "data")
    report = write_reports(seeded.settings, engine, PERIOD, out_dir=tmp_path / "out")[0]
    html = report.read_text(encoding="utf-8")

    boxes, ink = _probe(html, tmp_path / "ok")
    assert (ink["width"], ink["height"]) == (WIDTH, HEIGHT)
    assert _problems(boxes, ink) == []
    heat = next(m for b, m in zip(boxes, ink["res"], strict=True) if b["kind"] == "heatmap")
    assert heat["colours"] >= 8, "the journey map shows a colour scale, not one flat colour"

    # Control: the same page with its charts hidden must fail the checks above.
    hidden = html.replace("</style>", "svg.chart { visibility: hidden; }</style>", 1)
    boxes, ink = _probe(hidden, tmp_path / "hidden")
    problems = _problems(boxes, ink)
    assert any("hidden by CSS" in p for p in problems)
    assert any("blank in the screenshot" in p for p in problems)


def test_pdf_copy_is_printed_by_chromium(tmp_path: Path) -> None:
    from cxloop.tasks.report import write_pdf

    page = tmp_path / "report.html"
    page.write_text("<!DOCTYPE html><html><body><h1>CX</h1><svg width='200' height='100'>"
                    "<rect width='200' height='100' fill='#2563eb'/></svg></body></html>", encoding="utf-8")
    pdf = write_pdf(page)
    assert pdf == tmp_path / "report.pdf"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and b"/Type /Page" in data
