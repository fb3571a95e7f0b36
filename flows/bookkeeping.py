"""Cycle bookkeeping: the cycle row, one record per stage, resume fingerprints and the period lock.

Resuming is decided here, from the database, not from Prefect's result cache: the cycle and stage
rows live next to the data they describe, so a re-run on another machine (PostgreSQL) resumes too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, func, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.models import Action, AuditEntry, Cycle, CycleStage, KpiResult, Outcome, utcnow
from cxloop.paths import EXPECTATIONS, TEMPLATES
from cxloop.tasks import claims


class CycleBusy(RuntimeError):
    """Another run holds this period."""


# Advisory locks are per database; the schema is part of the key so that projects (or test runs)
# sharing one database in different schemas do not block each other.
_PG_KEY = "hashtextextended('cxloop:' || current_schema() || ':' || :p, 0)"


@contextmanager
def period_lock(engine: Engine, period: str) -> Iterator[None]:
    """One run per period at a time: a PostgreSQL advisory lock (holds across machines) or, for
    SQLite, an OS file lock beside the database file. Both vanish with a crashed process."""
    busy = (f"cycle {period} is already running (started elsewhere); wait for it to finish, "
            "or check `cxloop status --period " + period + "`")
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        try:
            got = conn.execute(text(f"SELECT pg_try_advisory_lock({_PG_KEY})"), {"p": period}).scalar()
            if not got:
                raise CycleBusy(busy)
            try:
                yield
            finally:
                conn.execute(text(f"SELECT pg_advisory_unlock({_PG_KEY})"), {"p": period})
                conn.commit()
        finally:
            conn.close()
        return
    db_file = engine.url.database or "cxloop"
    lock_path = Path(f"{db_file}.{period}.lock") if db_file != ":memory:" else Path(f"/tmp/cx.{period}.lock")
    with _locked_file(lock_path, busy) as fh:
        fh.truncate(0)
        fh.write(f"{socket.gethostname()}:{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            with suppress(OSError):  # while still held: whoever comes next locks a new file
                lock_path.unlink()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _locked_file(path: Path, busy: str) -> TextIO:
    """`path` opened and locked, the file that is at `path` now. The holder removes the file
    before it lets go (a lock file per period would otherwise stay beside the database): a
    process that opened it just before then holds a lock on a removed file, so it checks that
    the path still names what it locked, and tries again on the new file if not."""
    while True:
        fh = open(path, "a+")  # noqa: SIM115 - returned open: the caller holds it for the run
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            held = os.fstat(fh.fileno())
        except BlockingIOError:
            fh.close()
            raise CycleBusy(busy) from None
        except BaseException:
            fh.close()
            raise
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fh
        fh.close()


def _hash_files(root: Path, pattern: str) -> str:
    h = hashlib.sha256()
    if root.is_dir():
        for p in sorted(root.rglob(pattern)):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()


def source_fingerprint(settings: Settings) -> str:
    """Identity of every source file (name, size, mtime) plus the config: the collect stage's input."""
    import glob

    h = hashlib.sha256(settings.model_dump_json().encode())
    for src in settings.sources:
        if src.kind == "sql":
            h.update(b"sql-always-changes")
            h.update(utcnow().isoformat().encode())
            continue
        for f in sorted(glob.glob(str(settings.resolve(src.path or "")), recursive=True)):
            st = os.stat(f)
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    if settings.outcomes is not None:  # collected in the same stage
        for f in sorted(glob.glob(str(settings.resolve(settings.outcomes.path)), recursive=True)):
            st = os.stat(f)
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


# Stages that write feedback rows: collect loads them, validate flags them, comments analyses them.
FEEDBACK_WRITERS = frozenset({"collect", "validate", "comments"})


class FeedbackStamp:
    """The feedback rows' stamp as last read in one cycle run (part of its `CycleContext`), while
    no stage that writes feedback rows has begun since: a stage's "after" fingerprint and the next
    stage's "before" one are asked back to back, and the stages after comments (KPIs to report)
    only read the rows, so one read serves them all (each read scans the period index: about
    0.15 s per million rows)."""

    def __init__(self) -> None:
        self._value: list[Any] | None = None

    def read(self, session: Session) -> list[Any]:
        if self._value is None:
            self._value = _feedback_stamp(session)
        return self._value

    def forget(self) -> None:
        self._value = None


def data_fingerprint(settings: Settings, engine: Engine, *parts: str,
                     stamp: FeedbackStamp | None = None) -> str:
    """The state a stage reads: config, suites, templates and the named parts of the data
    ("feedback", "kpis", "actions", "outcomes"). Stages are idempotent; this only spares work. `stamp`: the
    cycle run's memo of the feedback stamp (None: read it)."""
    h = hashlib.sha256(settings.model_dump_json().encode())
    h.update(_hash_files(EXPECTATIONS, "*.json").encode())
    h.update(_hash_files(TEMPLATES, "*").encode())
    model = settings.resolve(settings.comments.model_path)
    h.update(str(model.stat().st_mtime_ns if model.exists() else 0).encode())
    parts_read: list[Any] = []
    with Session(engine) as s:
        if "feedback" in parts:
            parts_read.append((stamp or FeedbackStamp()).read(s))
        if "kpis" in parts:
            parts_read.append(list(s.execute(sa_select(func.count(col(KpiResult.id)),
                                                       func.sum(KpiResult.value))).one()))
        if "actions" in parts:
            parts_read.append(list(s.execute(sa_select(func.count(col(Action.id)),
                                                       func.max(Action.updated_at))).one()))
        if "outcomes" in parts:  # a changed export replaces its rows (new ids); forget deletes some
            parts_read.append(list(s.execute(sa_select(func.count(col(Outcome.id)),
                                                       func.max(Outcome.id))).one()))
    h.update(json.dumps(parts_read, default=str).encode())
    return h.hexdigest()


def _feedback_stamp(s: Session) -> list[Any]:
    """What changes whenever feedback rows do, read without scanning every response (a scan costs
    about 0.5 s per million on SQLite and the flow asks several times a run): rows per period and
    quarantine flag (from the covering period index, 0.15 s per million); collect's loads and
    updates (import records: every load or update of rows writes one); quarantine entries (every
    change of a quarantine flag writes one); the comment analysis markers (model and topics)."""
    per_period = s.execute(text(
        "SELECT period, quarantined, count(*) FROM feedback GROUP BY period, quarantined"
        " ORDER BY period, quarantined")).all()
    imports = s.execute(text(
        "SELECT count(*), max(id), sum(loaded), sum(updated) FROM import_record"
        " WHERE loaded > 0 OR updated > 0")).one()
    quarantine = s.execute(text(
        "SELECT count(*), max(id), count(readmitted_at), max(readmitted_at) FROM quarantined_row")).one()
    markers = s.execute(text("SELECT period, fingerprint FROM comment_analysis ORDER BY period")).all()
    return [[list(r) for r in per_period], list(imports), list(quarantine), [list(r) for r in markers]]


def _stage_row(s: Session, period: str, stage: str) -> CycleStage | None:
    return s.exec(select(CycleStage).where(CycleStage.period == period, CycleStage.stage == stage)).first()


def period_busy(engine: Engine, period: str) -> bool:
    """Whether a live run holds the period now. The lock is taken only inside a run and vanishes
    with its process, so a cycle `running` in the database whose period is not held was left by a
    run that died (kill -9, a crash, a reboot), on this machine or another one."""
    try:
        with period_lock(engine, period):
            return False
    except CycleBusy:
        return True
    except OSError:  # the lock file cannot be created (a read-only directory): judge by the pid
        return True


def dead_run_note(cycle: Cycle) -> str:
    """What `cxloop status` says, and a new run records, about a run that ended without a word."""
    holder = claims.parse(cycle.runner)
    who = f"pid {holder.pid} on {holder.host}" if holder else "an earlier cxloop"
    return (f"the run started {cycle.started_at:%Y-%m-%d %H:%M} UTC by {who} ended without finishing "
            "(killed?); re-running resumes")


def is_dead_run(engine: Engine, cycle: Cycle) -> bool:
    """A `running` cycle that no process runs any more."""
    if cycle.status != "running":
        return False
    return claims.is_gone(cycle.runner) or not period_busy(engine, cycle.period)


def start_cycle(engine: Engine, period: str, started_by: str) -> tuple[Cycle, str | None]:
    """The cycle row, marked running by this process; and, when the last run of the period died
    while running (this run holds the lock, so it cannot be alive), a note saying so."""
    with Session(engine, expire_on_commit=False) as s:
        cycle = s.exec(select(Cycle).where(Cycle.period == period)).first()
        if cycle is None:
            cycle = Cycle(period=period, started_by=started_by)
        died = dead_run_note(cycle) if cycle.status == "running" and cycle.id is not None else None
        cycle.status, cycle.started_by, cycle.started_at = "running", started_by, utcnow()
        cycle.finished_at, cycle.error = None, None
        cycle.runner = str(claims.this_process())
        s.add(cycle)
        s.commit()
        s.refresh(cycle)
        return cycle, died


def mark_interrupted(engine: Engine, period: str, reason: str) -> None:
    """Record that this process's run of the period was stopped from outside: the cycle and the
    stage it was in become `interrupted` with the reason. Only a cycle this process runs is
    touched (a SIGTERM that arrives before the run took the period must not mark another's)."""
    me = str(claims.this_process())
    now = utcnow()
    with Session(engine) as s:
        cycle = s.exec(select(Cycle).where(Cycle.period == period)).first()
        if cycle is None or cycle.status != "running" or cycle.runner != me:
            return
        cycle.status, cycle.finished_at, cycle.error = "interrupted", now, reason
        s.add(cycle)
        for row in s.exec(select(CycleStage).where(CycleStage.period == period,
                                                    CycleStage.status == "running")):
            row.status, row.finished_at, row.error = "interrupted", now, reason
            s.add(row)
        s.commit()


def gate_basis(validated: dict[str, Any]) -> str:
    """What an acceptance of a held month is given for: validate's figures of that month (its
    stage record's counts). The same figures later, the same month for the gate."""
    keys = ("read", "rows", "quarantined", "failed", "failed_critical")
    return json.dumps({k: validated.get(k) for k in keys}, sort_keys=True)


def set_gate(engine: Engine, period: str, gate: str, basis: str, *, accepted_by: str | None = None,
             reason: str = "") -> tuple[str, str | None]:
    """Record the data-quality gate of the period's cycle -> (the gate in force, a note for the
    admin or None).

    `accepted_by`: a held gate overridden (`--accept-data-risk`): the cycle keeps who, when, why
    and `basis` (`gate_basis`), and the audit log gets an entry (verb `accept_data_risk`) that
    stays whatever later runs do. A run without the override keeps the acceptance while the gate
    sees the month as it was accepted (the same basis), whatever else changed (other months, the
    config); a month that changed and holds again loses it, and the note says so."""
    with Session(engine) as s:
        cycle = s.exec(select(Cycle).where(Cycle.period == period)).one()
        note = None
        if gate == "held" and accepted_by is not None:
            why = reason or "(no reason given)"
            cycle.gate, cycle.risk_accepted_by, cycle.risk_accepted_at = "accepted", accepted_by, utcnow()
            cycle.risk_reason, cycle.risk_basis = why, basis
            s.add(AuditEntry(actor=accepted_by, verb="accept_data_risk", target=f"cycle:{period}",
                             detail=why[:2000]))
        elif gate == "held" and cycle.gate == "accepted" and cycle.risk_basis == basis:
            pass  # the month the risk was accepted for
        else:
            if gate == "held" and cycle.gate == "accepted":
                note = (f"the month's data changed since {cycle.risk_accepted_by} accepted the risk; "
                        "the data-quality gate holds again (that acceptance stays in the audit log)")
            cycle.gate, cycle.risk_accepted_by, cycle.risk_accepted_at = gate, None, None
            cycle.risk_reason = cycle.risk_basis = None
        s.add(cycle)
        s.commit()
        return cycle.gate or gate, note


def acceptance(engine: Engine, period: str) -> str:
    """The period's gate as its report shows it - the gate, and who accepted a held one and why -
    as a digest to add to a stage's fingerprint (which is kept in a comma-separated list)."""
    with Session(engine) as s:
        c = s.exec(select(Cycle).where(Cycle.period == period)).first()
    shown = json.dumps([c.gate, c.risk_accepted_by, c.risk_reason] if c else None)
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


def update_cycle(engine: Engine, period: str, **fields: Any) -> None:
    with Session(engine) as s:
        cycle = s.exec(select(Cycle).where(Cycle.period == period)).one()
        for key, value in fields.items():
            setattr(cycle, key, value)
        s.add(cycle)
        s.commit()


def stage_done_with(engine: Engine, period: str, stage: str, fingerprint: str) -> CycleStage | None:
    """The finished stage record when its input is unchanged since it ran (so it can be skipped)."""
    with Session(engine) as s:
        row = _stage_row(s, period, stage)
    if row and row.status == "completed" and fingerprint in (row.input_hash or "").split(","):
        return row
    return None


def begin_stage(engine: Engine, period: str, stage: str, fingerprint: str,
                stamp: FeedbackStamp | None = None) -> None:
    if stage in FEEDBACK_WRITERS and stamp is not None:
        stamp.forget()  # the stage may change feedback rows
    with Session(engine) as s:
        row = _stage_row(s, period, stage)
        row = row or CycleStage(period=period, stage=stage)
        row.status, row.started_at, row.finished_at = "running", utcnow(), None
        row.input_hash, row.error, row.counts = fingerprint, None, {}
        s.add(row)
        s.commit()


def end_stage(engine: Engine, period: str, stage: str, *, status: str, counts: dict[str, Any] | None = None,
              error: str | None = None, output_fingerprint: str | None = None) -> None:
    """Close a stage. The output fingerprint is remembered too: a stage that changed what it reads
    (validate flags rows) must not look changed to itself on the next run."""
    with Session(engine) as s:
        row = _stage_row(s, period, stage) or CycleStage(period=period, stage=stage)
        row.status, row.finished_at, row.error = status, utcnow(), error
        row.counts = counts or {}
        if output_fingerprint and output_fingerprint not in (row.input_hash or ""):
            row.input_hash = f"{row.input_hash},{output_fingerprint}"
        s.add(row)
        s.commit()


def skip_stage(engine: Engine, period: str, stage: str, reason: str, *, keep_done: bool = False) -> None:
    """Record the stage as skipped for `reason`; `keep_done`: a completed record stays as it is
    (a stage that did its work in an earlier run keeps saying what it did)."""
    with Session(engine) as s:
        row = _stage_row(s, period, stage)
        if keep_done and row is not None and row.status == "completed":
            return
        row = row or CycleStage(period=period, stage=stage)
        row.status, row.started_at, row.finished_at = "skipped", utcnow(), utcnow()
        row.counts, row.error, row.input_hash = {"reason": reason}, None, None
        s.add(row)
        s.commit()
