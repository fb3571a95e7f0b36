"""Benchmark of the data-quality gate; prints the figures quoted in docs/quality.md.

    python bench/validate.py [--rows 1000000] [--bad 0.02] [--db] [--pg URL]

1. GX row suite (all shipped row expectations; the failing rows with their keys) on N synthetic
   responses in memory, typed as the month frame (`tasks.month`) types them, with a share of crafted
   bad rows.
2. With --db (SQLite file) or --pg URL: the whole stage `validate_period` on a database holding the N
   rows (read the period, GX, quarantine upserts, quality checks, report), after a timed bulk insert;
   then as the cycle runs it, on one kept `month.Month` (the month read once, timed on its own line).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cxloop.config import settings_from_dict  # noqa: E402
from cxloop.models import CANONICAL_FIELDS  # noqa: E402
from cxloop.tasks import month  # noqa: E402
from cxloop.tasks import validate as v  # noqa: E402

PERIOD = "2026-10"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CHANNELS = ["web", "app", "hotline", "store", "email", "social", "ticket", "wechat", "survey"]
STAGES = ["awareness", "consideration", "purchase", "delivery", "after_sales", "feedback"]
TOUCHPOINTS = ["store", "website", "app", "social", "hotline"]


def synthetic(n: int, bad_share: float, seed: int = 11) -> pd.DataFrame:
    """Canonical rows of one month; `bad_share` of them broken in one of several ways."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    submitted = pd.to_datetime(start) + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s")
    opened = submitted + pd.to_timedelta(rng.integers(0, 3600, n), unit="s")
    df = pd.DataFrame({
        "source": np.where(rng.random(n) < 0.7, "survey", "tickets"),
        "response_id": [f"r{i}" for i in range(n)],
        "submitted_at": submitted,
        "channel": rng.choice(CHANNELS, n),
        "journey_stage": rng.choice(STAGES, n),
        "touchpoint": rng.choice(TOUCHPOINTS, n),
        "nps": rng.integers(0, 11, n).astype("float64"),
        "csat": rng.integers(1, 6, n).astype("float64"),
        "ces": rng.integers(1, 8, n).astype("float64"),
        "cx_success": rng.integers(1, 8, n).astype("float64"),
        "cx_effort": rng.integers(1, 8, n).astype("float64"),
        "cx_emotion": rng.integers(1, 8, n).astype("float64"),
        "opened_at": opened,
        "first_response_at": opened + pd.to_timedelta(rng.integers(0, 86400, n), unit="s"),
        "resolved_at": opened + pd.to_timedelta(rng.integers(86400, 5 * 86400, n), unit="s"),
        "comment": "ok",
    })
    bad = np.flatnonzero(rng.random(n) < bad_share)
    kinds = rng.integers(0, 5, len(bad))
    df.loc[bad[kinds == 0], "nps"] = 12
    df.loc[bad[kinds == 1], "channel"] = "fax"
    df.loc[bad[kinds == 2], "resolved_at"] = df.loc[bad[kinds == 2], "opened_at"] - timedelta(hours=3)
    df.loc[bad[kinds == 3], "csat"] = 0
    df.loc[bad[kinds == 4], "submitted_at"] = pd.Timestamp(NOW + timedelta(days=2))
    return df


def timed(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    print(f"  {label:<44} {time.perf_counter() - t0:8.2f} s wall {time.process_time() - c0:8.2f} s cpu",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--bad", type=float, default=0.02)
    ap.add_argument("--db", action="store_true", help="also run the whole stage on a SQLite file")
    ap.add_argument("--pg", help="also run the whole stage on this PostgreSQL URL (an empty schema)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="cxloop-bench-"))
    settings = settings_from_dict({
        "sources": [{"name": "survey", "kind": "csv", "path": "s.csv"},
                    {"name": "tickets", "kind": "csv", "path": "t.csv"}],
        "vocabulary": {"journey_stage": STAGES, "touchpoint": TOUCHPOINTS},
        "quality": {"max_quarantine_share": 0.05},
    }, tmp, env={})
    print(f"validate benchmark: {args.rows:,} rows, {args.bad:.0%} crafted bad rows")
    timed("import great_expectations", v._gx)
    df = timed("make synthetic rows", synthetic, args.rows, args.bad)
    params = v.placeholder_values(settings, PERIOD, NOW)
    exps = [e for s in v.load_suites(settings) for e in v.expectations_of(s, settings, params)]
    row_exps = [e for e in exps if e.level == "row"]
    typed = month.typed(df.assign(id=np.arange(1, len(df) + 1), quarantined=False))
    needed = v.needed_columns(row_exps)
    picked = typed[["id", "source", "quarantined",
                    *[c for c in CANONICAL_FIELDS if needed is None or c in needed]]]
    frame = timed("row_frame (row keys)", v.row_frame, picked)
    checks, reasons = timed(f"GX row suite ({len(row_exps)} expectations)", v.check_rows, row_exps, frame)
    failed = sum(not c.success for c in checks)
    print(f"  -> {len(reasons):,} rows to quarantine, {failed} expectations failed")

    for url in ([f"sqlite:///{tmp / 'bench.db'}"] if args.db else []) + ([args.pg] if args.pg else []):
        from sqlalchemy import insert

        from cxloop.db import open_db
        from cxloop.models import Feedback

        engine = open_db(url)
        records = df.assign(period=PERIOD, content_hash="h", quarantined=False, loaded_at=NOW)
        rows = records.astype(object).where(records.notna(), None).to_dict("records")

        def load(rows: list[dict[str, Any]] = rows, engine: Any = engine) -> None:
            with engine.begin() as conn:
                for i in range(0, len(rows), 50_000):
                    conn.execute(insert(Feedback), rows[i:i + 50_000])

        print(f"database {url.split('://')[0]}:")
        timed("bulk insert (setup, not part of the stage)", load)
        gate = timed("validate_period, first run (whole stage)", v.validate_period, settings, engine, PERIOD,
                     now=NOW)
        print(f"  -> {gate.status}, quarantined {gate.quarantined:,} ({gate.quarantine_share:.2%}), "
              f"failed critical {gate.failed_critical}")
        timed("validate_period, re-run (idempotent)", v.validate_period, settings, engine, PERIOD, now=NOW)
        shared = month.Month(engine, PERIOD, keep=True)
        timed("month read (once per cycle run, shared)", shared.rows)
        timed("validate_period on the kept month", v.validate_period, settings, engine, PERIOD, now=NOW,
              month_rows=shared)
        engine.dispose()


if __name__ == "__main__":
    main()
