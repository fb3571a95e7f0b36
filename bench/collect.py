"""Benchmark: load N responses (default 1,000,000) from one CSV export, then re-collect it.

    python bench/collect.py [--rows 1000000] [--db sqlite|URL] [--keep DIR] [--skip-read]

Generates a realistic export (Chinese and English comments, spreadsheet-style times, one
unparseable score per 10,000 rows, 2% of rows in the neighbouring month), then prints wall-clock
seconds for: reading + mapping, the first load (all inserts), a second collect of the same
file (unchanged, so recorded from its earlier import without parsing) and a third with the parse
forced (all duplicates) - what a re-run costs after the source's mapping changed. A big file is
read in chunks by a worker process (`cxloop.tasks.collect.chunked`): the peak memory printed for each
collect is that of this process and its worker together, sampled. `--skip-read` leaves out the
whole-file read + mapping step (it holds the whole file: at 10M rows it would decide the peak).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cxloop.config import settings_from_dict  # noqa: E402
from cxloop.db import open_db  # noqa: E402
from cxloop.tasks.collect import collect_period, read_file, source_files  # noqa: E402
from cxloop.tasks.mapping import prepare  # noqa: E402

COMMENTS = np.array(["物流太慢了", "客服态度很好，问题很快解决了", "", "", "Delivery was late again.",
                     "Great prices, easy checkout.", "退款一直没到账", "", "APP 老是闪退", "店员很热情"])


def make_export(path: Path, rows: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-09-29")
    minutes = rng.integers(0, 34 * 24 * 60, rows)  # 29 Sep .. 2 Nov: some rows in the other months
    stamps = (start + pd.to_timedelta(minutes, unit="min")).strftime("%Y/%m/%d %H:%M")
    nps = rng.integers(0, 11, rows).astype(str).astype(object)
    nps[::10_000] = "n/a?"  # unparseable: quarantined
    frame = pd.DataFrame({
        "编号": [f"R{i:08d}" for i in range(rows)],
        "提交时间": stamps,
        "渠道": rng.choice(np.array(["线上", "电话", "门店", "APP"]), rows),
        "环节": rng.choice(np.array(["配送", "售后", "购买"]), rows),
        "推荐意愿": nps,
        "满意度": rng.choice(np.array(["非常满意", "满意", "一般", "不满意", "非常不满意"]), rows),
        "评价": rng.choice(COMMENTS, rows),
        "客户": rng.integers(0, 200_000, rows).astype(str),
        "区域": rng.choice(np.array(["华东", "华北", "华南"]), rows),
    })
    frame.to_csv(path, index=False, encoding="gb18030")


def cpu_probe() -> float:
    """Seconds for a fixed pure-Python loop (about 0.7 s on an idle modern core): read the other
    figures relative to it when the machine is shared."""
    t = time.perf_counter()
    sum(i * i for i in range(10_000_000))
    return time.perf_counter() - t


def _rss(pid: int) -> int:
    """Resident bytes of `pid` and its descendants (0 if gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        children = [int(c) for t in os.listdir(f"/proc/{pid}/task")
                    for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    except (OSError, StopIteration, ValueError):
        return 0
    return rss + sum(_rss(c) for c in children)


class PeakMemory:
    """The highest resident memory of this process tree, sampled every 50 ms while in use."""

    def __enter__(self) -> PeakMemory:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss(os.getpid()))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", default="sqlite", help="'sqlite' (a file in the work dir) or a database URL")
    ap.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one)")
    ap.add_argument("--skip-read", action="store_true", help="leave out the whole-file read + mapping step")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="cxloop-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'bench.db'}" if args.db == "sqlite" else args.db

    sys.stdout.write(f"cpu probe {cpu_probe():.2f} s (~0.7 s on an idle core)\n")
    t0 = time.perf_counter()
    make_export(work / "export.csv", args.rows)
    size = (work / "export.csv").stat().st_size
    out = sys.stdout
    out.write(f"generated {args.rows:,} rows, {size / 1e6:.1f} MB GB18030 CSV "
              f"in {time.perf_counter() - t0:.1f} s\n")

    settings = settings_from_dict({
        "database": {"url": url},
        "departments": {"logistics": {"name": "物流", "owns": {"journey_stage": ["delivery"]}},
                        "service": {"name": "客服", "owns": {"channel": ["hotline"]}}},
        "sources": [{
            "name": "bench", "kind": "csv", "path": "export.csv",
            "columns": {"response_id": "编号", "submitted_at": "提交时间", "channel": "渠道",
                        "journey_stage": "环节", "nps": "推荐意愿", "csat": "满意度", "comment": "评价",
                        "customer_id": "客户", "region": "区域"},
            "values": {"channel": {"线上": "web", "电话": "hotline", "门店": "store", "APP": "app"},
                       "journey_stage": {"配送": "delivery", "售后": "after_sales", "购买": "purchase"},
                       "csat": {"非常满意": 5, "满意": 4, "一般": 3, "不满意": 2, "非常不满意": 1},
                       "region": {"华东": "east", "华北": "north", "华南": "south"}},
        }],
    }, work, env={})
    engine = open_db(url)
    source = settings.sources[0]

    if not args.skip_read:
        t = time.perf_counter()
        [path] = source_files(settings, source)
        raw = read_file(settings, source, path, path.name)
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        prep = prepare(settings, source, raw, "2026-10", path.name)
        t_map = time.perf_counter() - t
        out.write(f"read {len(raw.frame):,} rows ({raw.encoding}) in {t_read:.2f} s; "
                  f"map + type + hash in {t_map:.2f} s ({len(prep.records):,} in period)\n")
        del raw, prep

    import cxloop.tasks.collect.reuse as tc  # stage and big look `_reuse` up there

    reuse = tc._reuse
    for label in ("first collect (inserts)", "second collect (unchanged file: not parsed again)",
                  "third collect, parse forced (all duplicates)"):
        if label.startswith("third"):
            tc._reuse = lambda *a, **k: False  # what a changed mapping costs
        t = time.perf_counter()
        with PeakMemory() as mem:
            summary = collect_period(settings, engine, "2026-10")
        dt = time.perf_counter() - t
        c = summary.counts()
        rate = summary.total("rows_read") / dt
        out.write(f"{label}: {dt:.2f} s total = {rate:,.0f} rows/s | read {c['rows_read']:,}, "
                  f"loaded {c['loaded']:,}, updated {c['updated']:,}, duplicates {c['duplicates']:,}, "
                  f"rejected {c['rejected']:,}, out_of_period {c['out_of_period']:,} | "
                  f"peak {mem.peak / 2**30:.2f} GiB\n")
        del summary
    tc._reuse = reuse
    out.write(f"database: {engine.dialect.name}; work dir {work}; cpu probe {cpu_probe():.2f} s "
              f"(~0.7 s idle)\n")


if __name__ == "__main__":
    main()
