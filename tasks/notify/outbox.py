"""Reading the outbox back: its messages as rows for `cxloop outbox` and the exit code of `cxloop run`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cxloop.models import OutboxMessage


def message_row(m: OutboxMessage) -> dict[str, Any]:
    """An outbox row for people and machines: never the body, never a secret."""
    return {"id": m.id, "period": m.period, "recipient": m.recipient, "kind": m.kind,
            "language": m.language, "status": m.status, "attempts": m.attempts, "route": m.route,
            "subject": m.subject, "last_error": m.last_error, "sent_at": m.sent_at,
            "next_attempt_at": m.next_attempt_at}


def outbox_rows(engine: Engine, period: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """The outbox as rows for `cxloop outbox` (no bodies, no secrets)."""
    query = select(OutboxMessage)
    if period:
        query = query.where(OutboxMessage.period == period)
    if status:
        query = query.where(OutboxMessage.status == status)
    with Session(engine) as session:
        return [message_row(m) for m in session.exec(query.order_by(col(OutboxMessage.period),
                                                                    col(OutboxMessage.id))).all()]
