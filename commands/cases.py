"""`cxloop followup run`, `cxloop cases ...` and `cxloop customers ...` (issue 19)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from sqlmodel import Session, col, select

from cxloop.commands.common import ConfigOpt, CxError, FormatOpt, load
from cxloop.models import as_utc
from cxloop.output import Format, emit

followup_app = typer.Typer(help="The daily follow-up run: new cases, reminders, escalations.",
                           no_args_is_help=True)
cases_app = typer.Typer(help="Follow-up cases: list, show, contact, resolve, unreachable, decline, note.",
                        no_args_is_help=True)
customers_app = typer.Typer(help="Access and deletion requests: export, forget.",
                            no_args_is_help=True)

IdArg = Annotated[int, typer.Argument(help="Case id (see `cxloop cases list`).", show_default=False)]
NoteOpt = Annotated[str, typer.Option("--note", "-n", help="What was said or done; kept in the history.")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who (default: $CXLOOP_USER or login).",
                                           show_default=False)]
CustomerOpt = Annotated[str, typer.Option("--id", help="The customer id.", show_default=False)]
LIST_COLUMNS = ["id", "department", "queue", "status", "opened_at", "contact_due", "close_due", "responses",
                "root_cause", "outcome"]


def _who(by: str | None) -> str:
    return by or os.environ.get("CXLOOP_USER") or os.environ.get("USER") or "admin"


@followup_app.command("run")
def run_command(config: ConfigOpt = None,
                no_collect: Annotated[bool, typer.Option("--no-collect", help="Skip the import.")] = False,
                fmt: FormatOpt = Format.table) -> None:
    """One day of the inner loop (what the daily schedule runs)."""
    from cxloop.models import utcnow
    from cxloop.tasks.cases.daily import run_day

    settings, engine = load(config)
    if not settings.cases.rules:
        raise CxError("no [[cases.rules]] in the config: nothing opens a follow-up case")
    out = run_day(settings, engine, utcnow(), collect=not no_collect)
    emit([{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in out.items()}], fmt,
         title="follow-up run")


def _local(v: datetime, tz: ZoneInfo) -> str:
    """A stored time (UTC; naive from SQLite) in the project's zone, with the offset shown."""
    return as_utc(v).astimezone(tz).isoformat(sep=" ", timespec="minutes")


def _row(case: Any, tz: ZoneInfo) -> dict[str, Any]:
    """A case's list row, its times in the project's zone."""
    row = {c: getattr(case, c) for c in LIST_COLUMNS}
    return {c: _local(v, tz) if isinstance(v, datetime) else v for c, v in row.items()}


@cases_app.command("list")
def list_command(config: ConfigOpt = None,
                 status: Annotated[str | None, typer.Option(
                     "--status", "-s", help="new, contacted, resolved, unreachable, declined, or open "
                     "(new or contacted).")] = None,
                 department: Annotated[str | None, typer.Option("--department", "-d")] = None,
                 fmt: FormatOpt = Format.table) -> None:
    """List cases, times in the project's time zone (contact details are never listed)."""
    from cxloop.models import FollowupCase
    from cxloop.tasks.cases.lifecycle import ALLOWED, OPEN_STATUSES

    if status and status != "open" and status not in ALLOWED:  # bad usage (exit 2), as `actions list`
        raise typer.BadParameter(f"unknown status {status!r}; known: open, {', '.join(ALLOWED)}",
                                 param_hint="--status")
    settings, engine = load(config)
    statuses = list(OPEN_STATUSES) if status == "open" else [status] if status else None
    with Session(engine) as s:
        query = select(FollowupCase).order_by(col(FollowupCase.id))
        if statuses:
            query = query.where(col(FollowupCase.status).in_(statuses))
        if department:
            query = query.where(FollowupCase.department == department)
        emit([_row(c, settings.tz) for c in s.exec(query).all()], fmt, LIST_COLUMNS, title="cases")


def _case(s: Session, case_id: int) -> Any:
    from cxloop.models import FollowupCase

    case = s.get(FollowupCase, case_id)
    if case is None:
        raise CxError(f"no case {case_id} (see `cxloop cases list`)")
    return case


@cases_app.command("show")
def show_command(case_id: IdArg, config: ConfigOpt = None,
                 viewer: Annotated[str, typer.Option(
                     "--as", help="Who is looking: `admin` or a department id; contact details are shown "
                     "to the case's department and admins only.")] = "",
                 fmt: FormatOpt = Format.json) -> None:
    """One case with its responses (comments masked), history, and contact details if allowed."""
    from cxloop.tasks.cases.contacts import may_see, shown
    from cxloop.tasks.cases.detail import case_detail
    from cxloop.tasks.masking import mask_pii

    settings, engine = load(config)
    with Session(engine) as s:
        detail = case_detail(s, case_id)
        if detail is None:
            raise CxError(f"no case {case_id} (see `cxloop cases list`)")
        case = detail.case
        tz = settings.tz
        record = case.model_dump(mode="json")
        record.update({k: _local(v, tz) for k, v in case.model_dump().items() if isinstance(v, datetime)})
        data = {"case": record,
                "contact": shown(detail.contact, may_see(viewer, case.department)),
                "responses": [{"response_id": r.response_id, "submitted_at": _local(r.submitted_at, tz),
                               "nps": r.nps, "csat": r.csat, "comment": mask_pii(r.comment)}
                              for r in detail.responses],
                "events": [{"at": _local(e.at, tz), "by": e.by, "from": e.from_status, "to": e.to_status,
                            "note": mask_pii(e.note)} for e in detail.events]}
    if fmt == Format.json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        emit([_row(case, settings.tz)], fmt, LIST_COLUMNS, title=f"case {case_id}")


def _move(config: Path | None, case_id: int, to: str, note: str, by: str | None,
          root_cause: str | None = None) -> None:
    from cxloop.db import session_scope
    from cxloop.tasks.cases.lifecycle import CaseTransitionError, transition

    _, engine = load(config)
    try:
        with session_scope(engine) as s:
            transition(s, _case(s, case_id), to, by=_who(by), note=note, root_cause=root_cause)
    except CaseTransitionError as exc:
        raise CxError(str(exc)) from None
    typer.echo(f"case {case_id}: {to}")


@cases_app.command("contact")
def contact_command(case_id: IdArg, note: NoteOpt = "", by: ByOpt = None, config: ConfigOpt = None) -> None:
    """The customer was reached (stops the first-contact clock)."""
    _move(config, case_id, "contacted", note, by)


@cases_app.command("resolve")
def resolve_command(case_id: IdArg, note: NoteOpt = "", by: ByOpt = None, config: ConfigOpt = None,
                    root_cause: Annotated[str | None, typer.Option(
                        "--root-cause", help="A comment topic id (default: the comment's first).")] = None
                    ) -> None:
    """Close a contacted case as resolved (a note is required)."""
    _move(config, case_id, "resolved", note, by, root_cause)


@cases_app.command("unreachable")
def unreachable_command(case_id: IdArg, note: NoteOpt = "", by: ByOpt = None,
                        config: ConfigOpt = None) -> None:
    """Close a case: the customer could not be reached (a note is required)."""
    _move(config, case_id, "unreachable", note, by)


@cases_app.command("decline")
def decline_command(case_id: IdArg, note: NoteOpt = "", by: ByOpt = None, config: ConfigOpt = None) -> None:
    """Close a case: the customer declined to talk (a note is required)."""
    _move(config, case_id, "declined", note, by)


@cases_app.command("note")
def note_command(case_id: IdArg, note: NoteOpt = "", by: ByOpt = None, config: ConfigOpt = None) -> None:
    """Add a note to a case's history."""
    from cxloop.db import session_scope
    from cxloop.tasks.cases.lifecycle import CaseTransitionError, add_note

    _, engine = load(config)
    try:
        with session_scope(engine) as s:
            add_note(s, _case(s, case_id), by=_who(by), note=note)
    except CaseTransitionError as exc:
        raise CxError(str(exc)) from None
    typer.echo(f"case {case_id}: note added")


@customers_app.command("export")
def export_command(customer: CustomerOpt, config: ConfigOpt = None) -> None:
    """Everything held about one customer, as JSON (an access request)."""
    from cxloop.tasks.cases.customers import export_customer

    _, engine = load(config)
    typer.echo(json.dumps(export_customer(engine, customer), ensure_ascii=False, indent=2, default=str))


@customers_app.command("forget")
def forget_command(customer: CustomerOpt, config: ConfigOpt = None) -> None:
    """Remove every trace of one customer; aggregates stay intact (a deletion request)."""
    from cxloop.tasks.cases.customers import forget_customer
    from cxloop.tasks.columnar import Copies

    settings, engine = load(config)
    counts = forget_customer(engine, customer, Copies(settings.resolve(settings.engine.columnar_dir)))
    typer.echo(", ".join(f"{k}: {v}" for k, v in counts.items()))


def register(app: typer.Typer) -> None:
    app.add_typer(followup_app, name="followup")
    app.add_typer(cases_app, name="cases")
    app.add_typer(customers_app, name="customers")
