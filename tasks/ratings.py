"""Attribute ratings (key drivers) from a source's columns to the `feedback_rating` table and back,
and the key-driver analysis of a stored month per scope.

A source maps a column to each declared driver (`[sources.drivers] seat_comfort = "Seat comfort"`).
An empty cell, or an answer listed in the driver's `not_rated` (0 in many exports), is "not rated":
it is left out, never stored as zero. An answer outside the driver's scale is also left out and
counted, so a misconfigured scale shows up in the import's numbers instead of skewing the analysis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table, delete, insert, select

from cxloop.config import Settings, SourceConfig
from cxloop.models import Feedback, FeedbackRating
from cxloop.tasks.drivers import DriverAnalysis, analyse_drivers

_FB: Table = Feedback.__table__  # type: ignore[attr-defined]
_FR: Table = FeedbackRating.__table__  # type: ignore[attr-defined]
_CHUNK = 5000


@dataclass
class Ratings:
    """A source's ratings: one row per response, NaN where not rated."""

    drivers: list[str]
    values: np.ndarray  # (n, len(drivers)) float
    out_of_scale: dict[str, int] = field(default_factory=dict)
    bad: np.ndarray | None = None  # (n, len(drivers)) bool: an answer outside the scale (left out)

    def take(self, rows: np.ndarray) -> Ratings:
        """These rows' ratings (positions), out-of-scale answers counted among them only."""
        bad = self.bad[rows] if self.bad is not None else None
        sums = [] if bad is None else bad.sum(axis=0).tolist()
        counts = {name: int(k) for name, k in zip(self.drivers, sums, strict=False) if k}
        return Ratings(self.drivers, self.values[rows], counts, bad)

    def as_json(self) -> list[dict[str, int | float]]:
        """Each row's {driver: value}, the drivers not rated left out (missing, never zero)."""
        return [{name: _plain(v) for name, v in zip(self.drivers, row, strict=True) if not np.isnan(v)}
                for row in self.values.tolist()]


def ratings_from_frame(settings: Settings, source: SourceConfig, frame: pd.DataFrame) -> Ratings:
    """The source's driver columns as numbers on each driver's scale (NaN = not rated)."""
    declared = {d.name: d for d in settings.drivers}
    names = [name for name in declared if name in source.drivers]
    values = np.full((len(frame), len(names)), np.nan)
    bad_all = np.zeros((len(frame), len(names)), dtype=bool)
    out_of_scale: dict[str, int] = {}
    for j, name in enumerate(names):
        column = source.drivers[name]
        if column not in frame.columns:
            raise KeyError(f"source {source.name!r}: column {column!r} (mapped to driver {name}) is not in "
                           f"the file; its columns are: {', '.join(map(str, frame.columns))}")
        raw = frame[column]
        text = raw.astype(str).str.strip()
        number = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, copy=True)
        markers = declared[name].not_rated
        numeric_markers = [float(v) for v in markers if not isinstance(v, str)]
        skipped = (raw.isna() | (text == "") | text.isin({str(v).strip() for v in markers})).to_numpy()
        skipped = skipped | np.isin(number, numeric_markers)
        number[skipped] = np.nan
        lo, hi = declared[name].scale
        bad = ~skipped & ~((number >= lo) & (number <= hi))
        number[bad] = np.nan
        if bad.any():
            out_of_scale[name] = int(bad.sum())
        values[:, j] = number
        bad_all[:, j] = bad
    return Ratings(names, values, out_of_scale, bad_all)


def store_ratings(engine: Engine, source: str, period: str, response_ids: Sequence[str],
                  ratings: Ratings) -> int:
    """Write each response's ratings (by the feedback row of (source, response_id)); a re-run
    replaces them, so a re-collected file does not duplicate. Returns the rows written."""
    written = 0
    with engine.begin() as conn:
        for start in range(0, len(response_ids), _CHUNK):
            ids = [str(r) for r in response_ids[start:start + _CHUNK]]
            found = dict(conn.execute(select(_FB.c.response_id, _FB.c.id)
                                      .where(_FB.c.source == source, _FB.c.response_id.in_(ids))).all())
            rows: list[dict[str, Any]] = []
            for offset, rid in enumerate(ids):
                fid = found.get(rid)
                if fid is None:
                    continue
                vals = ratings.values[start + offset]
                given = {name: _plain(v) for name, v in zip(ratings.drivers, vals, strict=True)
                         if not np.isnan(v)}
                rows.append({"feedback_id": fid, "period": period, "ratings": given})
            if rows:
                conn.execute(delete(_FR).where(_FR.c.feedback_id.in_([r["feedback_id"] for r in rows])))
                conn.execute(insert(_FR), rows)
                written += len(rows)
    return written


def _plain(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def read_ratings(engine: Engine, period: str, drivers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(feedback ids, (n, len(drivers)) ratings with NaN for not rated) of one month."""
    with engine.connect() as conn:
        rows = conn.execute(select(_FR.c.feedback_id, _FR.c.ratings).where(_FR.c.period == period)
                            .order_by(_FR.c.feedback_id)).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    values = np.full((len(rows), len(drivers)), np.nan)
    for j, name in enumerate(drivers):
        values[:, j] = [(r[1] or {}).get(name, np.nan) for r in rows]
    return ids, values


def analyse_month(engine: Engine, settings: Settings, period: str,
                  scopes: Sequence[str] = ("overall", "department", "journey_stage")
                  ) -> dict[tuple[str, str], DriverAnalysis]:
    """Key drivers of the month's outcome (`[driver_analysis] outcome`) per scope value with at least
    `[driver_analysis] min_n` rated responses; quarantined rows are left out. Keyed (scope, value),
    ("overall", "all") for the whole month."""
    cfg = settings.driver_analysis
    names = [d.name for d in settings.drivers]
    if not names:
        return {}
    ids, values = read_ratings(engine, period, names)
    if not len(ids):
        return {}
    outcome_col = _FB.c[cfg.outcome]
    scope_cols = [_FB.c[s] for s in scopes if s != "overall"]
    with engine.connect() as conn:
        rows = conn.execute(select(_FB.c.id, outcome_col, *scope_cols)
                            .where(_FB.c.period == period, _FB.c.quarantined.is_(False))).all()
    frame = pd.DataFrame(rows, columns=["id", "outcome", *[c.name for c in scope_cols]]).set_index("id")
    frame = frame.reindex(ids)
    keep = frame["outcome"].notna().to_numpy()  # NaN too for a quarantined response
    scales = [d.scale for d in settings.drivers]
    out: dict[tuple[str, str], DriverAnalysis] = {}
    groups: list[tuple[str, str, np.ndarray]] = []
    for scope in scopes:
        if scope == "overall":
            groups.append(("overall", "all", keep))
            continue
        col = frame[scope].to_numpy(dtype=object)
        for value in sorted({v for v in col[keep] if v is not None and v == v}):
            groups.append((scope, str(value), keep & (col == value)))
    for scope, value, mask in groups:
        if int(mask.sum()) < cfg.min_n:
            continue
        result = analyse_drivers(frame["outcome"].to_numpy(dtype=float)[mask], values[mask], names,
                                 scales=scales, outcome_name=cfg.outcome, resamples=cfg.resamples,
                                 seed_key=(period, scope, value))
        if result is not None:
            out[(scope, value)] = result
    return out


def month_drivers(settings: Settings, engine: Engine, period: str) -> dict[tuple[str, str], DriverAnalysis]:
    """The month's key-driver analyses that the cycle uses (report section, action evidence): overall
    and per department; none without `[[drivers]]`. Deterministic (seeded by period and scope), so
    recomputing them - in a re-run, or `cxloop report` on its own - gives the same figures."""
    if not settings.drivers:
        return {}
    return analyse_month(engine, settings, period, ("overall", "department"))
