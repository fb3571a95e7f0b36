"""`cxloop web`: serve the web workspace (department heads' pages and actions) with uvicorn.

Exit codes: 0 stopped normally, 1 error (e.g. the port is taken), 2 bad config.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cxloop.commands.common import ConfigOpt, CxError, load


def web_command(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; keep 127.0.0.1 behind a "
                                                     "reverse proxy that terminates TLS.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (one per core).", min=1,
                                         max=64)] = 1,
) -> None:
    """Serve the web workspace: dashboards, departments, actions (README "Web workspace")."""
    import os

    import uvicorn

    from cxloop.web.app import create_app
    from cxloop.web.auth import secret_key

    settings, engine = load(config)
    secret_key(settings)  # a key file is written once here, not raced by the workers
    typer.echo(f"cxloop web: serving on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    options: dict[str, Any] = dict(host=host, port=port, log_level="warning", proxy_headers=True,
                                   forwarded_allow_ips="127.0.0.1")
    if workers > 1:  # each worker process builds the app from the same config
        if config is not None:
            os.environ["CXLOOP_CONFIG"] = str(config.resolve())
        engine.dispose()
        uvicorn.run("cxloop.web.serve:app_from_env", factory=True, workers=workers, **options)
        return
    server = uvicorn.Server(uvicorn.Config(create_app(settings, engine), **options))
    try:
        server.run()
    except OSError as exc:
        raise CxError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except SystemExit as exc:  # uvicorn's own exit when it cannot bind
        if exc.code not in (0, None):
            raise CxError(f"cannot listen on {host}:{port} (is another server using the port?)") from None
        raise
    if not server.started:
        raise CxError(f"cannot listen on {host}:{port} (is another server using the port?)")


def register(app: typer.Typer) -> None:
    app.command("web")(web_command)
