"""Issue 21, item 3: a stopped or killed `cxloop run` leaves no debris.

The runs are real: `cxloop run` on a project made by `cxloop init`, in a subprocess, stopped with
SIGTERM or killed with SIGKILL once its cycle is `running` in the database. Prefect's temporary
server (a child process) must be gone afterwards, and `cxloop status` must tell what happened.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.exceptions import TerminationSignal
from sqlalchemy import Engine, create_engine, update
from sqlmodel import Session, select

from cxloop.flows.bookkeeping import period_lock, start_cycle
from cxloop.flows.process import stop_cleanly_on_sigterm
from cxloop.models import Cycle, CycleStage
from cxloop.tasks import claims
from tests.cli import cxloop
from tests.receivers import HangingReceiver

ROOT = Path(__file__).resolve().parent.parent
P = "2026-10"
WAIT = 240.0  # seconds a busy machine may need to get a cycle going (never reached when all is well)


def _project(tmp_path: Path, hold: HangingReceiver) -> Path:
    """A project from `cxloop init` whose every department is told through `hold`, which never
    answers: the run stays in its notify stage until the test has stopped it, however fast the
    machine (the stop does not race the end of the cycle)."""
    subprocess.run([sys.executable, "-m", "cxloop", "init", str(tmp_path / "proj")], check=True,
                   env=_env(tmp_path), capture_output=True)
    config = tmp_path / "proj" / "cxloop.toml"
    text = re.sub(r"^notify = \[\]", f'notify = ["{hold.url()}"]', config.read_text(encoding="utf-8"),
                  flags=re.MULTILINE)
    config.write_text(text.replace("all_clear = false", "all_clear = true"), encoding="utf-8")
    return config


def _env(tmp_path: Path, db_url: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(GX_ANALYTICS_ENABLED="false", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_LOGGING_LEVEL="WARNING")
    if db_url:
        env["CXLOOP_DATABASE_URL"] = db_url
    return env


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[-1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return True
        time.sleep(0.2)
    return False


def _cycle(engine: Engine) -> Cycle | None:
    with Session(engine) as s:
        return s.exec(select(Cycle).where(Cycle.period == P)).first()


def _start_run(tmp_path: Path, db_url: str, config: Path,
               hold: HangingReceiver) -> tuple[subprocess.Popen[str], Engine, list[int]]:
    """`cxloop run` in a subprocess, once its cycle is `running` and it waits on a notice to
    `hold`; with its child processes."""
    args = [sys.executable, "-m", "cxloop", "run", "--period", P, "--config", str(config)]
    run = subprocess.Popen(args, env=_env(tmp_path, db_url), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    engine = create_engine(db_url)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and run.poll() is None:
        try:
            cycle = _cycle(engine)
        except Exception:  # not migrated yet
            cycle = None
        if cycle is not None and cycle.status == "running" and hold.arrived.is_set():
            return run, engine, _children(run.pid)
        time.sleep(0.2)
    run.kill()
    pytest.fail(f"the run did not start its cycle: {run.communicate()[1][-2000:]}")


def _server(children: list[int]) -> int:
    [server] = [pid for pid in children if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return server


def test_sigterm_stops_the_run_cleanly(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with HangingReceiver() as hold:
        config = _project(tmp_path, hold)
        run, engine, children = _start_run(tmp_path, db_url, config, hold)
        server = _server(children)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=WAIT)
    assert run.returncode == 143, err
    assert "Traceback" not in err
    assert f"error cycle {P} interrupted by SIGTERM; `cxloop run --period {P}` resumes it" in err
    assert _gone(server, within=10), "Prefect's temporary server outlived the run"
    cycle = _cycle(engine)
    assert cycle is not None and cycle.status == "interrupted"
    assert (cycle.error or "").startswith("stopped by SIGTERM") and cycle.finished_at is not None
    with Session(engine) as s:
        stages = s.exec(select(CycleStage).where(CycleStage.period == P)).all()
    assert all(st.status != "running" for st in stages)
    engine.dispose()
    monkeypatch.setenv("CXLOOP_DATABASE_URL", db_url)
    code, out, _ = cxloop(capsys, monkeypatch, config, "status", "--period", P, "--format", "json")
    assert code == 0 and '"status": "interrupted"' in out and "stopped by SIGTERM" in out


def test_kill_9_leaves_no_server_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with HangingReceiver() as hold:
        config = _project(tmp_path, hold)
        db_url = f"sqlite:///{tmp_path / 'proj' / 'cxloop.db'}"
        run, engine, children = _start_run(tmp_path, db_url, config, hold)
        server = _server(children)
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=WAIT)
    assert _gone(server, within=15), "Prefect's temporary server outlived a killed run"
    cycle = _cycle(engine)
    assert cycle is not None and cycle.status == "running" and claims.is_gone(cycle.runner)
    engine.dispose()
    monkeypatch.setenv("CXLOOP_DATABASE_URL", db_url)
    code, out, _ = cxloop(capsys, monkeypatch, config, "status", "--period", P, "--format", "json")
    assert code == 0 and '"status": "interrupted"' in out
    assert f"pid {run.pid} on" in out and "ended without finishing" in out


def _stale(engine: Engine, runner: str) -> None:
    start_cycle(engine, P, "cron")
    with Session(engine) as s:
        s.execute(update(Cycle).where(Cycle.period == P).values(runner=runner))  # type: ignore[arg-type]
        s.commit()


@pytest.mark.parametrize("runner", ["dead-local", "other-machine", "before-upgrade"])
def test_status_and_the_next_run_see_a_dead_run(runner: str, engine: Engine, db_url: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A cycle left `running` by a run that was killed (set up directly): `status` shows it
    interrupted while no run holds the period, running while one does; a new run takes it over."""
    if runner == "dead-local":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        token = str(claims.Holder(claims.this_process().host, child.pid, claims.start_ticks(child.pid)))
        child.kill()
        child.wait()
    else:
        token = {"other-machine": "cx-node-7:4242:1234", "before-upgrade": ""}[runner]
    _stale(engine, token)
    config = tmp_path / "cxloop.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    code, out, _ = cxloop(capsys, monkeypatch, config, "status", "--format", "json")
    assert code == 0 and '"status": "interrupted"' in out and "ended without finishing" in out
    if runner == "other-machine":
        assert "pid 4242 on cx-node-7" in out
        with period_lock(engine, P):  # that machine's run is alive after all: it holds the period
            code, out, _ = cxloop(capsys, monkeypatch, config, "status", "--format", "json")
            assert '"status": "running"' in out
    with period_lock(engine, P):  # what the flow does: take the period, then the cycle
        cycle, note = start_cycle(engine, P, "admin")
    assert note is not None and "ended without finishing" in note
    assert cycle.status == "running" and cycle.runner == str(claims.this_process())


def test_a_signal_prefect_turns_into_another_error_still_counts_as_a_stop() -> None:
    """A SIGTERM that lands while Prefect sets up a task run comes out of Prefect as
    `ValueError: Task run is not set` (its crash handler fails); the run was stopped, not failed."""
    from prefect.exceptions import TerminationSignal

    from cxloop.flows.process import exit_code_for, interruption

    try:
        try:
            raise TerminationSignal(signal.SIGTERM)
        except TerminationSignal:
            raise ValueError("Task run is not set") from None
    except ValueError as exc:
        assert (interruption(exc), exit_code_for(exc)) == ("SIGTERM", 143)
    assert interruption(ValueError("a real failure")) is None
    assert (interruption(KeyboardInterrupt()), exit_code_for(KeyboardInterrupt())) == ("SIGINT", 130)


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        record = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1,
                                   "Encountered exception during execution", None, sys.exc_info())
    record.flow_run_name, record.flow_run_id = "cx-monthly-cycle", "1"  # as Prefect's run logger adds
    return record


def test_prefect_logs_a_stop_without_its_traceback() -> None:
    """The race the CI run met: SIGTERM while Prefect creates a task run reaches its flow engine as
    a ValueError with the signal in its context, logged with a traceback. While `cxloop run` runs,
    Prefect's console handler keeps the line and drops that traceback, and only that one."""
    def during_setup() -> ValueError:
        try:
            raise TerminationSignal(signal.SIGTERM)
        except TerminationSignal:
            try:
                raise ValueError("Task run is not set")
            except ValueError as exc:
                return exc

    with stop_cleanly_on_sigterm():
        [console] = [h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]
        stop, failure = _record(during_setup()), _record(KeyError("a real failure"))
        assert console.filter(stop) and console.filter(failure)
        assert "Traceback" not in console.format(stop)
        assert "Encountered exception during execution" in console.format(stop)
        assert "Traceback" in console.format(failure)
    late = _record(during_setup())
    console.filter(late)
    assert late.exc_info is not None, "the filter outlived the command"
