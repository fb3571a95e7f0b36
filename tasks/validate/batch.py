"""Batch checks: the period's whole-batch frames (per source, per channel, per score column) and
their expectations.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import median
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from cxloop.config import Settings
from cxloop.models import (
    SCORE_FIELDS,
)
from cxloop.periods import shift_period
from cxloop.tasks.codes import factorize
from cxloop.tasks.validate.gx import run_expectations
from cxloop.tasks.validate.messages import check_result, describe, json_safe
from cxloop.tasks.validate.results import CheckResult
from cxloop.tasks.validate.suites import BATCH_FRAMES, Expectation
from cxloop.tasks.validate.tables import FB


def batch_frames(settings: Settings, engine: Engine, period: str, df: pd.DataFrame,
                 quarantined: int, collect_quarantined: int,
                 collect_by_source: dict[str, int]) -> dict[str, pd.DataFrame]:
    """The metrics tables the batch suites run on (see the module docstring)."""
    q = settings.quality
    history = [shift_period(period, -k) for k in range(1, q.volume_history + 1)]
    with engine.connect() as conn:
        vol_rows = conn.execute(
            select(FB.period, FB.source, func.count())
            .where(FB.period.in_(history)).group_by(FB.period, FB.source)).all()
        null_rows = conn.execute(
            select(FB.period, func.count(), *[func.count(getattr(FB, c)) for c in SCORE_FIELDS])
            .where(FB.period.in_(history)).group_by(FB.period)).all()
        chan_rows = conn.execute(
            select(FB.period, FB.channel).where(FB.period.in_(history))
            .group_by(FB.period, FB.channel)).all()

    total = len(df) + collect_quarantined
    share = (quarantined + collect_quarantined) / total if total else 0.0
    batch = pd.DataFrame([{"subject": "all", "rows": len(df),
                           "quarantined": quarantined + collect_quarantined, "quarantine_share": share}])

    now_by_source = _value_counts(df["source"])
    hist_by_source: dict[str, list[int]] = defaultdict(list)
    for _p, src, n in vol_rows:
        hist_by_source[src].append(int(n))
    configured = [s.name for s in settings.sources]
    names = configured + sorted(set(now_by_source) - set(configured))
    src_records = []
    for name in names:
        n = int(now_by_source.get(name, 0)) + int(collect_by_source.get(name, 0))
        hist = hist_by_source.get(name, [])
        med = float(median(hist)) if hist else None
        src_records.append({
            "subject": name, "rows": n, "history_periods": len(hist), "history_median": med,
            # no ratio without history, or when nothing came (source_delivered reports that)
            "volume_ratio": (n / med) if med and n else float("nan"),
            "delivered": bool(n > 0) or name not in configured,
        })
    sources = pd.DataFrame(src_records, columns=["subject", "rows", "history_periods", "history_median",
                                                 "volume_ratio", "delivered"])
    sources["volume_ratio"] = sources["volume_ratio"].astype("float64")

    hist_periods = sorted({p for p, _s, _n in vol_rows})
    per_period: dict[str, set[str]] = defaultdict(set)
    for p, ch, in chan_rows:
        if ch is not None:
            per_period[p].add(ch)
    steady: set[str] = (set.intersection(*(per_period[p] for p in hist_periods))
                        if len(hist_periods) >= 2 else set())
    now_channels = _value_counts(df["channel"])
    channels = pd.DataFrame(
        [{"subject": ch, "rows": int(now_channels.get(ch, 0)), "history_periods": len(hist_periods),
          "present": bool(now_channels.get(ch, 0))} for ch in sorted(steady)],
        columns=["subject", "rows", "history_periods", "present"])

    hist_n = sum(int(r[1]) for r in null_rows)
    score_records = []
    for i, col in enumerate(SCORE_FIELDS):
        rate = float(df[col].isna().mean()) if len(df) else float("nan")
        hist_rate = (1 - sum(int(r[2 + i]) for r in null_rows) / hist_n) if hist_n else float("nan")
        score_records.append({"subject": col, "null_rate": rate, "history_null_rate": hist_rate,
                              "null_rate_jump": rate - hist_rate})
    score_columns = pd.DataFrame(score_records)
    return {"batch": batch, "sources": sources, "channels": channels, "score_columns": score_columns}


def _value_counts(values: pd.Series) -> dict[Any, int]:
    """Rows per present value (missing ones not counted), from the codes the stages share."""
    codes, uniques = factorize(values)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    return dict(zip(uniques.tolist(), counts.tolist(), strict=True))


def check_batch(expectations: list[Expectation], frames: dict[str, pd.DataFrame]) -> list[CheckResult]:
    checks = []
    for frame in BATCH_FRAMES:
        exps = [e for e in expectations if e.frame == frame]
        for exp, outcome in run_expectations(exps, frames[frame], frame):
            check = check_result(exp, outcome, "subject")
            check.observed.setdefault("table", json_safe(frames[frame].to_dict("records")))
            if not check.success and check.sample:
                check.message = "; ".join(f"{s['key']}: {describe(exp, s['value'])}" for s in check.sample)
            checks.append(check)
    return checks
