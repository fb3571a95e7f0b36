"""The report's "Score and what customers do afterwards" section: the month's responses joined by
customer id to the `[outcomes]` export (orders, spend, visits, churn / renewal in the window after
each answer), each outcome per NPS group with n and its interval, complaints per 1,000 orders, and
what one NPS point is associated with - said to be an association, not a cause (tasks/outcomes.py).

Only responses whose whole window has been observed count: a window that runs past the latest
outcome date would read "no orders yet" as "no orders". Only customers the outcomes export knows
join (an id the export never saw is a mismatch, not a customer who bought nothing). Absent when
`[outcomes]` is not configured; a one-line note when fewer than `min_customers` customers join.
Company-wide: a department's share of joined customers is rarely enough for intervals that say
anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd
from sqlalchemy import Engine, Table, func, select

from cxloop.config import OUTCOME_FLAGS, OUTCOME_MEASURES, Settings
from cxloop.models import Feedback, Outcome, as_utc
from cxloop.periods import period_bounds
from cxloop.tasks.outcomes import (
    ASSOCIATION_NOTE,
    GROUPS,
    join_outcomes,
    outcome_by_group,
    rate_per_thousand,
    value_of_one_point,
)
from cxloop.tasks.rendering import translate

_FB: Table = Feedback.__table__  # type: ignore[attr-defined]
_OUT: Table = Outcome.__table__  # type: ignore[attr-defined]

OUTCOME_LABELS = {"orders": "Orders", "spend": "Spend", "visits": "Visits", "churned": "Churned",
                  "renewed": "Renewed"}
GROUP_LABELS = {"promoter": "Promoters (9–10)", "passive": "Passives (7–8)", "detractor": "Detractors (0–6)"}


@dataclass
class GroupCell:
    group: str
    n: int
    value: str
    ci: str


@dataclass
class OutcomeLine:
    outcome: str
    label: str
    unit: str
    cells: list[GroupCell]
    per_point: str  # associated change per customer for one NPS point
    per_point_ci: str


@dataclass
class OutcomesSection:
    window_days: int
    customers: int
    responses: int
    through: str  # latest outcome date: windows ending after it are left out
    lines: list[OutcomeLine] = field(default_factory=list)
    complaints: int | None = None
    orders: float | None = None
    complaint_rate: str = ""
    complaint_rate_ci: str = ""
    incomplete: int = 0  # responses whose window is not yet over
    too_few: str = ""  # the one line shown instead when too few customers join
    note: str = ""


def _num(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _signed(v: float, digits: int) -> str:
    return f"{v:+,.{digits}f}"


def _responses(engine: Engine, period: str) -> pd.DataFrame:
    """The month's answered NPS with a customer id whom the outcomes export knows."""
    known = select(_OUT.c.customer_id).distinct()
    with engine.connect() as conn:
        rows = conn.execute(select(_FB.c.id, _FB.c.customer_id, _FB.c.submitted_at, _FB.c.nps).where(
            _FB.c.period == period, _FB.c.quarantined.is_(False), _FB.c.nps.is_not(None),
            _FB.c.customer_id.in_(known))).all()
    frame = pd.DataFrame(rows, columns=["response_id", "customer_id", "submitted_at", "nps"])
    frame["submitted_at"] = pd.to_datetime(frame["submitted_at"], utc=True)
    return frame


def _outcomes(engine: Engine, period: str, names: list[str]) -> pd.DataFrame:
    customers = select(_FB.c.customer_id).where(_FB.c.period == period, _FB.c.customer_id.is_not(None))
    with engine.connect() as conn:
        rows = conn.execute(select(_OUT.c.customer_id, _OUT.c.at, *[_OUT.c[n] for n in names])
                            .where(_OUT.c.customer_id.in_(customers))).all()
    frame = pd.DataFrame(rows, columns=["customer_id", "date", *names])
    for name in names:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


def _complaint_rate(engine: Engine, settings: Settings, period: str) -> tuple[int, float] | None:
    """(complaints among the month's responses, orders dated in the month); None without orders."""
    start, end = period_bounds(period, settings.tz)
    with engine.connect() as conn:
        orders = conn.execute(select(func.sum(_OUT.c.orders)).where(_OUT.c.at >= start, _OUT.c.at < end)
                              ).scalar()
        complaints = conn.execute(select(func.count()).select_from(_FB).where(
            _FB.c.period == period, _FB.c.quarantined.is_(False), _FB.c.is_complaint.is_(True))).scalar()
    if not orders:
        return None
    return int(complaints or 0), float(orders)


def outcomes_section(settings: Settings, engine: Engine, period: str, lang: str) -> OutcomesSection | None:
    """The section's data, or None when `[outcomes]` is not configured."""
    cfg = settings.outcomes
    if cfg is None:
        return None

    def t(text: str) -> str:
        return translate(text, lang)

    measures = [m for m in OUTCOME_MEASURES if m in cfg.columns]
    flags = [f for f in OUTCOME_FLAGS if f in cfg.columns]
    with engine.connect() as conn:
        latest = as_utc(conn.execute(select(func.max(_OUT.c.at))).scalar())
    responses = _responses(engine, period)
    window = timedelta(days=cfg.window_days)
    complete = (responses["submitted_at"] + window <= pd.Timestamp(latest)) if latest is not None \
        else pd.Series(False, index=responses.index)
    section = OutcomesSection(window_days=cfg.window_days, customers=0, responses=0,
                              through=latest.astimezone(settings.tz).date().isoformat() if latest else "–",
                              incomplete=int((~complete).sum()),
                              note=ASSOCIATION_NOTE["zh" if lang == "zh" else "en"])
    rate = _complaint_rate(engine, settings, period) if "orders" in cfg.columns else None
    if rate is not None:
        section.complaints, section.orders = rate
        value = rate_per_thousand(rate[0], int(round(rate[1])))
        if value is not None:
            section.complaint_rate = _num(value[0])
            section.complaint_rate_ci = f"{_num(value[1])}–{_num(value[2])}"
    responses = responses[complete.to_numpy(dtype=bool)]
    customers = int(responses["customer_id"].nunique())
    if customers < cfg.min_customers:
        section.customers = customers
        section.too_few = t("Not enough joined customers for outcomes") + f" (n={customers}, " \
            + t("at least") + f" {cfg.min_customers})."
        return section
    joined = join_outcomes(responses, _outcomes(engine, period, [*measures, *flags]), cfg.window_days,
                           measures, flags)
    section.customers, section.responses = customers, len(joined)
    scores = joined["nps"].to_numpy(dtype=float)
    for name in [*measures, *flags]:
        flag = name in flags
        unit = "%" if flag else (cfg.currency if name == "spend" else "")
        groups = outcome_by_group(scores, joined[name].to_numpy(dtype=float), flag=flag,
                                  seed_key=(period, name))
        cells = [GroupCell(t(GROUP_LABELS[g.group]), g.n, _num(g.value, 1 if flag else 2),
                           f"{_num(g.low, 1 if flag else 2)}–{_num(g.high, 1 if flag else 2)}"
                           if g.low is not None else "")
                 for g in sorted(groups, key=lambda g: GROUPS.index(g.group))]
        point = value_of_one_point(scores, joined[name].to_numpy(dtype=float))
        scale, digits = (100.0, 2) if flag else (1.0, 3)  # a flag's slope in percentage points
        points = " " + t("pp") if flag else ""
        section.lines.append(OutcomeLine(
            outcome=name, label=t(OUTCOME_LABELS[name]), unit=unit, cells=cells,
            per_point=_signed(point.per_point * scale, digits) + points if point else "–",
            per_point_ci=f"{_signed(point.low * scale, digits)} – {_signed(point.high * scale, digits)}"
            if point else ""))
    return section


__all__ = ["OutcomesSection", "outcomes_section"]
