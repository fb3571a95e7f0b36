"""`cxloop users add|list|disable|reset|link`: accounts of the web workspace.

Passwords are read from a prompt or $CXLOOP_PASSWORD (never an argument: it would stay in the
shell history and the process list) and stored only as an argon2 hash.
Exit codes: 0 ok, 1 error (unknown user, name taken, bad role or department, a link not sent).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cxloop.commands.common import ConfigOpt, CxError, FormatOpt, load
from cxloop.output import Format, emit

users_app = typer.Typer(help="Web workspace accounts: add, list, disable, reset, link.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="User name (the login, e.g. an e-mail address).",
                                        show_default=False)]
PasswordOpt = Annotated[bool, typer.Option(
    "--password/--no-password",
    help="Ask for a password (or read $CXLOOP_PASSWORD); without one the user signs in by the links "
         "in notices only.")]


def _password(wanted: bool) -> str | None:
    if not wanted:
        return None
    given = os.environ.get("CXLOOP_PASSWORD")
    if given is None:
        given = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(given) < 10:
        raise CxError("a password needs at least 10 characters")
    return given


def _actor() -> str:
    from cxloop.tasks.actions import default_actor

    return default_actor()


@users_app.command("add")
def add_command(
    name: NameArg,
    role: Annotated[str, typer.Option("--role", "-r", help="admin, head, member or viewer.")] = "head",
    department: Annotated[str | None, typer.Option("--department", "-d",
                                                   help="For a head or member.")] = None,
    display_name: Annotated[str, typer.Option("--display-name", help="Name shown on pages.")] = "",
    password: PasswordOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Add an account (admins: add --password)."""
    from cxloop.web.users import UserError, add_user

    settings, engine = load(config)
    try:
        user = add_user(settings, engine, name, role, department, _password(password), display_name,
                        _actor())
    except UserError as exc:
        raise CxError(str(exc)) from None
    typer.echo(f"user {user.name}: {user.role}" + (f" of {user.department}" if user.department else ""))


@users_app.command("list")
def list_command(config: ConfigOpt = None, fmt: FormatOpt = Format.table) -> None:
    """List accounts (never their password hashes)."""
    from cxloop.web.users import list_users

    _, engine = load(config)
    rows = [{"name": u.name, "display_name": u.display_name, "role": u.role, "department": u.department or "",
             "active": u.active, "password": bool(u.password_hash), "created_at": u.created_at}
            for u in list_users(engine)]
    emit(rows, fmt, ["name", "display_name", "role", "department", "active", "password", "created_at"],
         title="users")


@users_app.command("disable")
def disable_command(name: NameArg, config: ConfigOpt = None) -> None:
    """Disable an account: its sessions and links stop working at once."""
    from cxloop.web.users import UserError, disable_user

    _, engine = load(config)
    try:
        disable_user(engine, name, _actor())
    except UserError as exc:
        raise CxError(str(exc)) from None
    typer.echo(f"user {name}: disabled")


@users_app.command("reset")
def reset_command(name: NameArg, password: PasswordOpt = False, config: ConfigOpt = None) -> None:
    """Re-enable an account with a new password (or none), signing out every session it has."""
    from cxloop.web.users import UserError, reset_user

    _, engine = load(config)
    try:
        reset_user(engine, name, _password(password), _actor())
    except UserError as exc:
        raise CxError(str(exc)) from None
    typer.echo(f"user {name}: reset")


@users_app.command("link")
def link_command(
    name: NameArg,
    action: Annotated[int | None, typer.Option("--action", "-a", help="Open this action after signing in.",
                                               show_default=False)] = None,
    config: ConfigOpt = None,
) -> None:
    """E-mail a single-use sign-in link to any active account (through the outbox, `[web] link_mail`)."""
    from cxloop.tasks.notify import deliver_message
    from cxloop.web.users import UserError, queue_link

    settings, engine = load(config)
    try:
        msg = queue_link(settings, engine, name, action, _actor())
    except UserError as exc:
        raise CxError(str(exc)) from None
    summary = deliver_message(settings, engine, msg.id or 0)
    row = summary.messages[0]
    if row["status"] != "sent":
        raise CxError(f"user {name}: the link was not sent ({row['last_error'] or row['status']}); "
                      "`cxloop notify --retry` tries again")
    typer.echo(f"user {name}: sign-in link sent (outbox #{msg.id}, valid {settings.web.link_hours:g} hours)")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
