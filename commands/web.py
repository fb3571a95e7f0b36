"""`cxloop web`: serve the web workspace (department heads' pages and actions) with uvicorn.

Exit codes: 0 stopped normally, 1 error (e.g. the port is taken), 2 bad config.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cxloop.commands.common import ConfigOpt, CxError, load


def web_command(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; keep 127.0.0.1 behind a "
                                                     "reverse proxy that terminates TLS.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    """Serve the web workspace: dashboards, departments, actions (README "Web workspace")."""
    import uvicorn

    from cxloop.web.app import create_app

    settings, engine = load(config)
    app = create_app(settings, engine)
    typer.echo(f"cxloop web: serving on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           proxy_headers=True, forwarded_allow_ips="127.0.0.1"))
    try:
        server.run()
    except OSError as exc:
        raise CxError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if not server.started:
        raise CxError(f"cannot listen on {host}:{port} (is another server using the port?)")


def register(app: typer.Typer) -> None:
    app.command("web")(web_command)
