"""Latency of the web workspace under load: 10,000 actions, 24 months of KPIs, 20 clients.

    python bench/web.py [--actions 10000] [--months 24] [--clients 20] [--requests 15] [--feedback 5000]
                        [--think 0 1] [--workers 1]

Seeds a SQLite database (actions with evidence and history across 8 departments, KPI results for
every department, journey stage and channel for 24 months, the last month's feedback), starts
`cxloop web` in its own process, signs 20 clients in (admins and heads) and has each fetch the
dashboard, the action list and an action page in turn. Prints p50/p95/max per page for each
think time: 0 s is 20 clients hammering back to back (a throughput test: latency = queueing), 1 s
is 20 people each opening a page a second. The aim is p95 < 150 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxloop.config import load_settings  # noqa: E402
from cxloop.db import open_db  # noqa: E402
from cxloop.models import Action, ActionEvent, Feedback, KpiResult  # noqa: E402
from cxloop.periods import shift_period  # noqa: E402
from cxloop.web.users import add_user  # noqa: E402

DEPARTMENTS = [f"d{i}" for i in range(8)]
STAGES = [f"stage{i}" for i in range(8)]
CHANNELS = ["web", "app", "hotline", "store", "email", "social"]
KPIS = ["nps", "csat", "ces_top", "complaint_rate"]
LAST = "2026-10"
PASSWORD = "bench-password-123"


def config_text(url: str) -> str:
    lines = ['[project]\nlanguage = "en"\n', f'[database]\nurl = "{url}"\n']
    for i, d in enumerate(DEPARTMENTS):
        lines.append(f'[departments.{d}]\nname = "Department {i}"\nhead = "Head {i}"\n'
                     f'owns = {{ journey_stage = ["{STAGES[i]}"] }}\n')
    return "\n".join(lines)


def seed(folder: Path, n_actions: int, months: int, n_feedback: int) -> Path:
    url = f"sqlite:///{folder / 'bench.db'}"
    config = folder / "cxloop.toml"
    config.write_text(config_text(url), encoding="utf-8")
    engine = open_db(url)
    rng = random.Random(1)
    periods = [shift_period(LAST, -i) for i in range(months)][::-1]
    kpi_rows = []
    for p in periods:
        for kpi in KPIS:
            scopes = [("overall", "all"), *(("department", d) for d in DEPARTMENTS),
                      *(("journey_stage", s) for s in STAGES), *(("channel", c) for c in CHANNELS)]
            for scope, value in scopes:
                v = rng.uniform(20, 80)
                kpi_rows.append(dict(period=p, kpi=kpi, scope=scope, scope_value=value,
                                     n=rng.randint(80, 3000), value=v, ci_low=v - 4, ci_high=v + 4,
                                     method="bench", target=50.0, min_n=30,
                                     status="met" if v > 50 else "missed", provisional=False, stats={}))
    actions, events = [], []
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(1, n_actions + 1):
        dept = DEPARTMENTS[i % len(DEPARTMENTS)]
        opened = periods[i % len(periods)]
        evidence = [{"period": opened, "value": 30.0, "ci_low": 25.0, "ci_high": 35.0, "n": 400,
                     "target": 50.0, "gap": -20.0, "status": "missed",
                     "worst_comments": [{"text": "送货太慢，客服不回复"}]}]
        status = rng.choice(["open", "acknowledged", "in_progress", "done", "verified"])
        actions.append(dict(id=i, kpi=KPIS[i % 4], scope="journey_stage", scope_value=STAGES[i % 8],
                            department=dept, head="", status=status,
                            severity=rng.choice(["high", "medium", "low"]), opened_period=opened,
                            due=date(2026, 1, 1) + timedelta(days=i % 600), baseline_value=30.0,
                            target=50.0, evidence=evidence, created_at=start, updated_at=start,
                            playbook="Call back every detractor within 48 hours."))
        for k in range(3):
            events.append(dict(action_id=i, period=opened, at=start + timedelta(minutes=k), by="cxloop",
                               note=f"event {k}"))
    fb_rows = []
    for j in range(n_feedback):
        fb_rows.append(dict(source="bench", response_id=f"r{j}", period=LAST,
                            submitted_at=datetime(2026, 10, 10, tzinfo=UTC), channel=CHANNELS[j % 6],
                            journey_stage=STAGES[j % 8], department=DEPARTMENTS[j % 8],
                            nps=rng.randint(0, 10), csat=rng.randint(1, 5),
                            comment="物流太慢" if j % 5 == 0 else None,
                            sentiment="negative" if j % 5 == 0 else None,
                            themes="delivery" if j % 5 == 0 else "",
                            is_complaint=j % 7 == 0, content_hash=f"h{j}", quarantined=False,
                            loaded_at=start))
    with engine.begin() as conn:
        conn.execute(KpiResult.__table__.insert(), kpi_rows)  # type: ignore[attr-defined]
        conn.execute(Action.__table__.insert(), actions)  # type: ignore[attr-defined]
        conn.execute(ActionEvent.__table__.insert(), events)  # type: ignore[attr-defined]
        if fb_rows:
            conn.execute(Feedback.__table__.insert(), fb_rows)  # type: ignore[attr-defined]
    settings = load_settings(config, env={})
    add_user(settings, engine, "admin", "admin", password=PASSWORD)
    for d in DEPARTMENTS:
        add_user(settings, engine, f"head-{d}", "head", d, password=PASSWORD)
    engine.dispose()
    return config


def client_loop(base: str, name: str, action_ids: list[int], requests: int, think: float,
                out: dict[str, list[float]], lock: threading.Lock, errors: list[str],
                ready: threading.Barrier) -> None:
    with httpx.Client(base_url=base, timeout=120) as c:
        token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
        assert token
        c.post("/login", data={"name": name, "password": PASSWORD, "csrf": token.group(1)})
        ready.wait()  # signing in (argon2: memory-hard on purpose) is not what is measured
        for i in range(requests):
            for page, path in (("dashboard", "/"), ("action list", "/actions?status=active"),
                               ("action page", f"/actions/{action_ids[i % len(action_ids)]}")):
                t0 = time.perf_counter()
                r = c.get(path)
                took = (time.perf_counter() - t0) * 1000
                with lock:
                    if r.status_code != 200:
                        errors.append(f"{path}: {r.status_code}")
                    out.setdefault(page, []).append(took)
                if think:
                    time.sleep(think * random.uniform(0.5, 1.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=15, help="rounds of the three pages per client")
    parser.add_argument("--feedback", type=int, default=5_000, help="responses in the last month")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--think", type=float, nargs="+", default=[0.0, 1.0],
                        help="seconds a client waits between pages (one run each)")
    parser.add_argument("--workers", type=int, default=1, help="`cxloop web --workers`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        config = seed(Path(tmp), args.actions, args.months, args.feedback)
        print(f"seeded {args.actions} actions, {args.months} months of KPIs, {args.feedback} responses "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        server = subprocess.Popen([sys.executable, "-m", "cxloop", "web", "--config", str(config),
                                   "--port", str(args.port), "--workers", str(args.workers)],
                                  env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})
        base = f"http://127.0.0.1:{args.port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{base}/login", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            # the first requests import pandas and fill the report cache (each worker its own)
            with httpx.Client(base_url=base, timeout=120) as warm:
                token = re.search(r'name="csrf" value="([^"]+)"', warm.get("/login").text)
                assert token
                warm.post("/login", data={"name": "admin", "password": PASSWORD, "csrf": token.group(1)})
                for path in ("/", "/actions", "/actions/1") * args.workers:
                    warm.get(path)
            results = [(think, *measure(base, args, think)) for think in args.think]
        finally:
            server.terminate()
            server.wait(10)
    print(f"\n{args.clients} concurrent clients, SQLite, {args.actions} actions, {args.months} months of "
          f"KPIs, {args.workers} worker(s)")
    print(f"{'think s':>8}  {'page':<14}{'requests':>10}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for think, out, wall, errors in results:
        for page, times in out.items():
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
            print(f"{think:>8.1f}  {page:<14}{len(times):>10}{statistics.median(times):>10.1f}{p95:>10.1f}"
                  f"{times[-1]:>10.1f}")
        total = sum(len(t) for t in out.values())
        print(f"{think:>8.1f}  {'all':<14}{total:>10}   {total / wall:.1f} requests/s over {wall:.1f} s; "
              f"errors: {len(errors)}" + (" (" + "; ".join(errors[:3]) + ")" if errors else ""))


def measure(base: str, args: argparse.Namespace,
            think: float) -> tuple[dict[str, list[float]], float, list[str]]:
    """One run of all clients; (latencies per page, wall seconds, errors)."""
    out: dict[str, list[float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(args.clients + 1)
    names = ["admin" if i % 2 == 0 else f"head-{DEPARTMENTS[i % 8]}" for i in range(args.clients)]
    threads = []
    for name in names:
        dept_index = DEPARTMENTS.index(name[5:]) if name.startswith("head-") else 0
        ids = [a for a in range(1, args.actions + 1) if a % len(DEPARTMENTS) == dept_index][:50]
        threads.append(threading.Thread(target=client_loop,
                                        args=(base, name, ids, args.requests, think, out, lock, errors,
                                              ready)))
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return out, time.perf_counter() - t0, errors


if __name__ == "__main__":
    main()
