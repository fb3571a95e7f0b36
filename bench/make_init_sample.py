"""Regenerate the sample data that `cxloop init` copies (templates/init/data/).

Deterministic (fixed seed): run it only when the sample's shape should change, then commit the
files. Four sources, one per format and encoding an admin meets in practice: a UTF-8-with-BOM
web survey export (English headers), a GBK hotline export (Chinese headers, 2026/10/3 14:05
times, 非常满意-style answers), an Excel store survey (real date cells) and an app JSONL feed
(nested scores, times with offsets). Two months, 2026-09 and 2026-10, with exports overlapping
the month edge, one unparseable score and one empty record to show the quarantine.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "templates" / "init" / "data"

GOOD_EN = ["Fast checkout, great prices.", "Easy to find what I needed.", "Delivery was on time, thanks!",
           "Love the new app design.", "Customer service solved my problem quickly."]
BAD_EN = ["Delivery was late again and the courier was rude.", "Refund still not processed after two weeks.",
          "Checkout failed twice, payment error.", "Prices went up, too expensive now.",
          "The app keeps crashing when I pay."]
GOOD_ZH = ["客服态度很好，问题很快解决了", "物流很快，包装完好", "价格实惠，下次还来", "店员很热情，体验不错",
           "APP 用起来很顺手"]
BAD_ZH = ["快递太慢了，等了一个星期", "退款一直没到账，打了三次电话", "客服态度差，一直让我等",
          "价格比别家贵", "APP 老是闪退，支付不了", "配送员把包裹放门口就走了，丢件了"]
STAGES_WEB = [("Consideration", "product_page"), ("Purchase", "checkout"), ("Delivery", "website")]
REGIONS_ZH = {"east": "华东", "north": "华北", "south": "华南"}
SATISFACTION = ["非常不满意", "不满意", "一般", "满意", "非常满意"]


def score_nps(rng: random.Random, mood: float) -> int:
    return max(0, min(10, round(rng.gauss(7.5 + 2 * mood, 1.8))))


def comment(rng: random.Random, positive: bool, zh: bool) -> str:
    if rng.random() < 0.25:
        return ""
    pool = (GOOD_ZH if positive else BAD_ZH) if zh else (GOOD_EN if positive else BAD_EN)
    return rng.choice(pool)


def when(rng: random.Random, year: int, month: int) -> datetime:
    start = datetime(year, month, 1)
    days = ((datetime(year + month // 12, month % 12 + 1, 1)) - start).days
    return start + timedelta(days=rng.randrange(days), hours=rng.randrange(8, 22), minutes=rng.randrange(60))


def mood_of(month: int, stage: str) -> float:
    """October delivery is worse: the sample gives the loop a gap to act on."""
    return -1.4 if (month == 10 and stage.lower() == "delivery") else 0.0


def web(rng: random.Random) -> None:
    for month in (9, 10):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(["Response ID", "Submitted", "Channel", "Stage", "Page", "NPS", "Comment",
                    "Customer", "Segment", "Region"])
        rows = []
        for i in range(150):
            stage, page = rng.choice(STAGES_WEB)
            nps = score_nps(rng, mood_of(month, stage))
            rows.append([f"W{month:02d}{i:04d}", when(rng, 2026, month).strftime("%Y-%m-%d %H:%M:%S"),
                         rng.choice(["Website", "Website", "Mobile web"]), stage, page, nps,
                         comment(rng, nps >= 7, zh=rng.random() < 0.5), f"C{rng.randrange(5000):05d}",
                         rng.choice(["new", "returning"]), rng.choice(list(REGIONS_ZH))])
        if month == 10:  # the export overlaps the end of September (Shanghai time)
            rows.append(["W090999", "2026-09-30 23:40:00", "Website", "Purchase", "checkout", 9,
                         "Smooth.", "C00001", "new", "east"])
            rows.append(["W100999", "2026-10-01 00:20:00", "Website", "Purchase", "checkout", 10,
                         "Great first day of the month deal!", "C00002", "returning", "east"])
        w.writerows(rows)
        (OUT / f"web_survey_2026-{month:02d}.csv").write_bytes(buf.getvalue().encode("utf-8-sig"))


def hotline(rng: random.Random) -> None:
    header = ["工单号", "来电时间", "业务类型", "满意度", "解决问题", "费力程度", "心理感受", "是否投诉",
              "受理时间", "首次响应时间", "解决时间", "评价", "客户编号", "区域"]
    for month in (9, 10):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(header)
        for i in range(100):
            kind = rng.choice(["售后", "售后", "配送", "咨询"])
            mood = mood_of(month, "delivery" if kind == "配送" else kind)
            sat = max(1, min(5, round(rng.gauss(3.9 + mood, 0.9))))
            cx = [max(1, min(7, round(rng.gauss(5.2 + mood, 1.2)))) for _ in range(3)]
            opened = when(rng, 2026, month)
            first = opened + timedelta(hours=rng.expovariate(1 / 6))
            resolved = first + timedelta(hours=rng.expovariate(1 / 30))
            fmt = "%Y/%-m/%-d %H:%M"
            w.writerow([f"H2026{month:02d}{i:04d}", opened.strftime(fmt), kind, SATISFACTION[sat - 1], *cx,
                        "是" if sat <= 2 and rng.random() < 0.6 else "否", opened.strftime(fmt),
                        first.strftime(fmt), resolved.strftime(fmt), comment(rng, sat >= 4, zh=True),
                        f"C{rng.randrange(5000):05d}", rng.choice(list(REGIONS_ZH.values()))])
        if month == 10:
            # Quarantined at collect, with file, row and column in the reason: an unparseable
            # satisfaction answer, and a record with neither score nor comment.
            w.writerow(["H202610X001", "2026/10/12 10:00", "售后", "满意吧", "", "", "", "否", "", "", "", "",
                        "C00003", "华东"])
            w.writerow(["H202610X002", "2026/10/13 11:00", "咨询", "", "", "", "", "否", "", "", "", "",
                        "C00004", "华北"])
        (OUT / f"hotline_2026-{month:02d}.csv").write_bytes(buf.getvalue().encode("gbk"))


def store(rng: random.Random) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "survey"
    ws.append(["ID", "Date", "Store", "CES", "CSAT", "Comment"])
    for month in (9, 10):
        for i in range(60):
            ces = max(1, min(7, round(rng.gauss(5.4, 1.1))))
            csat = max(1, min(5, round(rng.gauss(4.0, 0.8))))
            stamp = when(rng, 2026, month)
            city = rng.choice(["Shanghai", "Beijing", "Shenzhen"])
            ws.append([int(f"{month}{i:04d}"), stamp, city, ces, csat,
                       comment(rng, csat >= 4, zh=True) or None])
    for col, width in zip("ABCDEF", (8, 18, 10, 6, 6, 40), strict=True):
        ws.column_dimensions[col].width = width
    for cell in ws["B"][1:]:
        cell.number_format = "yyyy-mm-dd hh:mm"
    wb.save(OUT / "store_survey.xlsx")


def app(rng: random.Random) -> None:
    lines = []
    for month in (9, 10):
        for i in range(60):
            nps = score_nps(rng, -0.5)
            ts = when(rng, 2026, month).strftime("%Y-%m-%dT%H:%M:%S+08:00")
            lines.append(json.dumps({
                "id": f"A{month:02d}{i:04d}", "created": ts, "platform": rng.choice(["ios", "android"]),
                "scores": {"nps": nps, "ces": max(1, min(7, round(rng.gauss(5, 1.3))))},
                "text": comment(rng, nps >= 7, zh=rng.random() < 0.7), "user": f"C{rng.randrange(5000):05d}",
            }, ensure_ascii=False))
    (OUT / "app_feedback.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261001)
    web(rng)
    hotline(rng)
    store(rng)
    app(rng)
    for p in sorted(OUT.iterdir()):
        sys.stdout.write(f"{p.relative_to(ROOT)}  {p.stat().st_size} bytes\n")


if __name__ == "__main__":
    main()
