"""The action state machine, shared by the CLI (people) and the re-measure stage (the system)."""

from __future__ import annotations

from sqlmodel import Session

from cxloop.models import Action, ActionEvent, utcnow

OPEN_STATUSES = ("open", "acknowledged", "in_progress", "done", "escalated", "reopened")
CLOSED_STATUSES = ("verified", "cancelled")
_WORKING = {"acknowledged", "in_progress", "done", "escalated", "cancelled", "verified"}
ALLOWED: dict[str, set[str]] = {
    "open": _WORKING,
    "acknowledged": _WORKING - {"acknowledged"},
    "in_progress": {"done", "escalated", "cancelled", "verified"},
    "done": {"in_progress", "verified", "escalated", "reopened", "cancelled"},
    "escalated": {"acknowledged", "in_progress", "done", "verified", "cancelled"},
    "reopened": _WORKING,
    "verified": {"reopened"},
    "cancelled": set(),
}
NEEDS_NOTE = {"cancelled", "escalated", "reopened"}


class TransitionError(ValueError):
    """A change of status the lifecycle does not allow; the message says what is allowed."""


def transition(session: Session, action: Action, to_status: str, *, by: str, note: str = "",
               period: str | None = None) -> ActionEvent:
    """Move an action to a new status and record who, when and why in its history."""
    if to_status not in ALLOWED:
        raise TransitionError(f"unknown status {to_status!r}; known: {', '.join(ALLOWED)}")
    allowed = ALLOWED[action.status]
    if to_status not in allowed:
        options = ", ".join(sorted(allowed)) or "none (it is final)"
        raise TransitionError(
            f"action {action.id} is {action.status}: cannot move to {to_status} (allowed: {options})")
    if to_status in NEEDS_NOTE and not note.strip():
        raise TransitionError(f"moving action {action.id} to {to_status} needs a reason (--note)")
    event = ActionEvent(action_id=action.id or 0, period=period, by=by, from_status=action.status,
                        to_status=to_status, note=note)
    action.status = to_status
    action.updated_at = utcnow()
    if to_status in CLOSED_STATUSES:
        action.closed_period = period
    elif to_status == "reopened":
        action.closed_period = None
    session.add(action)
    session.add(event)
    return event


def record_note(session: Session, action: Action, *, by: str, note: str, period: str | None = None,
                link: str | None = None) -> None:
    """A history entry without a change of status (new evidence, progress, re-assignment, a
    person's note or evidence link)."""
    session.add(ActionEvent(action_id=action.id or 0, period=period, by=by, note=note, link=link))
    action.updated_at = utcnow()
    session.add(action)
