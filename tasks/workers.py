"""Worker processes from the standard library's fork server, which has the project's modules loaded.

Collect's parse worker (`tasks.collect.chunked`) and the comment analysis of many distinct comments
(`tasks.comments`) run in other processes: both are pure Python CPU work that threads cannot
share. A plain `fork` is unsafe (the parent has threads: Prefect's, SQLite's checkpoints), and
`spawn` costs every import again; the fork server imports pandas and the project once
(`set_forkserver_preload`). `start_server()` starts it early (the flow's warm-up may), so that its
imports (1-2 s) overlap other work; the first worker starts it otherwise.

Everything here is the standard library's public `multiprocessing` (issue 20: cxloop no longer
re-implements its private `Popen._launch`). So a worker imports the parent's `__main__` as
`__mp_main__`, as every multiprocessing child does: a console script's is two lines, and a script
that starts workers guards its own work with `if __name__ == "__main__"` (bench/ scripts do).
Work that outgrows one machine goes to a Dask cluster instead (`tasks.dask_work`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from multiprocessing import forkserver
from typing import Any

_PRELOAD = ["cxloop.tasks.collect", "cxloop.tasks.comments"]


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _forkserver() -> Any:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def start_server() -> None:
    """Start the fork server (it imports pandas, `tasks.collect` and `tasks.comments`) now
    rather than at the first worker; harmless to call again. The flow's warm-up may call it.

    The server is a new interpreter: up to Python 3.12 it does not take this process's
    `sys.path`, and a preload it cannot import is skipped without a word, leaving every worker to
    import pandas and the project itself (~1 s before its first chunk). So it is started with this
    process's `sys.path` on its `PYTHONPATH` (a checkout that is not installed may be found only
    through an entry a script added)."""
    _forkserver()
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (*sys.path, before) if p)
    try:
        forkserver.ensure_running()
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def context() -> Any:
    """The fork server's context (for a `Process`, a queue, or a `ProcessPoolExecutor`'s
    `mp_context`), with the server started."""
    start_server()
    return _forkserver()
