"""Who may see and do what in the web workspace: the one place these rules live. Pure functions
of a user and an action, so every route asks the same question and the rules are unit tested.

- admin: sees everything, does everything (reassign, cancel, readmit, every move);
- head / member of a department: that department's page, KPIs and actions, plus the company
  summary; acknowledge, start, finish and add notes on their department's actions;
- viewer: reads the company and every department, changes nothing.

Follow-up cases (issue 19) follow the same lines: a department's heads and members see and work
their department's cases (contact, close, notes, root cause) and see the customer's contact
details; admins see and work every case; viewers read every case with the contact details masked;
anyone else's case is not theirs (403).
"""

from __future__ import annotations

from typing import Protocol

from cxloop.tasks import lifecycle
from cxloop.tasks.actions import STATUS_WORDS
from cxloop.tasks.cases import lifecycle as case_lifecycle

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


# --------------------------------------------------------------------------- follow-up cases

CASE_MOVES = ("contacted", "resolved", "unreachable", "declined")  # in the order a page offers them


def can_see_case(user: Person, case: Owned) -> bool:
    return can_see_department(user, case.department)


def can_work_on_case(user: Person, case: Owned) -> bool:
    """Moves, notes and the root cause: the admins and the case's own department."""
    return can_work_on(user, case)


def can_see_contact(user: Person, case: Owned) -> bool:
    """The customer's name, phone and e-mail: the case's own department and admins only - the
    rule of `cxloop cases show --as` (`contacts.may_see`), asked of the role, so a department
    that happens to be called "admin" is no way round it."""
    return user.role == "admin" or (user.role in DEPARTMENT_ROLES and user.department == case.department)


def case_moves_for(user: Person, case: Owned) -> list[str]:
    """The statuses this user may move this case to now (the lifecycle's, if the case is theirs)."""
    if not can_work_on_case(user, case):
        return []
    allowed = case_lifecycle.ALLOWED.get(case.status, set())
    return [m for m in CASE_MOVES if m in allowed]
