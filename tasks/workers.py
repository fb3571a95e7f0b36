"""Worker processes forked from a fork server that has the project's modules loaded.

Collect's parse worker (`tasks.collect.chunked`) and the comment analysis of many distinct comments
(`tasks.comments`) run in other processes: both are pure Python CPU work that threads cannot
share. A plain `fork` is unsafe (the parent has threads: Prefect's, SQLite's checkpoints), and
`spawn` costs every import again; a fork server imports pandas and the project once.
`start_server()` starts it early (the flow's warm-up may), so that its imports (1-2 s) overlap
other work; the first worker starts it otherwise.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import sys
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.context import ForkServerContext, ForkServerProcess, set_spawning_popen
from typing import Any

_PRELOAD = ["cxloop.tasks.collect", "cxloop.tasks.comments"]


def _forkserver() -> Any:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


class _Popen(popen_forkserver.Popen):
    """The standard library's, except that the worker does not import the parent's `__main__`
    again: it needs only the project's modules, and a console script or bench script would cost
    all its imports once more (or run again, if it lacks a `__main__` guard)."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_name", None)
        prep_data.pop("init_main_from_path", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        _parent_w = os.dup(w)  # the child's sentinel of this process
        self.finalizer = util.Finalize(self, util.close_fds,  # type: ignore[attr-defined]
                                       (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class Process(ForkServerProcess):
    """A worker process forked from the fork server."""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        # `_launch` above follows CPython 3.11-3.13; a later one (3.14 authenticates the fork
        # server) gets the standard library's own, which only costs the `__main__` imports.
        if sys.version_info < (3, 14):
            return _Popen(process_obj)
        return popen_forkserver.Popen(process_obj)


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


class _Context(ForkServerContext):
    Process = Process


def context() -> Any:
    """The fork server's context (for a queue, or a `ProcessPoolExecutor`'s `mp_context`), with
    the server started."""
    start_server()
    return _Context()
