"""The tables of cxloop. One schema for SQLite and PostgreSQL; changes go through `migrations/`.

Times are timezone-aware and stored in UTC (sqlmodel's UTCDateTime refuses naive ones). `period`
("YYYY-MM", in the project time zone) is computed once at collection, so every later stage selects
a month by an indexed string, not by time-zone arithmetic.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, overload

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Canonical feedback record: name -> kind. Order is the order shown to users.
CANONICAL_FIELDS: dict[str, str] = {
    "response_id": "str",
    "submitted_at": "datetime",
    "channel": "str",
    "journey_stage": "str",
    "touchpoint": "str",
    "department": "str",
    "customer_id": "str",
    "segment": "str",
    "region": "str",
    "language": "str",
    "nps": "int",
    "csat": "int",
    "ces": "int",
    "cx_success": "int",
    "cx_effort": "int",
    "cx_emotion": "int",
    "comment": "str",
    "is_complaint": "bool",
    "contact_ok": "bool",
    "opened_at": "datetime",
    "first_response_at": "datetime",
    "resolved_at": "datetime",
}
REQUIRED_FIELDS = ("response_id", "submitted_at", "channel")
SCORE_FIELDS: dict[str, tuple[int, int]] = {
    "nps": (0, 10), "csat": (1, 5), "ces": (1, 7),
    "cx_success": (1, 7), "cx_effort": (1, 7), "cx_emotion": (1, 7),
}
# Contact details: mapped like any field, but never stored in `feedback`: collect keeps them in
# `customer_contact`, and only for a response whose customer agreed to be contacted (issue 19).
CONTACT_FIELDS: dict[str, str] = {"contact_name": "str", "contact_phone": "str", "contact_email": "str"}
MAPPED_FIELDS: dict[str, str] = {**CANONICAL_FIELDS, **CONTACT_FIELDS}  # what a source may map
SCOPE_FIELDS = ("department", "journey_stage", "touchpoint", "channel", "segment", "region")


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC time: SQLite gives back the naive UTC time it was given."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _json(default: Any = None) -> Any:
    return Field(default_factory=(lambda: default() if callable(default) else default),
                 sa_column=Column(JSON, nullable=True))


class Feedback(SQLModel, table=True):
    """One customer response, clean or quarantined; key (source, response_id)."""

    __table_args__ = (
        UniqueConstraint("source", "response_id", name="uq_feedback_source_response"),
        Index("ix_feedback_period_quarantined", "period", "quarantined"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str  # looked up through the (source, response_id) index
    response_id: str
    period: str
    submitted_at: datetime
    channel: str
    journey_stage: str | None = None
    touchpoint: str | None = None
    department: str | None = None
    customer_id: str | None = None
    segment: str | None = None
    region: str | None = None
    language: str | None = None
    nps: int | None = None
    csat: int | None = None
    ces: int | None = None
    cx_success: int | None = None
    cx_effort: int | None = None
    cx_emotion: int | None = None
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    is_complaint: bool | None = None
    contact_ok: bool | None = None
    opened_at: datetime | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    # Filled by the comments stage; not indexed, so that on PostgreSQL the update stays on the row's
    # page, where migration 0014 keeps room for it (fillfactor 80).
    sentiment: str | None = None
    sentiment_score: float | None = None
    themes: str | None = None  # comma-separated topic ids, "" when none matched
    # Bookkeeping.
    content_hash: str
    # The import that last wrote the row (`ImportRecord.id`), written in the same transaction; not a
    # foreign key (migration 0013: PostgreSQL's row-by-row check made a 1M-row collect a third slower).
    import_id: int | None = None
    quarantined: bool = False
    loaded_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None


class FeedbackRating(SQLModel, table=True):
    """A response's attribute ratings (key drivers, tasks/drivers.py): {driver: value}.

    One row per response, not one per rating: a month of 1M responses x 14 drivers reads as 1M rows.
    A driver the customer did not rate is absent from the dict - missing, never zero.
    """

    __tablename__ = "feedback_rating"

    feedback_id: int = Field(primary_key=True, foreign_key="feedback.id")
    period: str = Field(index=True)
    ratings: dict[str, Any] = _json(dict)


class ImportRecord(SQLModel, table=True):
    __tablename__ = "import_record"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(index=True)
    file: str
    content_hash: str
    period: str = Field(index=True)
    started_at: datetime = Field(default_factory=utcnow)
    # The start of the collect that wrote it, shared by every record of one collect of a source:
    # which failures are current (`tasks/collect/records.py`). None: written before migration 0015.
    collect_started: datetime | None = None
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    updated: int = 0
    rejected: int = 0
    out_of_period: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    periods: dict[str, Any] | None = _json()  # rows per period of the file (tasks/collect/)
    # What was cleaned or noticed in a file that loaded: {"nul_removed": {"cells", "first"},
    # "conflicting_ids": {"count", "first"}} (tasks/mapping.py)
    warnings: dict[str, Any] | None = _json()


class QuarantinedRow(SQLModel, table=True):
    """A row that failed a check: kept with its raw values and every reason, never dropped."""

    __tablename__ = "quarantined_row"
    __table_args__ = (UniqueConstraint("period", "source", "row_key", name="uq_quarantine_row"),)

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(index=True)
    source: str
    row_key: str  # response_id when the row has one, else "file:line"
    response_id: str | None = None
    file: str | None = None
    line: int | None = None
    stage: str = "validate"  # collect | validate
    raw: dict[str, Any] = _json(dict)
    reasons: list[dict[str, Any]] = _json(list)
    created_at: datetime = Field(default_factory=utcnow)
    readmitted_at: datetime | None = None


class Cycle(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(unique=True)
    status: str = "running"  # running | completed | held | failed
    gate: str | None = None  # passed | held | accepted
    started_by: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    risk_accepted_by: str | None = None
    risk_accepted_at: datetime | None = None
    risk_reason: str | None = None
    # validate's figures of the month the risk was accepted for (`flows.bookkeeping.gate_basis`)
    risk_basis: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    report_path: str | None = None
    validation_report_path: str | None = None
    runner: str | None = None  # host:pid:start of the process running it (tasks/claims.py)


class CycleStage(SQLModel, table=True):
    __tablename__ = "cycle_stage"
    __table_args__ = (UniqueConstraint("period", "stage", name="uq_cycle_stage"),)

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(index=True)
    stage: str
    status: str = "running"  # running | completed | failed | skipped
    input_hash: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    counts: dict[str, Any] = _json(dict)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class CommentAnalysis(SQLModel, table=True):
    """What a period's stored comment analyses were made with (model, topics, thresholds): the
    comments stage analyses every row again when this fingerprint changes."""

    __tablename__ = "comment_analysis"

    period: str = Field(primary_key=True)
    fingerprint: str
    model: str = ""
    analysed_at: datetime = Field(default_factory=utcnow)


class ColumnarCopy(SQLModel, table=True):
    """The stamp of a period's columnar copy (`tasks.columnar`): what the period's rows looked like
    when the copy was last written or kept in step. A copy whose stamp differs from the rows' stamp
    now, or that has no row here, is stale and never read."""

    __tablename__ = "columnar_copy"

    period: str = Field(primary_key=True)
    stamp: str
    rows: int = 0
    max_id: int = 0
    written_at: datetime = Field(default_factory=utcnow)


class QualityCheck(SQLModel, table=True):
    """One expectation's result in one cycle's gate."""

    __tablename__ = "quality_check"

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(index=True)
    suite: str
    expectation: str
    column: str | None = None
    level: str = "row"  # row | batch
    severity: str = "critical"
    success: bool = True
    unexpected_count: int = 0
    observed: dict[str, Any] = _json(dict)
    sample: list[Any] = _json(list)


class KpiResult(SQLModel, table=True):
    __tablename__ = "kpi_result"
    __table_args__ = (UniqueConstraint("period", "kpi", "scope", "scope_value", name="uq_kpi_result"),)

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(index=True)
    kpi: str
    scope: str
    scope_value: str
    n: int
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    method: str = ""
    target: float | None = None
    min_n: int | None = None
    status: str = "no_target"  # met | missed | at_risk | insufficient | no_target
    signal: str | None = None  # signal_high | signal_low | None
    provisional: bool = False
    stats: dict[str, Any] = _json(dict)  # sufficient statistics (histogram) for merging / re-measuring


class AppliedTarget(SQLModel, table=True):
    """The targets in force when a period was computed, so a later config edit does not rewrite history."""

    __tablename__ = "applied_target"
    __table_args__ = (UniqueConstraint("period", "kpi", "scope", "match", name="uq_applied_target"),)

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(index=True)
    kpi: str
    scope: str
    match: str = ""  # "" = every value of the scope
    value: float
    min_n: int


class Action(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kpi: str
    scope: str
    scope_value: str
    department: str = Field(index=True)
    head: str = ""
    status: str = Field(default="open", index=True)
    severity: str = "medium"  # high | medium | low
    opened_period: str = Field(index=True)
    due: date | None = None
    baseline_value: float | None = None
    target: float | None = None
    evidence: list[dict[str, Any]] = _json(list)  # one entry per cycle that (re)confirmed the gap
    playbook: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_period: str | None = None


class ActionEvent(SQLModel, table=True):
    """Every change of an action: who, when, why."""

    __tablename__ = "action_event"

    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="action.id", index=True)
    period: str | None = None
    at: datetime = Field(default_factory=utcnow)
    by: str = "cxloop"
    from_status: str | None = None
    to_status: str | None = None
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    link: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # evidence (http/https)


class Measurement(SQLModel, table=True):
    """One re-measurement of one action in one cycle."""

    __table_args__ = (UniqueConstraint("action_id", "period", name="uq_measurement"),)

    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="action.id", index=True)
    period: str = Field(index=True)
    value: float | None = None
    n: int = 0
    baseline: float | None = None
    change: float | None = None
    change_ci_low: float | None = None
    change_ci_high: float | None = None
    effect: float | None = None
    effect_ci_low: float | None = None
    effect_ci_high: float | None = None
    method: str = ""  # did | pre_post
    comparison_scopes: int = 0
    verdict: str = "insufficient"  # improved | no_change | worsened | insufficient
    decision: str | None = None
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class OutboxMessage(SQLModel, table=True):
    """A notice to send. Unique per (period, department, kind): re-runs never send twice."""

    __tablename__ = "outbox_message"
    __table_args__ = (UniqueConstraint("period", "recipient", "kind", name="uq_outbox"),)

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(index=True)
    recipient: str  # department id, "data_owners", "escalation"
    kind: str  # digest | escalation | data_quality | all_clear
    route: str = ""  # masked description of where it goes
    language: str = "zh"
    subject: str = ""
    body_html: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    body_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    status: str = Field(default="pending", index=True)  # pending | sent | failed | no_route
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    delivered: list[str] = _json(list)  # masked receivers already served, so a retry skips them
    claimed_by: str | None = None  # host:pid:start of the run sending it (tasks/claims.py)


class WebUser(SQLModel, table=True):
    """A person who signs in to the web workspace (`cxloop users ...`). `session_version` grows on
    disable and reset, so every session signed with an older version stops working at once."""

    __tablename__ = "web_user"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)  # the login, e.g. an e-mail address
    display_name: str = ""
    role: str = "viewer"  # admin | head | member | viewer (web/access.py)
    department: str | None = None
    password_hash: str | None = None  # argon2id; None = signs in by link only
    active: bool = True
    session_version: int = 1
    created_at: datetime = Field(default_factory=utcnow)


class WebLink(SQLModel, table=True):
    """A single-use sign-in link carried by a notice: only a keyed hash of its token is stored."""

    __tablename__ = "web_link"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True)
    user_id: int = Field(foreign_key="web_user.id", index=True)
    action_id: int | None = None  # the page the link opens
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class AuditEntry(SQLModel, table=True):
    """Who did what in the web workspace or to its accounts, and when."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    verb: str  # sign_in(_failed) | ack | start | done | cancel | note | evidence | assign | readmit | user_*
    # | contacted | resolved | unreachable | declined | root_cause (follow-up cases)
    target: str = ""  # "action:12", "case:7", "user:wang", "quarantine:34"
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class LoginAttempt(SQLModel, table=True):
    """A failed password sign-in (web/throttle.py): counted per account and per client address in
    the database, so the limit holds across worker processes and restarts."""

    __tablename__ = "login_attempt"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    account: str = Field(index=True)  # the name typed, lower-cased: known or not, counted the same
    client: str = Field(index=True)  # the client's address ("" when unknown)


class CustomerContact(SQLModel, table=True):
    """How to reach the customer behind one response: only for consenting customers (issue 19),
    shown to the case's owner and admins only, purged after `[cases] retention_days`."""

    __tablename__ = "customer_contact"
    __table_args__ = (UniqueConstraint("source", "response_id", name="uq_customer_contact"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    response_id: str
    customer_id: str | None = Field(default=None, index=True)
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    submitted_at: datetime | None = Field(default=None, index=True)  # the daily purge's range
    stored_at: datetime = Field(default_factory=utcnow)


class FollowupCase(SQLModel, table=True):
    """One unhappy customer to call back (issue 19): opened by the daily follow-up run, unique per
    first response (`case_key`), so a re-run of a day opens nothing twice."""

    __tablename__ = "followup_case"
    # The SLA scan reads only the open cases whose watched deadline has come near (tasks/cases/sla.py).
    __table_args__ = (Index("ix_followup_case_sla_watch", "status", "sla_watch"),)

    id: int | None = Field(default=None, primary_key=True)
    case_key: str = Field(unique=True)  # "source:response_id" of the response that opened it
    customer_id: str | None = Field(default=None, index=True)
    department: str = Field(index=True)
    queue: str | None = None
    status: str = Field(default="new", index=True)  # new | contacted | resolved | unreachable | declined
    period: str = Field(index=True)  # month of the response that opened it
    rules: list[str] = _json(list)
    responses: int = 1
    opened_at: datetime  # when the first response was submitted: the SLA clock starts here
    created_at: datetime = Field(default_factory=utcnow)
    contact_due: datetime
    close_due: datetime
    contacted_at: datetime | None = None
    closed_at: datetime | None = None
    root_cause: str | None = None
    outcome: str | None = None  # recovered | not_recovered
    resurvey_score: int | None = None
    resurvey_at: datetime | None = None
    reminded: list[str] = _json(list)  # SLAs ("contact", "close") whose reminder is queued
    escalated: list[str] = _json(list)  # SLAs whose one escalation is queued
    sla_watch: datetime | None = None  # earliest deadline still owed a reminder or escalation


class CaseResponse(SQLModel, table=True):
    """The responses of a case: a response belongs to at most one case."""

    __tablename__ = "case_response"

    feedback_id: int = Field(primary_key=True, foreign_key="feedback.id")
    case_id: int = Field(foreign_key="followup_case.id", index=True)


class CaseEvent(SQLModel, table=True):
    """Every change of a case and every note: who, when, what."""

    __tablename__ = "case_event"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="followup_case.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    by: str = "cxloop"
    from_status: str | None = None
    to_status: str | None = None
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class CaseNotice(SQLModel, table=True):
    """Which outbox messages quote a case (so `customers forget` can find them)."""

    __tablename__ = "case_notice"

    case_id: int = Field(primary_key=True, foreign_key="followup_case.id")
    message_id: int = Field(primary_key=True, foreign_key="outbox_message.id")


class FollowupRun(SQLModel, table=True):
    """One daily follow-up run: the feedback rows up to `last_feedback_id` have been considered."""

    __tablename__ = "followup_run"

    id: int | None = Field(default=None, primary_key=True)
    day: str = Field(index=True)
    last_feedback_id: int = 0
    considered: int = 0
    opened: int = 0
    merged: int = 0
    finished_at: datetime = Field(default_factory=utcnow)


class Outcome(SQLModel, table=True):
    """One row of the outcomes export (`[outcomes]`): what a customer did on a date - orders, spend,
    visits, a churn or renewal flag - joined to responses by customer id (tasks/outcomes.py).

    Rows are kept per file: re-collecting a changed file replaces its rows, an unchanged one (same
    `file_hash`) is skipped, so a re-run never duplicates. `customer_id` is personal data:
    `cxloop customers forget` deletes the customer's rows."""

    __tablename__ = "outcome"

    id: int | None = Field(default=None, primary_key=True)
    file: str = Field(index=True)  # as named in messages: relative to the config
    file_hash: str
    row: int  # the spreadsheet row (header = 1)
    customer_id: str = Field(index=True)
    at: datetime  # the row's date (a date alone is the start of that day in the project time zone)
    orders: float | None = None
    spend: float | None = None
    visits: float | None = None
    churned: bool | None = None
    renewed: bool | None = None
    loaded_at: datetime = Field(default_factory=utcnow)
