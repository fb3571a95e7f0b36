"""A whole monthly cycle on N generated responses, stage by stage, next to plain pandas.

    python bench/cycle.py [--rows 1000000] [--comment-share 0.2] [--distinct-comments 0.9] [--keep DIR]
                          [--random-ids] [--pg URL] [--dask]

Writes one month of responses as a CSV (canonical columns, UTF-8), then in the same process:
1. plain pandas: read the CSV + a groupby mean of the scores per department (the floor);
2. Prefect's temporary server start (reported separately: paid once per process);
3. the libraries the stages use (GX, the sentiment model, jieba), loaded once per process: in
   `cxloop run` while Prefect's server starts, in `cxloop serve` once for every cycle after
   (reported separately; `--cold` leaves them to the cycle itself);
4. the real flow `cx_monthly_cycle` on SQLite, with each stage's time from the cycle record
   (`--dask`: with `[engine] dask_address` set to a local Dask cluster of two worker processes,
   one thread each, started before and reported separately; the month is then not kept in memory
   but written to its columnar copy by collect, and validate's row checks and the KPI histograms
   run on the workers);
and prints peak memory during the cycle: this process's exact peak, and samples of it together
with the processes it started (collect's parse worker and its fork server), per stage; Prefect's
server process is left out, like its start time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from a closed network
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
logging.getLogger("great_expectations").setLevel(logging.WARNING)
logging.getLogger("cxloop.tasks.notify").setLevel(logging.ERROR)  # the bench departments have no routes

from cxloop.db import fresh_pg_schema  # noqa: E402
from cxloop.tasks.demo import PHRASES  # noqa: E402

PERIOD = "2026-10"
STAGES = ["awareness", "consideration", "purchase", "delivery", "use", "after_sales"]
DEPTS = {"awareness": "marketing", "consideration": "marketing", "purchase": "sales",
         "delivery": "logistics", "use": "product", "after_sales": "customer_service"}
CHANNELS = ["survey", "app", "hotline", "store", "web", "email"]
TOUCHPOINTS = ["website", "app", "store", "hotline", "courier", "social"]
REGIONS = ["east", "north", "south", "west"]
SEGMENTS = ["new", "returning", "vip"]


def _rss(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tree_rss() -> int:
    """Resident bytes of this process and its descendants, except Prefect's server (Linux /proc)."""
    todo, total = [os.getpid()], 0
    while todo:
        pid = todo.pop()
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if (b"prefect" in cmd and b"server" in cmd) or b"uvicorn" in cmd:
                continue
            total += _rss(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return total


class MemoryWatch:
    """Memory while the cycle runs. This process's exact peak: its high-water mark is reset first
    (Linux `clear_refs`), so generating the file and the pandas baseline do not count. The worker
    processes' memory is not in it: every 100 ms the process tree is sampled too, which gives the
    peak per stage (shared pages of forked processes count twice there: an upper bound)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, int]] = []  # (time, this process, tree)
        self.peak = 0  # this process, exact
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._linux = Path("/proc/self/statm").exists()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append((time.time(), _rss(os.getpid()), _tree_rss()))

    def __enter__(self) -> MemoryWatch:
        if self._linux:
            Path("/proc/self/clear_refs").write_text("5")
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._linux:
            status = Path("/proc/self/status").read_text()
            self.peak = int(status.split("VmHWM:")[1].split()[0]) * 1024

    def between(self, start: float, end: float) -> tuple[int, int]:
        """The highest samples (this process, tree) in a time window."""
        inside = [(m, t) for at, m, t in self.samples if start <= at <= end]
        return (max(m for m, _ in inside), max(t for _, t in inside)) if inside else (0, 0)


def generate(path: Path, rows: int, comment_share: float, distinct: float = 0.0, seed: int = 1,
             random_ids: bool = False) -> None:
    """`distinct`: the share of comments written once (two phrases and an order number); the
    others repeat one of the phrase set's 38 phrases, which the comments stage analyses once.
    `random_ids`: response ids as 32 random hex digits (a UUID's), not numbered in file order."""
    rng = np.random.default_rng(seed)
    if random_ids:
        high, low = rng.integers(0, 2**63, rows), rng.integers(0, 2**63, rows)
        ids = np.char.add(np.char.zfill(np.char.mod("%x", high), 16),
                          np.char.zfill(np.char.mod("%x", low), 16))
    else:
        ids = np.char.add("R", np.arange(rows).astype(str))

    def pick(values: list[str]) -> np.ndarray:
        return np.asarray(values, dtype=object)[rng.integers(0, len(values), rows)]

    start = pd.Timestamp("2026-10-01 08:00")
    submitted = start + pd.to_timedelta(rng.integers(0, 30 * 24 * 3600 - 16 * 3600, rows), unit="s")
    phrases = [p for topic in PHRASES.values() for key, ps in topic.items() for p in ps]
    comments = np.asarray(phrases, dtype=object)[rng.integers(0, len(phrases), rows)]
    own = rng.random(rows) < distinct
    second = np.asarray(phrases, dtype=object)[rng.integers(0, len(phrases), int(own.sum()))]
    comments[own] = comments[own] + "，" + second + np.char.add(" #", np.flatnonzero(own).astype(str))
    comments[rng.random(rows) >= comment_share] = ""
    opened = rng.random(rows) < 0.2
    first = submitted + pd.to_timedelta(rng.exponential(8 * 3600, rows).astype("int64"), unit="s")
    frame = pd.DataFrame({
        "response_id": ids,
        "submitted_at": submitted.strftime("%Y-%m-%d %H:%M:%S"),
        "channel": pick(CHANNELS), "journey_stage": pick(STAGES), "touchpoint": pick(TOUCHPOINTS),
        "region": pick(REGIONS), "segment": pick(SEGMENTS),
        "nps": rng.integers(0, 11, rows), "csat": rng.integers(1, 6, rows), "ces": rng.integers(1, 8, rows),
        "cx_success": rng.integers(1, 8, rows), "cx_effort": rng.integers(1, 8, rows),
        "cx_emotion": rng.integers(1, 8, rows), "comment": comments,
        "is_complaint": np.where(opened, np.where(rng.random(rows) < 0.2, "true", "false"), ""),
        "opened_at": np.where(opened, submitted.strftime("%Y-%m-%d %H:%M:%S"), ""),
        "first_response_at": np.where(opened, first.strftime("%Y-%m-%d %H:%M:%S"), ""),
    })
    frame.to_csv(path, index=False)


CONFIG = """
[project]
name = "bench"
timezone = "Asia/Shanghai"

[database]
url = "{db}"

[[sources]]
name = "survey"
kind = "csv"
path = "responses.csv"
encoding = "utf-8"

[vocabulary]
channel = {channels}
journey_stage = {stages}
touchpoint = {touchpoints}

[departments.marketing]
name = "Marketing"
owns = {{ journey_stage = ["awareness", "consideration"] }}
[departments.sales]
name = "Sales"
owns = {{ journey_stage = ["purchase"] }}
[departments.logistics]
name = "Logistics"
owns = {{ journey_stage = ["delivery"] }}
[departments.product]
name = "Product"
owns = {{ journey_stage = ["use"] }}
[departments.customer_service]
name = "Customer service"
owns = {{ journey_stage = ["after_sales"] }}

[[targets]]
kpi = "nps"
scope = "journey_stage"
value = 0

[comments]
model = "{model}"
model_path = "sentiment.joblib"
"""


def _epoch(at: Any) -> float:
    """A stored UTC time (naive on SQLite) as seconds since the epoch."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--comment-share", type=float, default=0.2)
    ap.add_argument("--distinct-comments", type=float, default=0.9, metavar="SHARE",
                    help="Share of comments written once, not drawn from the phrase set (default "
                         "0.9: real comment sets are 78-99.9%% distinct texts; 0 makes every comment "
                         "repeat one of 38 phrases, which the analysis then meets once each).")
    ap.add_argument("--random-ids", action="store_true",
                    help="Response ids as random hex (a UUID's 32 digits), not R0, R1, ... in file order.")
    ap.add_argument("--keep", type=Path, default=None, help="Work in this folder and keep it.")
    ap.add_argument("--model", choices=["trained", "snownlp"], default="trained",
                    help="Sentiment model: a company model trained first (default) or snownlp (~200/s).")
    ap.add_argument("--cold", action="store_true",
                    help="Do not load the stages' libraries before the cycle (the cycle loads them "
                         "on a thread while collect works, as a first cycle in a process does).")
    ap.add_argument("--pg", metavar="URL", default=None,
                    help="Run on PostgreSQL (postgresql+psycopg://...), in a new schema dropped after.")
    ap.add_argument("--dask", action="store_true",
                    help="Run the cycle with [engine] dask_address on a LocalCluster of 2 worker processes.")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="cxbench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "responses.csv"
    t = time.perf_counter()
    made = {"rows": args.rows, "comment_share": args.comment_share, "distinct": args.distinct_comments,
            **({"random_ids": True} if args.random_ids else {})}
    recipe = work / "responses.json"  # a --keep folder's file is used again if made the same way
    if csv.is_file() and recipe.is_file() and json.loads(recipe.read_text()) == made:
        print(f"using {csv} again ({args.rows:,} responses, made with the same settings)")
    else:
        recipe.unlink(missing_ok=True)  # until the new file is whole
        generate(csv, args.rows, args.comment_share, args.distinct_comments, random_ids=args.random_ids)
        recipe.write_text(json.dumps(made))
        print(f"generated {args.rows:,} responses ({csv.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - t:.1f} s; comment share {args.comment_share:.0%}, "
              f"{args.distinct_comments:.0%} of them distinct")
    for old in ("cxloop.db", "cxloop.db-wal", "cxloop.db-shm"):  # a kept folder's last run
        (work / old).unlink(missing_ok=True)
    shutil.rmtree(work / "columnar", ignore_errors=True)

    t = time.perf_counter()
    df = pd.read_csv(csv)
    df.groupby("journey_stage")[["nps", "csat", "ces"]].mean()
    pandas_s = time.perf_counter() - t
    del df
    print(f"plain pandas read_csv + groupby: {pandas_s:.2f} s")

    schema = ExitStack()  # on PostgreSQL: a fresh schema, dropped at the end
    db_url = schema.enter_context(fresh_pg_schema(args.pg)) if args.pg else f"sqlite:///{work / 'cxloop.db'}"
    print(f"database: {'PostgreSQL' if args.pg else 'SQLite'}")
    engine_section = ""
    if args.dask:
        from distributed import LocalCluster

        t = time.perf_counter()
        cluster = schema.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                    dashboard_address=None,
                                                    silence_logs=logging.CRITICAL))
        engine_section = f'\n[engine]\ndask_address = "{cluster.scheduler_address}"\n'
        print(f"Dask LocalCluster, 2 workers x 1 thread, started in {time.perf_counter() - t:.1f} s")
    (work / "cxloop.toml").write_text(CONFIG.format(
        db=db_url, channels=CHANNELS, stages=STAGES, touchpoints=TOUCHPOINTS,
        model=args.model).replace("'", '"') + engine_section, encoding="utf-8")
    if args.model == "trained":
        from cxloop.config import load_settings
        from cxloop.tasks.demo import write_training_set
        from cxloop.tasks.sentiment import read_labelled, save_model, train

        write_training_set(work / "labelled.csv")
        fitted = train(*read_labelled(work / "labelled.csv"), source="bench")
        save_model(fitted.model, load_settings(work / "cxloop.toml").resolve("sentiment.joblib"))
    from prefect import flow

    @flow
    def _warm() -> int:
        return 1

    t = time.perf_counter()
    _warm()
    print(f"Prefect temporary server start (once per process): {time.perf_counter() - t:.1f} s")
    if not args.cold:
        from cxloop.config import load_settings as _load_settings
        from cxloop.flows.warmup import load_libraries

        t = time.perf_counter()
        load_libraries(_load_settings(work / "cxloop.toml"))
        print(f"libraries the stages use (GX, sentiment model, jieba; once per process, and in "
              f"`cxloop run` while Prefect's server starts): {time.perf_counter() - t:.1f} s")

    from sqlmodel import Session, select

    from cxloop.db import open_db
    from cxloop.flows.cycle import cx_monthly_cycle, on_temporary_server
    from cxloop.models import CycleStage

    t = time.perf_counter()
    with MemoryWatch() as memory, on_temporary_server():  # as `cxloop run` (no PREFECT_API_URL)
        outcome = cx_monthly_cycle(PERIOD, config=str(work / "cxloop.toml"), started_by="bench")
    total = time.perf_counter() - t
    engine = open_db(db_url)
    with Session(engine) as s:
        stages = {r.stage: r for r in s.exec(select(CycleStage).where(CycleStage.period == PERIOD))}
    print(f"cycle {PERIOD}: {outcome['status']} (gate {outcome['gate']})")
    from cxloop.flows.cycle import STAGES as CYCLE_STAGES

    gib = 2**30
    for name, r in ((n, stages[n]) for n in CYCLE_STAGES if n in stages):
        secs = (r.finished_at - r.started_at).total_seconds() if r.finished_at else float("nan")
        start, end = (_epoch(r.started_at), _epoch(r.finished_at)) if r.finished_at else (0.0, 0.0)
        main_peak, tree_peak = memory.between(start, end)
        print(f"  {name:<10} {secs:7.2f} s" + (f"   memory sampled: {main_peak / gib:.2f} GiB, "
                                              f"with workers {tree_peak / gib:.2f}" if main_peak else ""))
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    tree = max((t for _, _, t in memory.samples), default=0)
    print(f"whole cycle: {total:.1f} s = {total / pandas_s:.1f}x plain pandas")
    if memory.peak:
        print(f"peak memory during the cycle: {memory.peak / gib:.2f} GiB in this process; sampled with "
              f"its worker processes {tree / gib:.2f} GiB (this process's whole life, with the "
              f"generated file and the pandas baseline: {lifetime:.2f} GiB)")
    else:
        print(f"peak memory: {lifetime:.2f} GiB")
    engine.dispose()
    schema.close()


if __name__ == "__main__":
    main()
