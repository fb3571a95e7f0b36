"""Access and deletion requests (PIPL / GDPR): everything cxloop holds about one customer, and
forgetting it.

Forgetting keeps the aggregates: a response keeps its scores, channel, department and comment
analysis (so past KPIs recompute the same), but loses the customer id and the comment text; a case
keeps its times and outcome (the follow-up KPIs) but loses the customer id and its notes; contact
details and the customer's outcome rows (orders, spend, visits from `[outcomes]`) are deleted;
stored copies of notices that quoted the customer's cases are replaced by a
line saying they were removed; quarantined raw rows naming the customer are deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Table, delete, select, update

from cxloop.db import session_scope
from cxloop.models import (
    CaseEvent,
    CaseNotice,
    CustomerContact,
    Feedback,
    FollowupCase,
    OutboxMessage,
    Outcome,
    QuarantinedRow,
)
from cxloop.tasks.columnar import Copies, mark_stale

REMOVED = "[removed at the customer's request / 应客户要求已删除]"


def _t(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _plain(row: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(row._mapping).items()}


def export_customer(engine: Engine, customer_id: str) -> dict[str, Any]:
    """Every response, contact record, case (with its history) and notice about the customer."""
    fb, cc, fc, ce, cn, om = (_t(m) for m in (Feedback, CustomerContact, FollowupCase, CaseEvent,
                                               CaseNotice, OutboxMessage))
    with engine.connect() as conn:
        responses = [_plain(r) for r in conn.execute(select(fb).where(fb.c.customer_id == customer_id)
                                                     .order_by(fb.c.id))]
        contacts = [_plain(r) for r in conn.execute(select(cc).where(cc.c.customer_id == customer_id))]
        cases = [_plain(r) for r in conn.execute(select(fc).where(fc.c.customer_id == customer_id)
                                                 .order_by(fc.c.id))]
        ids = [c["id"] for c in cases]
        events = [_plain(r) for r in conn.execute(select(ce).where(ce.c.case_id.in_(ids)).order_by(ce.c.id))]
        notices = [_plain(r) for r in conn.execute(
            select(om.c.id, om.c.period, om.c.recipient, om.c.kind, om.c.status, om.c.subject, om.c.body_text)
            .where(om.c.id.in_(select(cn.c.message_id).where(cn.c.case_id.in_(ids)))).order_by(om.c.id))]
        outcomes = [_plain(r) for r in conn.execute(select(_t(Outcome)).where(
            _t(Outcome).c.customer_id == customer_id).order_by(_t(Outcome).c.id))]
    return {"customer_id": customer_id, "responses": responses, "contacts": contacts, "cases": cases,
            "case_events": events, "notices": notices, "outcomes": outcomes}


def forget_customer(engine: Engine, customer_id: str, copies: Copies | None = None) -> dict[str, int]:
    """Remove every trace of the customer in one transaction, leaving the aggregates intact.

    The columnar copies of the months that held the customer's responses are marked stale (their
    freshness stamp does not cover this change) and, with `copies`, deleted, so their text is gone
    too; the next cycle or `cxloop rebuild` writes them again from the database."""
    fb, cc, fc, ce, cn, om, qr = (_t(m) for m in (Feedback, CustomerContact, FollowupCase, CaseEvent,
                                                   CaseNotice, OutboxMessage, QuarantinedRow))
    counts: dict[str, int] = {}
    with session_scope(engine) as session:
        conn = session.connection()
        case_ids = [r[0] for r in conn.execute(select(fc.c.id).where(fc.c.customer_id == customer_id))]
        msg_ids = [r[0] for r in conn.execute(select(cn.c.message_id).where(cn.c.case_id.in_(case_ids)))]
        counts["notices"] = conn.execute(update(om).where(om.c.id.in_(msg_ids)).values(
            body_html=REMOVED, body_text=REMOVED)).rowcount or 0
        counts["case_events"] = conn.execute(update(ce).where(ce.c.case_id.in_(case_ids)).values(
            note=REMOVED)).rowcount or 0
        counts["cases"] = conn.execute(update(fc).where(fc.c.id.in_(case_ids)).values(
            customer_id=None)).rowcount or 0
        counts["contacts"] = conn.execute(delete(cc).where(cc.c.customer_id == customer_id)).rowcount or 0
        periods = sorted({r[0] for r in conn.execute(select(fb.c.period).distinct()
                                                       .where(fb.c.customer_id == customer_id))})
        counts["responses"] = conn.execute(update(fb).where(fb.c.customer_id == customer_id).values(
            customer_id=None, comment=None, contact_ok=None)).rowcount or 0
        for period in periods:
            mark_stale(conn, period)
        stale = [r.id for r in conn.execute(select(qr.c.id, qr.c.raw))
                 if customer_id in (r.raw or {}).values()]
        counts["quarantined"] = conn.execute(delete(qr).where(qr.c.id.in_(stale))).rowcount or 0
        out = _t(Outcome)
        counts["outcomes"] = conn.execute(delete(out).where(out.c.customer_id == customer_id)).rowcount or 0
    if copies is not None:
        for period in periods:
            copies.path(period).unlink(missing_ok=True)
    return counts
