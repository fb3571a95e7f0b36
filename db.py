"""Engine and schema set-up. The same code serves SQLite (default) and PostgreSQL."""

from __future__ import annotations

import atexit
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


_sqlite_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _close_sqlite_engines() -> None:
    """Close pooled SQLite connections as the process ends: the last connection to a database
    folds the write-ahead log into the file and removes it, so no -wal file is left behind."""
    for engine in list(_sqlite_engines):
        engine.dispose()


def make_engine(url: str) -> Engine:
    """An engine with the pragmas SQLite needs to behave like a server database."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_engines.add(engine)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "checkout")
        def _checkpointing(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            # Commits copy the log into the database themselves (SQLite's default of 1000 pages),
            # except inside `background_checkpoints`, which does it on a thread of its own.
            deferred = engine in _kicks
            dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={0 if deferred else 1000}")

        return engine
    return create_engine(url, pool_pre_ping=True)


@contextmanager
def fresh_pg_schema(url: str) -> Iterator[str]:
    """A new, empty schema on a PostgreSQL server, dropped afterwards: yields the URL that works
    in it (tests and benchmarks run side by side in one database this way)."""
    import uuid

    from sqlalchemy import text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in url else "?"
        try:
            yield f"{url}{sep}options=-csearch_path%3D{schema}"
        finally:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()


def alembic_config(engine: Engine | None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe to call on every start."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def open_db(url: str) -> Engine:
    engine = make_engine(url)
    init_db(engine)
    return engine


# The checkpoint kick of each engine inside `background_checkpoints`: state of the engine object
# itself (weakly held: an id can be reused by a later engine once this one is gone).
_kicks: weakref.WeakKeyDictionary[Engine, Callable[[], None]] = weakref.WeakKeyDictionary()


def checkpoint_soon(engine: Engine) -> None:
    """Inside `background_checkpoints`: start copying what was committed into the database file."""
    kick = _kicks.get(engine)
    if kick is not None:
        kick()


@contextmanager
def background_checkpoints(engine: Engine) -> Iterator[None]:
    """SQLite: copy the write-ahead log back into the database on a thread of its own.

    By default the connection that commits a big write also copies it into the database file
    (about 1 s per million new rows), while the next stage waits. Inside this block commits leave
    that to `checkpoint_soon`, called after each stage: a checkpoint on its own connection and
    thread, which runs beside the next stage's Python work (SQLite releases the GIL). On leaving,
    it waits for that thread and checkpoints the rest. Other databases: nothing changes."""
    path = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return

    def checkpoint() -> None:
        conn = sqlite3.connect(path, timeout=30)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    running: list[threading.Thread] = []

    def kick() -> None:
        if running and running[0].is_alive():
            return  # the running one takes what was committed when it started; the next kick the rest
        running[:] = [threading.Thread(target=checkpoint, name="cxloop-checkpoint", daemon=True)]
        running[0].start()

    _kicks[engine] = kick  # from now on, connections handed out do not checkpoint (see make_engine)
    try:
        yield
    finally:
        _kicks.pop(engine, None)
        if running:
            running[0].join()
        checkpoint()
