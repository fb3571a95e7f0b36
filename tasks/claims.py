"""Who holds a claim (an outbox message being sent, a cycle being run) and whether it is gone.

Why: a process killed with `kill -9` cannot release what it holds. A lease (a time after which the
claim lapses) recovers everything in the end, but it makes the next run wait; when the holder ran
on this machine we can tell at once that it is dead and take over without waiting. A holder on
another machine is never judged from here: only its lease (or the database lock) decides.

A token is `host:pid:start`, where `start` is the process's start time in clock ticks since boot
(Linux `/proc/<pid>/stat`, empty elsewhere), so a pid reused by a new process does not pass for the
dead holder.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    start: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"


def start_ticks(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat (after the parenthesised command name); "" when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def this_process() -> Holder:
    """The token this process writes on what it claims."""
    pid = os.getpid()
    return Holder(socket.gethostname(), pid, start_ticks(pid))


def parse(token: str | None) -> Holder | None:
    """A stored token back as a Holder; None for an empty or foreign value."""
    if not token:
        return None
    host, _, rest = token.rpartition(":")
    host, _, pid = host.rpartition(":")
    if not host or not pid.isdigit():
        return None
    return Holder(host, int(pid), rest)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def is_gone(token: str | None) -> bool:
    """True only when the holder ran on this machine and that process no longer exists."""
    holder = parse(token)
    if holder is None or holder.host != socket.gethostname():
        return False
    if not _alive(holder.pid):
        return True
    return bool(holder.start) and start_ticks(holder.pid) not in ("", holder.start)
