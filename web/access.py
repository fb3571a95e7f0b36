"""Who may see and do what in the web workspace: the one place these rules live. Pure functions
of a user and an action, so every route asks the same question and the rules are unit tested.

- admin: sees everything, does everything (reassign, cancel, readmit, every move);
- head / member of a department: that department's page, KPIs and actions, plus the company
  summary; acknowledge, start, finish and add notes on their department's actions;
- viewer: reads the company and every department, changes nothing.
"""

from __future__ import annotations

from typing import Protocol

from cxloop.tasks import lifecycle
from cxloop.tasks.actions import STATUS_WORDS

ROLES = ("admin", "head", "member", "viewer")
DEPARTMENT_ROLES = ("head", "member")
PERSON_MOVES = ("ack", "start", "done")  # what a department's own people may do
ADMIN_MOVES = ("ack", "start", "done", "cancel")


class Person(Protocol):
    role: str
    department: str | None


class Owned(Protocol):
    department: str
    status: str


def sees_everything(user: Person) -> bool:
    return user.role in ("admin", "viewer")


def can_see_department(user: Person, department: str) -> bool:
    return sees_everything(user) or (user.role in DEPARTMENT_ROLES and user.department == department)


def can_see_action(user: Person, action: Owned) -> bool:
    return can_see_department(user, action.department)


def department_filter(user: Person) -> str | None:
    """The only department whose actions a list may show this user (None: any)."""
    return None if sees_everything(user) else (user.department or "\0none")


def can_work_on(user: Person, action: Owned) -> bool:
    """Notes, evidence links and the everyday moves: the admins and the department's own people."""
    return user.role == "admin" or (user.role in DEPARTMENT_ROLES and user.department == action.department)


def moves_for(user: Person, action: Owned) -> list[str]:
    """The move words (ack, start, done, cancel) this user may try on this action now: their role's
    moves that the lifecycle allows from the action's status."""
    if not can_work_on(user, action):
        return []
    words = ADMIN_MOVES if user.role == "admin" else PERSON_MOVES
    allowed = lifecycle.ALLOWED.get(action.status, set())
    return [w for w in words if STATUS_WORDS[w] in allowed]


def may_move(user: Person, action: Owned, word: str) -> bool:
    """Whether the role may make this move at all (the lifecycle then says whether it may now)."""
    return can_work_on(user, action) and word in (ADMIN_MOVES if user.role == "admin" else PERSON_MOVES)


def can_assign(user: Person) -> bool:
    return user.role == "admin"


def can_handle_quality(user: Person) -> bool:
    """The gate's result, quarantined rows and readmit are for the data owners: the admins."""
    return user.role == "admin"
