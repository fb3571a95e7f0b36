"""The `cxloop run` process: a clean stop on SIGTERM, and no temporary Prefect server left behind.

Without `PREFECT_API_URL` Prefect starts a temporary API server as a child process (uvicorn,
~200 MB) and stops it from an `atexit` hook. A SIGTERM kills Python without running that hook
(unless a flow is running: Prefect's engine turns SIGTERM into `TerminationSignal` there), and a
SIGKILL never runs anything; either way the server was orphaned and the servers piled up.
So cxloop starts that server itself, turns SIGTERM into the exception Prefect uses for it
everywhere in the command (Python then exits normally and Prefect's hook stops the server), and
leaves a tiny watchdog process that stops the server when cxloop is gone however it ended
(kill -9 included).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from prefect.exceptions import TerminationSignal

from cxloop.tasks.claims import start_ticks

# The watchdog: waits until its parent (the cxloop process) is gone, then stops the server if it is
# still the process it was given (same start time: a reused pid is left alone). Only the standard
# library: it costs a few MB, not a Python with Prefect loaded.
_WATCHDOG = r"""
import os, signal, sys, time
parent, server, ticks = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def start(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return ""
while os.getppid() == parent:
    time.sleep(0.5)
if start(server) == ticks:
    os.kill(server, signal.SIGTERM)
    for _ in range(50):
        time.sleep(0.1)
        if start(server) != ticks:
            break
    else:
        os.kill(server, signal.SIGKILL)
"""


def _signal_of(exc: BaseException) -> BaseException | None:
    """The TerminationSignal or KeyboardInterrupt behind `exc`, itself or in its chain: a signal
    that lands while Prefect sets up a task run makes Prefect's crash handling raise a ValueError
    ("Task run is not set") in its place, with the signal as its context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TerminationSignal | KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def interruption(exc: BaseException) -> str | None:
    """Why a run stopped from outside ("SIGTERM", "SIGINT"), None for an ordinary exception."""
    found = _signal_of(exc)
    if isinstance(found, TerminationSignal):
        return signal.Signals(found.signal).name
    return "SIGINT" if found is not None else None


def exit_code_for(exc: BaseException) -> int:
    """The shell's convention for a process stopped by signal N: 128 + N (143 SIGTERM, 130 SIGINT)."""
    found = _signal_of(exc)
    return 128 + (found.signal if isinstance(found, TerminationSignal) else signal.SIGINT)


def exit_now_if_held(code: int) -> None:
    """End a stopped command with `code` here and now if a worker thread would hold its exit.

    Apprise 2 sends on a pool thread even one message at a time, and Python joins such threads
    before it exits: a stop that lands while a server takes its time to answer would wait for the
    answer or the read timeout (which a URL can set to minutes). Nothing is lost by not waiting:
    the notice in flight stays in the outbox for the next run, the cycle is already marked
    interrupted, and the watchdog stops Prefect's temporary server once this process is gone.
    With no such thread this returns and the command exits normally (Prefect's own hook stops the
    server)."""
    held = [t for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not held:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _raise_termination(signum: int, _frame: FrameType | None) -> None:
    raise TerminationSignal(signum)


class _NoTracebackForAStop(logging.Filter):
    """Prefect logs a failed flow or task run with its traceback. A stop from outside is not a
    failure, and a signal that lands while Prefect sets up a task run reaches its flow engine as a
    ValueError with the signal in its context, which it logs as one: keep the line, drop the
    traceback (cxloop then says in one line that the cycle was interrupted and how to resume)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _signal_of(exc) is not None:
            record.exc_info, record.exc_text = None, None
        return True


def _prefect_handlers() -> list[logging.Handler]:
    names = [name for name in list(logging.Logger.manager.loggerDict)
             if name == "prefect" or name.startswith("prefect.")]
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in names]
    return [handler for logger in loggers for handler in logger.handlers]


@contextmanager
def stop_cleanly_on_sigterm() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise `TerminationSignal` in the main thread, so `finally` blocks run,
    the cycle is marked interrupted and the temporary server is stopped. Prefect installs the same
    conversion while a flow runs; this covers the rest of the command (start-up, between cycles).
    Prefect's log lines about the stop keep their text but lose their traceback."""
    previous = {sig: signal.signal(sig, _raise_termination) for sig in (signal.SIGTERM, signal.SIGHUP)}
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect's handlers exist from here on, so they can take the filter
    quiet, handlers = _NoTracebackForAStop(), _prefect_handlers()
    for log_handler in handlers:
        log_handler.addFilter(quiet)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for log_handler in handlers:
            log_handler.removeFilter(quiet)


def _watch(server_pid: int) -> subprocess.Popen[bytes] | None:
    """Start the watchdog for `server_pid` (Linux: needs /proc for the start-time check)."""
    ticks = start_ticks(server_pid)
    if not ticks:
        return None
    return subprocess.Popen([sys.executable, "-I", "-c", _WATCHDOG, str(os.getpid()), str(server_pid), ticks],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


_watched: set[int] = set()


@contextmanager
def temporary_server() -> Iterator[None]:
    """Prefect's temporary API server for this command, started now and watched.

    It is stopped by Prefect's own `atexit` hook, which runs after Prefect's log and event
    services have sent what they hold (stopping it earlier made them fail noisily); SIGTERM reaches
    that hook through `stop_cleanly_on_sigterm`, and a kill -9 reaches the watchdog. With
    `PREFECT_API_URL` set (a lasting server) nothing is started."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        server = SubprocessASGIServer()  # the instance Prefect's clients use when no API URL is set
        server.start()
        process = server.server_process
        if process is not None and process.pid not in _watched:
            _watched.add(process.pid)
            _watch(process.pid)
    yield
