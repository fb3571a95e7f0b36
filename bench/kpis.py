"""Benchmark and simulation of the KPI engine; prints the figures quoted in docs/kpis.md.

    python bench/kpis.py [--rows 1000000] [--trials 500] [--db] [--pg URL]

1. Speed: all KPIs for all scopes on N synthetic responses (histograms + intervals + targets +
   status) against a plain pandas groupby of the same data (mean and count of every score column
   per scope). With --db, also the whole stage on a database (month frame read + compute + store).
2. Calibration: 40 scopes at n=200 with no true difference, target = true value -> share `missed`
   (should be < 5%); a true 12-point NPS shortfall at n=400 (40% promoters / 20% detractors at the
   target) -> share `missed` (should be >= 80%).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cxloop.config import settings_from_dict  # noqa: E402
from cxloop.tasks import kpis  # noqa: E402

DEPARTMENTS = ["marketing", "sales", "customer_service", "product", "logistics", "after_sales"]
STAGES = ["awareness", "consideration", "purchase", "delivery", "after_sales", "feedback"]
TOUCHPOINTS = ["store", "website", "app", "social", "hotline"]
CHANNELS = ["web", "app", "hotline", "store", "email", "social", "ticket", "wechat", "survey"]
SEGMENTS = ["new", "regular", "vip", "business"]
REGIONS = ["north", "south", "east", "west", "central", "northeast", "southwest"]
TOPICS = ["delivery", "price", "quality", "staff", "refund", "app_bug", "wait", "packaging"]


def synthetic(n: int, seed: int = 7) -> pd.DataFrame:
    """Responses shaped like the loaded Feedback columns (durations already in hours)."""
    rng = np.random.default_rng(seed)

    def pick(values: list[str], null: float = 0.0) -> np.ndarray:
        out = np.asarray(values, dtype=object)[rng.integers(0, len(values), n)]
        if null:
            out[rng.random(n) < null] = None
        return out

    def score(lo: int, hi: int, missing: float) -> np.ndarray:
        v = rng.integers(lo, hi + 1, n).astype(float)
        v[rng.random(n) < missing] = np.nan
        return v

    combos = [""] + TOPICS + [f"{a},{b}" for a in TOPICS[:4] for b in TOPICS[4:]]
    themes = np.asarray(combos, dtype=object)[rng.integers(0, len(combos), n)]
    has_comment = rng.random(n) < 0.6
    themes[~has_comment] = ""
    opened = rng.random(n) < 0.3
    first = np.where(opened, rng.exponential(12, n), np.nan)
    resolution = np.where(opened, first + rng.exponential(40, n), np.nan)
    return pd.DataFrame({
        "department": pick(DEPARTMENTS, 0.02), "journey_stage": pick(STAGES, 0.1),
        "touchpoint": pick(TOUCHPOINTS, 0.1), "channel": pick(CHANNELS),
        "segment": pick(SEGMENTS, 0.2), "region": pick(REGIONS, 0.05),
        "nps": score(0, 10, 0.1), "csat": score(1, 5, 0.3), "ces": score(1, 7, 0.4),
        "cx_success": score(1, 7, 0.5), "cx_effort": score(1, 7, 0.5), "cx_emotion": score(1, 7, 0.5),
        "is_complaint": np.where(rng.random(n) < 0.8, (rng.random(n) < 0.08).astype(float), np.nan),
        "sentiment": pick(["negative", "neutral", "positive"]),
        "themes": themes, "has_comment": has_comment,
        "first_response_hours": first, "resolution_hours": resolution,
    })


SETTINGS = settings_from_dict({
    "kpis": {"crossings": [["department", "region"]]},
    "targets": [{"kpi": "nps", "scope": "department", "value": 10},
                {"kpi": "complaint_rate", "scope": "overall", "value": 10},
                {"kpi": "csat", "scope": "channel", "value": 40}],
}, Path.cwd(), env={})


def baseline(df: pd.DataFrame) -> None:
    """A plain pandas groupby of the same data: mean and count of every score column per scope."""
    numeric = ["nps", "csat", "ces", "cx_success", "cx_effort", "cx_emotion", "is_complaint",
               "first_response_hours", "resolution_hours"]
    df[numeric].agg(["mean", "count"])
    for scope in ["department", "journey_stage", "touchpoint", "channel", "segment", "region", "themes",
                  ["department", "region"]]:
        df.groupby(scope)[numeric].agg(["mean", "count"])


def engine_run(df: pd.DataFrame, chunk: int | None = None) -> list[kpis.KpiRow]:
    if chunk:
        parts = [kpis.histograms(df.iloc[i:i + chunk], SETTINGS) for i in range(0, len(df), chunk)]
        hist = kpis.merge_histograms(parts)
    else:
        hist = kpis.merge_histograms([kpis.histograms(df, SETTINGS)])
    return kpis.rows_from_histograms(hist, SETTINGS, period="2026-10")


def best_of(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """Best (wall, CPU) seconds of a few runs; CPU time is the fairer figure on a busy machine."""
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def speed(rows: int) -> None:
    df = synthetic(rows)
    engine_run(df.iloc[:1000])  # warm imports
    base = best_of(lambda: baseline(df))
    one = best_of(lambda: engine_run(df))
    chunked = best_of(lambda: engine_run(df, chunk=250_000), repeat=1)
    n_rows = len(engine_run(df))
    print(f"speed: {rows:,} responses, {n_rows:,} KPI results ({len(kpis.scope_names(SETTINGS))} scopes)")
    print("                                                 wall      CPU   ratio (CPU)")
    print(f"  plain pandas groupby (mean+count per scope): {base[0]:6.2f} s {base[1]:6.2f} s")
    for label, (wall, cpu) in (("all KPIs, all scopes (one frame):", one),
                               ("all KPIs, all scopes (4 chunks merged):", chunked)):
        print(f"  {label:44s} {wall:6.2f} s {cpu:6.2f} s   {cpu / base[1]:4.2f}x")


def db_speed(rows: int, url: str | None) -> None:
    """The whole stage against a database: bulk insert (not timed), then compute_kpis."""
    from sqlalchemy import insert

    from cxloop.db import open_db
    from cxloop.models import Feedback

    tmp = tempfile.mkdtemp()
    url = url or f"sqlite:///{tmp}/bench.db"
    engine = open_db(url)
    df = synthetic(rows)
    base = pd.Timestamp("2026-10-05T08:00:00Z").to_pydatetime()
    recs = []
    for i, r in enumerate(df.itertuples(index=False)):
        rec = {"source": "bench", "response_id": str(i), "period": "2026-10", "submitted_at": base,
               "channel": r.channel, "content_hash": "x", "quarantined": False,
               "department": r.department, "journey_stage": r.journey_stage, "touchpoint": r.touchpoint,
               "segment": r.segment, "region": r.region, "sentiment": r.sentiment, "themes": r.themes,
               "comment": "c" if r.has_comment else None,
               "is_complaint": None if np.isnan(r.is_complaint) else bool(r.is_complaint)}
        for col in ("nps", "csat", "ces", "cx_success", "cx_effort", "cx_emotion"):
            v = getattr(r, col)
            rec[col] = None if np.isnan(v) else int(v)
        if not np.isnan(r.first_response_hours):
            rec["opened_at"] = base
            rec["first_response_at"] = base + pd.Timedelta(hours=r.first_response_hours).to_pytimedelta()
            rec["resolved_at"] = base + pd.Timedelta(hours=r.resolution_hours).to_pytimedelta()
        else:
            rec["opened_at"] = rec["first_response_at"] = rec["resolved_at"] = None
        recs.append(rec)
    with engine.begin() as conn:
        for i in range(0, len(recs), 20_000):
            conn.execute(insert(Feedback.__table__), recs[i:i + 20_000])  # type: ignore[attr-defined]
    t = time.perf_counter()
    loaded = kpis.load_responses(SETTINGS, engine, "2026-10")
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    out = kpis.compute_kpis(SETTINGS, engine, "2026-10")
    t_stage = time.perf_counter() - t
    t = time.perf_counter()
    kpis.compute_kpis(SETTINGS, engine, "2026-10")
    t_rerun = time.perf_counter() - t
    print(f"database ({engine.dialect.name}), {len(loaded):,} responses, {len(out):,} results:")
    print(f"  load_responses (all KPI columns):             {t_load:6.2f} s")
    print(f"  compute_kpis (month read + compute + store):   {t_stage:6.2f} s; re-run {t_rerun:.2f} s")


def _nps_sample(rng: np.random.Generator, n: int, p: float, d: float, size: int) -> np.ndarray:
    """Counts (promoters, passives, detractors) for `size` scopes of n responses."""
    return rng.multinomial(n, [p, 1 - p - d, d], size=size)


def calibration(trials: int) -> None:
    rng = np.random.default_rng(2026)
    # 1. No true difference: 40 scopes x n=200, target = true value, for NPS and CSAT.
    missed = {"nps": 0, "csat": 0, "ces": 0}
    total = 0
    for _ in range(trials):
        nps_counts = _nps_sample(rng, 200, 0.4, 0.2, 40)
        csat_hits = rng.binomial(200, 0.7, 40)
        ces_hist = rng.multinomial(200, [0.05, 0.05, 0.1, 0.2, 0.25, 0.2, 0.15], size=40)
        true_ces = float(np.dot([1, 2, 3, 4, 5, 6, 7], [0.05, 0.05, 0.1, 0.2, 0.25, 0.2, 0.15]))
        items = []
        for j in range(40):
            p, m, d = nps_counts[j]
            items.append(kpis.HistItem("nps", np.array([0.0, 7.0, 9.0]), np.array([d, m, p], dtype=float)))
            items.append(kpis.HistItem("csat", np.array([3.0, 4.0]),
                                       np.array([200 - csat_hits[j], csat_hits[j]], dtype=float)))
            items.append(kpis.HistItem("ces", np.arange(1.0, 8.0), ces_hist[j].astype(float), (j,)))
        for it, m_ in zip(items, kpis.measure_many(items), strict=True):
            target = {"nps": 20.0, "csat": 70.0, "ces": true_ces}[it.kpi]
            status = kpis.judge(it.kpi, m_.value, m_.ci_low, m_.ci_high, m_.n, target, 30)
            missed[it.kpi] += status == "missed"
        total += 40
    print(f"calibration: no true difference, 40 scopes x n=200, {trials} trials, target = true value")
    for kpi, k in missed.items():
        print(f"  {kpi:5s} missed in {k / total:6.2%} of scope results (want < 5%)")
    # 2. A true 12-point NPS shortfall at n=400: target NPS 20 (40%/20%), truth NPS 8 (34%/26%).
    counts = _nps_sample(rng, 400, 0.34, 0.26, trials)
    items = [kpis.HistItem("nps", np.array([0.0, 7.0, 9.0]), np.array([d, m, p], dtype=float))
             for p, m, d in counts]
    hit = sum(kpis.judge("nps", m_.value, m_.ci_low, m_.ci_high, m_.n, 20.0, 30) == "missed"
              for m_ in kpis.measure_many(items))
    print(f"power: true NPS 8 vs target 20 (12-point shortfall), n=400, {trials} trials")
    print(f"  missed in {hit / trials:6.2%} (want >= 80%)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--db", action="store_true", help="also time the stage on SQLite (or --pg)")
    ap.add_argument("--db-rows", type=int, default=200_000)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL for --db")
    args = ap.parse_args()
    speed(args.rows)
    calibration(args.trials)
    if args.db:
        db_speed(args.db_rows, args.pg)


if __name__ == "__main__":
    main()
