"""`cxloop`: the command line for CX admins. Parses arguments and calls tasks or flows; nothing more.

Exit codes: 0 ok, 1 error, 2 bad usage or config, 3 cycle held by the data-quality gate, 4 notices
that could not be delivered, 128 + N a cycle stopped by signal N (143 SIGTERM, 130 Ctrl-C)
(README "Commands").
"""

from __future__ import annotations

import sys

import typer
from typer._click import exceptions as click  # the click Typer carries since 0.29 (pyproject's floor)

from cxloop import __version__
from cxloop.commands import (
    actions,
    cases,
    collect,
    columnar,
    comments,
    cycle,
    effects,
    kpis,
    notify,
    quality,
    report,
    users,
    web,
)
from cxloop.commands.common import CxError
from cxloop.config import ConfigError
from cxloop.output import EXIT_ERROR, EXIT_USAGE, print_error
from cxloop.paths import MissingResource

app = typer.Typer(
    name="cxloop",
    help="Run the customer-experience improvement loop: collect -> validate -> KPIs -> actions -> "
    "notify -> re-measure -> report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)



def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"cxloop {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the cxloop version and exit."),
) -> None:
    """Run the customer-experience improvement loop."""


@app.command()
def version() -> None:
    """Print the cxloop version (the same as `cxloop --version`)."""
    typer.echo(f"cxloop {__version__}")


for module in (cycle, collect, quality, kpis, actions, notify, effects, report, comments, users, web, cases,
               columnar):
    module.register(app)


def main() -> None:
    """Entry point: user errors print one clear line and exit non-zero, never a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        code = typer.main.get_command(app).main(standalone_mode=False)
    except click.NoArgsIsHelpError as exc:  # `cxloop` alone: the help, as click shows it
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:  # click's own form takes four lines: usage, hint, blank, error
        where = exc.ctx.command_path if exc.ctx is not None else "cxloop"
        # Typer words a value its converter refused as pydantic does: "...: Value error, 'xml' is not..."
        why = exc.format_message().replace(": Value error, ", ": ")
        print_error("usage error", f"{where}: {why} (see `{where} --help`)")
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:  # a file option click could not open
        print_error("error", exc.format_message())
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C or end of input at a prompt (Ctrl-C elsewhere exits 130)
        print_error("error", "aborted")
        sys.exit(EXIT_ERROR)
    except ConfigError as exc:
        print_error("config error", str(exc))
        sys.exit(EXIT_USAGE)
    except (CxError, MissingResource) as exc:
        print_error("error", str(exc))
        sys.exit(EXIT_ERROR)
    except SQLAlchemyError as exc:
        print_error("database error", _database_message(exc))
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else 0)  # `typer.Exit(code)`'s code; a command returns None


def _database_message(exc: Exception) -> str:
    """The database's own first line (a read-only file, a refused login, a server gone), with any
    password in a URL it quotes masked: what the admin can act on, not SQLAlchemy's traceback."""
    from cxloop.tasks.readers import mask_url

    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    return mask_url(f"{type(cause).__name__}: {lines[0]}")


if __name__ == "__main__":
    main()
