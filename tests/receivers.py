"""Real receivers on loopback for notification tests: an SMTP server and an HTTP webhook.

Both record what arrived, so a test can assert content, language, escaping and masking of a
message that really went through Apprise and a socket. Reusable by any test that sends notices:

    with SmtpReceiver(user="cx", password="pw") as smtp:
        url = smtp.url(to="head@example.com")   # mailto://cx:pw@127.0.0.1:PORT?...
    with HttpReceiver() as hook:
        url = hook.url("/hook")                 # json://127.0.0.1:PORT/hook

A receiver can be created on a fixed port without starting it (a server that is "down") and
started later on the same port.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def part(self, subtype: str) -> str:
        """The decoded text of the text/<subtype> part ("" when absent)."""
        for p in self.message.walk():
            if p.get_content_type() == f"text/{subtype}":
                return str(p.get_content())
        return ""

    @property
    def html(self) -> str:
        return self.part("html")

    @property
    def text(self) -> str:
        return self.part("plain")


class _MailHandler:
    def __init__(self, sink: list[ReceivedMail]) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.sink.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


@dataclass
class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 with plain-text AUTH (no TLS), like a company relay on a private net."""

    user: str | None = None
    password: str | None = None
    port: int = field(default_factory=free_port)
    messages: list[ReceivedMail] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._controller: Any = None

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (isinstance(data, LoginPassword) and data.login.decode() == self.user
              and data.password.decode() == self.password)
        return AuthResult(success=ok)

    def start(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {}
        if self.user:
            kwargs = {"authenticator": self._auth, "auth_require_tls": False, "auth_required": True}
        self._controller = Controller(_MailHandler(self.messages), hostname="127.0.0.1", port=self.port,
                                      **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def url(self, to: str = "head@example.com", sender: str = "cx@example.com") -> str:
        """An Apprise URL for this server: `mailto://` is plain SMTP (no STARTTLS), login if set."""
        cred = f"{self.user}:{self.password}@" if self.user else ""
        return f"mailto://{cred}127.0.0.1:{self.port}?from={sender}&to={to}"

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class HttpReceiver:
    """A webhook endpoint on 127.0.0.1 that records every POST; `status` is what it answers."""

    port: int = field(default_factory=free_port)
    status: int = 200
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str = "/hook", scheme: str = "json") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HangingReceiver:
    """A webhook endpoint on 127.0.0.1 that takes a request and never answers: a run sending to it
    (with a long read timeout, `?rto=`) is certainly in its notify stage, and stays there, until
    the test stops it. `arrived` is set by the first request."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            self._held.append(conn)
            self.arrived.set()

    def url(self, path: str = "/hook", read_timeout: float = 600.0) -> str:
        return f"json://127.0.0.1:{self._listener.getsockname()[1]}{path}?rto={read_timeout:g}"

    def __enter__(self) -> HangingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()
