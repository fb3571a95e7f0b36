"""One case as people look at it - its responses, the customer's contact details, its history -
read once for `cxloop cases show` and the workspace's case page, so both show the same case.

Nothing here decides who may see the contact details: callers pass them through
`contacts.shown(contact, may_see(...))` (the CLI) or the workspace's access rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from cxloop.models import CaseEvent, CaseResponse, CustomerContact, Feedback, FollowupCase


@dataclass
class CaseDetail:
    case: FollowupCase
    responses: list[Feedback]
    contact: dict[str, str | None] | None
    events: list[CaseEvent]


def case_detail(session: Session, case_id: int) -> CaseDetail | None:
    """The case with its responses (oldest first), history, and the contact details: the latest
    response's, earlier responses filling what it left out; None when there is no such case."""
    case = session.get(FollowupCase, case_id)
    if case is None:
        return None
    responses = list(session.exec(select(Feedback)
                                  .join(CaseResponse, col(CaseResponse.feedback_id) == Feedback.id)
                                  .where(CaseResponse.case_id == case_id).order_by(col(Feedback.id))).all())
    contact: dict[str, str | None] | None = None
    for r in responses:
        c = session.exec(select(CustomerContact).where(CustomerContact.source == r.source)
                         .where(CustomerContact.response_id == r.response_id)).first()
        if c is not None:
            given = {"name": c.name, "phone": c.phone, "email": c.email}
            before: dict[str, str | None] = contact or {}
            contact = {k: v or before.get(k) for k, v in given.items()}
    events = list(session.exec(select(CaseEvent).where(CaseEvent.case_id == case_id)
                               .order_by(col(CaseEvent.id))).all())
    return CaseDetail(case, responses, contact, events)
