"""The case state machine, shared by the CLI (people) and the daily run (the system).

new -> contacted -> resolved | unreachable | declined; a customer who cannot be reached or will
not talk can be marked so without a contact. Closed cases stay closed: a new complaint opens a
new case.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlmodel import Session

from cxloop.models import CaseEvent, FollowupCase, utcnow

OPEN_STATUSES = ("new", "contacted")
CLOSED_STATUSES = ("resolved", "unreachable", "declined")
ALLOWED: dict[str, set[str]] = {
    "new": {"contacted", "unreachable", "declined"},
    "contacted": {"resolved", "unreachable", "declined"},
    "resolved": set(), "unreachable": set(), "declined": set(),
}
NEEDS_NOTE = {"unreachable", "declined", "resolved"}


class CaseTransitionError(ValueError):
    """A change the lifecycle does not allow; the message says what is allowed."""


def transition(session: Session, case: FollowupCase, to_status: str, *, by: str, note: str = "",
               at: datetime | None = None, root_cause: str | None = None) -> CaseEvent:
    """Move a case on and record who, when and why; contact and closure times feed the SLA KPIs."""
    if to_status not in ALLOWED:
        raise CaseTransitionError(f"unknown status {to_status!r}; known: {', '.join(ALLOWED)}")
    allowed = ALLOWED[case.status]
    if to_status not in allowed:
        options = ", ".join(sorted(allowed)) or "none (it is closed)"
        raise CaseTransitionError(f"case {case.id} is {case.status}: cannot move to {to_status} "
                                  f"(allowed: {options})")
    if to_status in NEEDS_NOTE and not note.strip():
        raise CaseTransitionError(f"moving case {case.id} to {to_status} needs a note (--note)")
    at = at or utcnow()
    event = CaseEvent(case_id=case.id or 0, at=at, by=by, from_status=case.status, to_status=to_status,
                      note=note)
    if to_status == "contacted":
        case.contacted_at = at
    if to_status in CLOSED_STATUSES:
        case.closed_at = at
    if root_cause:
        case.root_cause = root_cause
    case.status = to_status
    session.add(case)
    session.add(event)
    return event


def add_note(session: Session, case: FollowupCase, *, by: str, note: str) -> CaseEvent:
    """A history entry without a change of status."""
    if not note.strip():
        raise CaseTransitionError("a note cannot be empty")
    event = CaseEvent(case_id=case.id or 0, by=by, note=note)
    session.add(event)
    return event


def set_root_cause(session: Session, case: FollowupCase, root_cause: str, *, by: str,
                   known: Collection[str]) -> CaseEvent | None:
    """Tag what caused the complaint, one of the comment topics (`known`), so cases count by the
    same topics as the comments; a history entry says who changed it from what. A closed case may
    be tagged too: the cause is often clear only after the call. The same tag again changes and
    records nothing (a form sent twice)."""
    if root_cause not in known:
        raise CaseTransitionError(f"unknown root cause {root_cause!r}; known: {', '.join(sorted(known))}")
    if root_cause == case.root_cause:
        return None
    event = CaseEvent(case_id=case.id or 0, by=by,
                      note=f"root cause: {case.root_cause or '-'} -> {root_cause}")
    case.root_cause = root_cause
    session.add(case)
    session.add(event)
    return event
