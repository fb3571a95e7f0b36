"""The daily follow-up loop (issue 19) over a month of responses, replayed day by day.

    python bench/followup.py [--rows 1000000] [--detractors 0.1] [--consent 0.5] [--budget 5] [--days N]
                             [--pg URL] [--profile FILE]

Generates a month of responses (10% detractors by default, comments as `bench/cycle.py` writes
them: phrases of the demo's set, a share written once with an order number, contact details for
consenting customers, customers answering more than once), one CSV per day. Then for each day of
October, in order: the day's file lands in the source folder (not timed), the ordinary collect
imports it (timed: `collect`), and the day's follow-up run opens, merges and routes cases,
re-surveys, purges contacts past retention, queues owner digests, reminders and escalations and
delivers them (`run_day` without collect, timed: `follow-up`). Between days the owners contact
80% of the new cases and resolve 80% of those contacted two days or more before (not timed), so
reminders and escalations concern the rest, as in a company that works its cases. Prints one row
per day and whether the follow-up step stayed within `--budget` seconds, with the CPU time the
step took in this process (`time.process_time`: load inflates it less than the wall clock, though
the database server's own work on PostgreSQL is not in it). The machine's load average is printed
too: on a shared machine it moves the figures. `--profile FILE` writes a cProfile of the follow-up
steps of all days (`python -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
logging.getLogger("cxloop.tasks.notify").setLevel(logging.ERROR)  # the bench departments have no routes

from cxloop.db import fresh_pg_schema  # noqa: E402
from cxloop.tasks.demo import PHRASES  # noqa: E402

PERIOD = "2026-10"
DAYS = 31
STAGES = ["purchase", "delivery", "use", "after_sales"]
DEPTS = {"purchase": "sales", "delivery": "logistics", "use": "product", "after_sales": "customer_service"}

CONFIG = """[project]
name = "Follow-up bench"
timezone = "Asia/Shanghai"

[database]
url = "{db}"

[[sources]]
name = "survey"
kind = "csv"
path = "data/*.csv"
encoding = "utf-8"

{departments}
[cases]
merge_window_days = 7
first_contact_hours = 24
close_days = 5
retention_days = 20

[[cases.rules]]
name = "detractor"
nps_max = 6

[[cases.rules]]
name = "complaint"
complaint = true
queue = "complaints"
"""


def generate(rows: int, detractors: float, consent: float, distinct: float, seed: int = 7) -> pd.DataFrame:
    """A month of responses in canonical columns, sorted by time."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-10-01 00:00")
    submitted = start + pd.to_timedelta(np.sort(rng.integers(0, DAYS * 24 * 3600, rows)), unit="s")
    unhappy = rng.random(rows) < detractors
    nps = np.where(unhappy, rng.integers(0, 7, rows), rng.integers(7, 11, rows))
    phrases = np.asarray([p for topic in PHRASES.values() for ps in topic.values() for p in ps], dtype=object)
    comments = phrases[rng.integers(0, len(phrases), rows)]
    own = rng.random(rows) < distinct
    comments[own] = (comments[own] + "，" + phrases[rng.integers(0, len(phrases), int(own.sum()))]
                     + np.char.add(" #", np.flatnonzero(own).astype(str)))
    comments[rng.random(rows) >= np.where(unhappy, 0.6, 0.15)] = ""  # the unhappy write more
    customers = rng.integers(0, int(rows * 0.8), rows)  # some customers answer twice or more
    ok = rng.random(rows) < consent
    stage = np.asarray(STAGES, dtype=object)[rng.integers(0, len(STAGES), rows)]
    return pd.DataFrame({
        "response_id": np.char.add("R", np.arange(rows).astype(str)),
        "submitted_at": submitted.strftime("%Y-%m-%d %H:%M:%S"),
        "channel": "survey", "journey_stage": stage,
        "customer_id": np.char.add("C", customers.astype(str)), "nps": nps,
        "is_complaint": np.where(unhappy & (rng.random(rows) < 0.2), "yes", "no"),
        "contact_ok": np.where(ok, "yes", "no"),
        "contact_name": np.where(ok, "客户", ""),
        "contact_phone": np.where(ok, np.char.add("138", (customers % 10**8).astype(str)), ""),
        "contact_email": "", "comment": comments,
    })


def contact_most(engine: object, now: datetime, share: float, seed: int) -> None:
    """The owners' day (outside the timed steps): `share` of the new cases are contacted, and as
    many of the cases contacted two days or more before are resolved."""
    from sqlalchemy import Engine, update

    from cxloop.models import FollowupCase

    assert isinstance(engine, Engine)
    t = FollowupCase.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        # In id order: the owners' picks must not depend on which index the query plan uses.
        ids = [r[0] for r in conn.execute(t.select().with_only_columns(t.c.id).where(t.c.status == "new")
                                          .order_by(t.c.id))]
        rng = np.random.default_rng(seed)
        picked = [int(i) for i in np.asarray(ids)[rng.random(len(ids)) < share]]
        for k in range(0, len(picked), 1000):
            conn.execute(update(t).where(t.c.id.in_(picked[k:k + 1000]))
                         .values(status="contacted", contacted_at=now))
        ids = [r[0] for r in conn.execute(t.select().with_only_columns(t.c.id).where(
            t.c.status == "contacted", t.c.contacted_at <= now - timedelta(days=2)).order_by(t.c.id))]
        picked = [int(i) for i in np.asarray(ids)[rng.random(len(ids)) < share]]
        for k in range(0, len(picked), 1000):
            conn.execute(update(t).where(t.c.id.in_(picked[k:k + 1000]))
                         .values(status="resolved", closed_at=now))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--detractors", type=float, default=0.1)
    ap.add_argument("--consent", type=float, default=0.5, help="Share agreeing to be contacted.")
    ap.add_argument("--distinct-comments", type=float, default=0.5, metavar="SHARE")
    ap.add_argument("--budget", type=float, default=5.0, help="Seconds a day's follow-up step may take.")
    ap.add_argument("--days", type=int, default=DAYS, help="Replay only the first N days.")
    ap.add_argument("--profile", metavar="FILE", default=None,
                    help="Write a cProfile of the follow-up steps (all days) to FILE.")
    ap.add_argument("--pg", metavar="URL", default=None,
                    help="Run on PostgreSQL, in a new schema dropped after.")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cxfollowup-"))
    try:
        _replay(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _replay(args: argparse.Namespace, work: Path) -> None:
    from cxloop.config import load_settings
    from cxloop.db import open_db
    from cxloop.tasks.cases.daily import run_day
    from cxloop.tasks.collect import collect_period

    t = time.perf_counter()
    month = generate(args.rows, args.detractors, args.consent, args.distinct_comments)
    day_of = month["submitted_at"].str.slice(8, 10).astype(int).to_numpy()
    print(f"generated {args.rows:,} responses in {time.perf_counter() - t:.1f} s: "
          f"{args.detractors:.0%} detractors, {args.consent:.0%} consenting, "
          f"{args.distinct_comments:.0%} of comments distinct")
    (work / "data").mkdir()
    with ExitStack() as stack:
        db = stack.enter_context(fresh_pg_schema(args.pg)) if args.pg else f"sqlite:///{work / 'cxloop.db'}"
        departments = "".join(f'[departments.{d}]\nname = "{d}"\nnotify = []\n'
                              f'owns = {{ journey_stage = ["{s}"] }}\n' for s, d in DEPTS.items())
        (work / "cxloop.toml").write_text(CONFIG.format(db=db, departments=departments), encoding="utf-8")
        settings = load_settings(work / "cxloop.toml")
        engine = open_db(settings.database_url)
        print(f"database: {'PostgreSQL' if args.pg else 'SQLite'}; load average before: "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"{'day':>4} {'responses':>9} {'collect s':>9} {'follow-up s':>11} {'cpu s':>6} {'opened':>7} "
              f"{'merged':>7} {'resurveyed':>10} {'escalated':>9} {'purged':>7} {'within':>7}")
        totals: list[float] = []
        cpus: list[float] = []
        profiler = cProfile.Profile() if args.profile else None
        for day in range(1, args.days + 1):
            part = month[day_of == day]
            part.to_csv(work / "data" / f"day-{day:02d}.csv", index=False)
            # The run after the day: 07:00 the next morning in Shanghai (the default schedule).
            now = datetime(2026, 10, day, 23, 0, tzinfo=UTC)
            t = time.perf_counter()
            collected = collect_period(settings, engine, PERIOD)
            t_collect = time.perf_counter() - t
            assert collected.total("loaded") >= len(part), collected
            t, c = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            out = run_day(settings, engine, now, collect=False)
            if profiler is not None:
                profiler.disable()
            t_follow, c_follow = time.perf_counter() - t, time.process_time() - c
            totals.append(t_follow)
            cpus.append(c_follow)
            print(f"{day:>4} {len(part):>9,} {t_collect:>9.2f} {t_follow:>11.2f} {c_follow:>6.2f} "
                  f"{out['opened']:>7,} {out['merged']:>7,} {out['resurveyed']:>10,} "
                  f"{out.get('escalations', 0):>9,} {out['contacts_purged']:>7,} "
                  f"{'yes' if t_follow <= args.budget else 'NO':>7}", flush=True)
            contact_most(engine, now + timedelta(hours=3), 0.8, day)
        engine.dispose()
    print(f"follow-up step: median {np.median(totals):.2f} s, max {max(totals):.2f} s "
          f"(CPU of this process: median {np.median(cpus):.2f} s, max {max(cpus):.2f} s) "
          f"(budget {args.budget:g} s); load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"profile of the follow-up steps: {args.profile} (python -m pstats)")


if __name__ == "__main__":
    main()
