"""The data-quality gate: every shipped expectation passes good data and fails crafted bad data,
quarantine keeps every rejected row with all its reasons, re-runs are idempotent, fixed rows come
back, user suites are applied, the gate holds on critical batch failures only, and the report shows it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select, update

from cxloop.config import Settings, settings_from_dict
from cxloop.db import session_scope
from cxloop.models import Feedback, ImportRecord, QualityCheck, QuarantinedRow
from cxloop.periods import period_bounds, shift_period
from cxloop.tasks import validate as v

PERIOD = "2026-10"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
MID = datetime(2026, 10, 15, 4, 0, tzinfo=UTC)


def make_settings(base: Path, **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "sources": [{"name": "web", "kind": "csv", "path": "web.csv"}],
        "vocabulary": {"journey_stage": ["purchase", "delivery"], "touchpoint": ["app", "counter"]},
    }
    data.update(extra)
    return settings_from_dict(data, base, env={})


def good_row(i: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": "web", "response_id": f"r{i}", "submitted_at": MID + timedelta(minutes=i),
        "channel": ["web", "app", "hotline"][i % 3], "journey_stage": "purchase", "touchpoint": "app",
        "nps": i % 11, "csat": 1 + i % 5, "ces": 1 + i % 7, "cx_success": 1 + i % 7,
        "cx_effort": 1 + (i + 1) % 7, "cx_emotion": 1 + (i + 2) % 7,
        "opened_at": MID, "first_response_at": MID + timedelta(hours=1),
        "resolved_at": MID + timedelta(days=1),
    }
    row.update(over)
    return row


def add_rows(engine: Engine, rows: list[dict[str, Any]], period: str = PERIOD) -> None:
    with session_scope(engine) as s:
        for r in rows:
            s.add(Feedback(period=period, content_hash="h", **r))


# Crafted bad rows: expectation id -> the row that must fail it (and nothing else of its kind).
BAD: dict[str, dict[str, Any]] = {
    "response_id_present": {"response_id": None},
    "submitted_at_present": {"submitted_at": None},
    "channel_present": {"channel": None},
    "channel_in_vocabulary": {"channel": "fax"},
    "journey_stage_in_vocabulary": {"journey_stage": "moon"},
    "touchpoint_in_vocabulary": {"touchpoint": "kiosk"},
    "submitted_in_period": {"submitted_at": datetime(2026, 9, 10, tzinfo=UTC)},
    "submitted_not_in_future": {"submitted_at": NOW + timedelta(days=3)},
    "first_response_at_not_before_opened": {"first_response_at": MID - timedelta(hours=2)},
    "resolved_at_not_before_opened": {"resolved_at": MID - timedelta(days=1)},
    "response_id_unique": {"response_id": "dup"},
}
for _col, (_lo, _hi) in {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7), "cx_success": (1, 7),
                         "cx_effort": (1, 7), "cx_emotion": (1, 7)}.items():
    BAD[f"{_col}_in_scale"] = {_col: _hi + 1}
    BAD[f"{_col}_integer"] = {_col: _lo + 0.5}


@pytest.fixture(scope="module")
def gx_loaded() -> None:
    """Import GX once for the module (about 5 s)."""
    v._gx()


def test_every_shipped_row_expectation_passes_good_and_fails_bad(tmp_path: Path, gx_loaded: None) -> None:
    # the future check needs "now" inside the period, so the future row can be inside the period
    now = datetime(2026, 10, 20, tzinfo=UTC)
    bad = dict(BAD, submitted_not_in_future={"submitted_at": now + timedelta(days=3)})
    settings = make_settings(tmp_path)
    exps = [e for s in v.load_suites(settings) if s.level == "row"
            for e in v.expectations_of(s, settings, v.placeholder_values(settings, PERIOD, now))]
    shipped = {e.name for e in exps}
    assert shipped == set(bad), "every shipped row expectation needs a crafted bad row here"

    rows = [good_row(i, submitted_at=MID - timedelta(days=1) + timedelta(minutes=i)) for i in range(30)]
    for n, (name, over) in enumerate(bad.items()):
        rows.append(good_row(100 + n, **{"response_id": f"bad-{name}", **over}))
    rows.append(good_row(200, response_id="dup"))  # the twin of the duplicate
    df = v.row_frame(pd.DataFrame(rows))
    checks, reasons = v.check_rows(exps, df)

    by_name = {c.expectation: c for c in checks}
    assert set(by_name) == shipped
    for name in shipped:
        failing = {k for k, rs in reasons.items() if any(r["expectation"] == name for r in rs)}
        expected_key = "web|dup" if name == "response_id_unique" else (
            next(k for k in df["row_key"] if k.startswith("web|#")) if name == "response_id_present"
            else f"web|bad-{name}")
        assert failing == {expected_key}, name
        assert not by_name[name].success and by_name[name].unexpected_count >= 1, name
    good_keys = {f"web|r{i}" for i in range(30)}
    assert not good_keys & set(reasons)

    # the good rows alone pass every shipped expectation
    checks, reasons = v.check_rows(exps, v.row_frame(pd.DataFrame(rows[:30])))
    assert reasons == {} and all(c.success for c in checks)


def test_a_row_failing_several_checks_keeps_every_reason(tmp_path: Path, gx_loaded: None) -> None:
    settings = make_settings(tmp_path)
    exps = [e for s in v.load_suites(settings) if s.level == "row"
            for e in v.expectations_of(s, settings, v.placeholder_values(settings, PERIOD, NOW))]
    df = v.row_frame(pd.DataFrame([good_row(1, nps=12, csat=0, channel="fax",
                                            resolved_at=MID - timedelta(days=2))]))
    _checks, reasons = v.check_rows(exps, df)
    got = reasons["web|r1"]
    assert {r["expectation"] for r in got} == {"nps_in_scale", "csat_in_scale", "channel_in_vocabulary",
                                               "resolved_at_not_before_opened"}
    by = {r["expectation"]: r for r in got}
    assert by["nps_in_scale"]["value"] == 12 and by["nps_in_scale"]["column"] == "nps"
    assert by["channel_in_vocabulary"]["value"] == "fax" and "fax" in by["channel_in_vocabulary"]["message"]
    assert "opened_at" in by["resolved_at_not_before_opened"]["message"]
    json.dumps(got)  # JSON-safe


def test_row_keys_as_numbers_give_the_same_checks_and_reasons(tmp_path: Path, gx_loaded: None) -> None:
    """The shipped suites only compare row keys, so the gate hands GX a number per key and makes the
    text of failing rows' keys only: checks and reasons are those of the keys as text, with twins,
    rows without a response id or a source, and sources whose "|" makes (source, id) pairs ambiguous."""
    settings = make_settings(tmp_path)
    exps = [e for s in v.load_suites(settings) if s.level == "row"
            for e in v.expectations_of(s, settings, v.placeholder_values(settings, PERIOD, NOW))]
    assert v.keys_by_equality(exps)
    rows = [good_row(i) for i in range(30)]
    rows += [good_row(100 + n, **{"response_id": f"bad-{name}", **over})
             for n, (name, over) in enumerate(BAD.items())]
    rows += [good_row(200, response_id="dup"), good_row(201, response_id=None), good_row(202, source=None),
             good_row(203, source=None, nps=12), good_row(204, response_id="#30")]  # the key of row 30
    for extra in ([], [good_row(300, source="web|x", response_id="y"), good_row(301, response_id="x|y"),
                       good_row(302, source="web|x", response_id="z", csat=0)]):
        frame = pd.DataFrame(rows + extra, index=range(len(rows) + len(extra)))
        text = v.row_frame(frame)
        numbers, keys = v.keyed_row_frame(frame, numbers=True)
        assert numbers["row_key"].dtype == "float64" and numbers["row_key"].isna().sum() == 2
        assert keys.text(range(len(frame))).tolist() == text["row_key"].astype(object).tolist()
        checks, reasons = v.check_rows(exps, numbers, keys)
        assert (checks, reasons) == v.check_rows(exps, text)
        unique = next(c for c in checks if c.expectation == "response_id_unique")
        twins = ["web|#30", "web|dup"] + (["web|x|y"] if extra else [])  # "web|x" + "y", "web" + "x|y"
        assert unique.unexpected_count == 2 * len(twins) and {s["key"] for s in unique.sample} == set(twins)
        assert all(r["expectation"] == "nps_in_scale" for r in reasons["nan"])  # no source: no key
        wanted = {"web|#30", "web|r3", "web|x|y", "web|nothing", "nan"}
        assert (keys.among(wanted) == text["row_key"].isin(wanted).to_numpy()).all()


def test_stored_rows_skip_the_search_for_repeated_keys() -> None:
    """Rows of the database have distinct (source, response_id) keys: numbering them by position
    gives what the search for repeated keys gives."""
    frame = pd.DataFrame([good_row(i) for i in range(20)] + [good_row(20, source=None)])
    searched, keys = v.keyed_row_frame(frame, numbers=True)
    stored, _ = v.keyed_row_frame(frame, numbers=True, stored=True)
    assert stored["row_key"].equals(searched["row_key"]) and stored["row_key"].isna().sum() == 1
    assert keys.numbers(distinct=True).tolist()[:20] == list(range(20))


def test_empty_vocabulary_means_no_check(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, vocabulary={"channel": [], "journey_stage": [], "touchpoint": []})
    params = v.placeholder_values(settings, PERIOD, NOW)
    names = {e.name for s in v.load_suites(settings) for e in v.expectations_of(s, settings, params)}
    assert not {"channel_in_vocabulary", "journey_stage_in_vocabulary", "touchpoint_in_vocabulary"} & names
    assert "channel_present" in names


def test_every_shipped_batch_expectation_passes_good_and_fails_bad(tmp_path: Path, gx_loaded: None) -> None:
    settings = make_settings(tmp_path)
    exps = [e for s in v.load_suites(settings) if s.level == "batch"
            for e in v.expectations_of(s, settings, v.placeholder_values(settings, PERIOD, NOW))]
    good = {
        "batch": pd.DataFrame([{"subject": "all", "rows": 100, "quarantined": 2, "quarantine_share": 0.02}]),
        "sources": pd.DataFrame([{"subject": "web", "rows": 100, "volume_ratio": 1.1, "delivered": True}]),
        "channels": pd.DataFrame([{"subject": "web", "rows": 50, "present": True}]),
        "score_columns": pd.DataFrame([{"subject": "nps", "null_rate": 0.1, "null_rate_jump": 0.05}]),
    }
    bad = {
        "batch": pd.DataFrame([{"subject": "all", "rows": 0, "quarantined": 9, "quarantine_share": 0.09}]),
        "sources": pd.DataFrame([{"subject": "web", "rows": 3, "volume_ratio": 0.03, "delivered": True},
                                 {"subject": "app", "rows": 0, "volume_ratio": float("nan"),
                                  "delivered": False}]),
        "channels": pd.DataFrame([{"subject": "web", "rows": 50, "present": True},
                                  {"subject": "hotline", "rows": 0, "present": False}]),
        "score_columns": pd.DataFrame([{"subject": "nps", "null_rate": 0.9, "null_rate_jump": 0.8}]),
    }
    assert all(c.success for c in v.check_batch(exps, good))
    failed = {c.expectation: c for c in v.check_batch(exps, bad) if not c.success}
    assert set(failed) == {e.name for e in exps}
    assert failed["source_delivered"].sample[0]["key"] == "app"
    assert failed["source_volume_in_band"].sample[0]["key"] == "web"
    assert failed["channel_not_missing"].sample[0]["key"] == "hotline"
    assert failed["quarantine_share_below_max"].gating and not failed["channel_not_missing"].gating


def _count(engine: Engine, model: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def test_reread_and_other_months_files_count_once(engine: Engine, tmp_path: Path, gx_loaded: None) -> None:
    """Every collect writes a record for each file it reads: an unchanged file's re-read (each row
    then a duplicate) and a file holding only other months' rows included. The period's counts -
    validate's and the report's data-quality box - are those of its files as they are now
    (`current_imports`): the same after any number of re-runs; a corrected file's newest content
    counts, and a file whose newest import failed shows its error."""
    from sqlmodel import Session

    from cxloop.tasks.report.quality import _quality

    settings = make_settings(tmp_path)
    add_rows(engine, [good_row(i) for i in range(10)])

    def imported(file: str, content: str, read: int, **counts: Any) -> None:
        with session_scope(engine) as s:
            s.add(ImportRecord(source="web", file=file, content_hash=content, period=PERIOD, rows_read=read,
                               **counts))

    def figures() -> tuple[int, int, int, int, int]:
        gate = v.validate_period(settings, engine, PERIOD, now=NOW, lang="en")
        with Session(engine) as s:
            box = _quality(s, PERIOD, None, None)
        assert box.rows_read == gate.read  # (validate's duplicates: the month's repeats, next test)
        return gate.read, box.duplicates, box.files, box.loaded, box.updated

    imported("web.csv", "a", 12, loaded=10, duplicates=1, rejected=1)
    imported("web_09.csv", "p", 40, out_of_period=40)
    assert figures() == (12, 1, 1, 10, 0)
    for _ in range(2):  # two re-runs: both files read again, unchanged
        imported("web.csv", "a", 12, duplicates=11, rejected=1)
        imported("web_09.csv", "p", 40, out_of_period=40)
    assert figures() == (12, 1, 1, 10, 0)
    imported("web.csv", "b", 13, loaded=1, updated=2, duplicates=8, rejected=2)  # corrected, then re-read
    imported("web.csv", "b", 13, duplicates=11, rejected=2)
    assert figures() == (13, 8, 1, 1, 2)
    imported("web_11.csv", "", 0, error="not a CSV")
    assert figures()[:3] == (13, 8, 2)
    with Session(engine) as s:
        assert _quality(s, PERIOD, None, None).import_errors == ["web_11.csv: not a CSV"]


def test_quarantine_keeps_rows_counts_add_up_and_rerun_is_idempotent(
        engine: Engine, tmp_path: Path, gx_loaded: None) -> None:
    settings = make_settings(tmp_path, quality={"max_quarantine_share": 0.5})
    rows = [good_row(i) for i in range(20)]
    rows += [good_row(50, nps=11, channel="fax"), good_row(51, submitted_at=NOW + timedelta(days=1)),
             good_row(52, first_response_at=MID - timedelta(hours=1)),
             good_row(53, channel="<script>alert(1)</script>")]
    add_rows(engine, rows)
    with session_scope(engine) as s:
        s.add(ImportRecord(source="web", file="web.csv", content_hash="x", period=PERIOD, rows_read=27,
                           loaded=24, duplicates=2, rejected=1))
        s.add(QuarantinedRow(period=PERIOD, source="web", row_key="web.csv:7", file="web.csv", line=7,
                             stage="collect", raw={"nps": "ten"}, reasons=[{"expectation": "parse"}]))

    gate = v.validate_period(settings, engine, PERIOD, now=NOW, lang="en")
    c = gate.counts()
    assert (c["rows"], c["loaded"], c["quarantined_validate"], c["quarantined_collect"]) == (24, 20, 4, 1)
    assert gate.read == 27 == (gate.rows - gate.quarantined) + (gate.quarantined + gate.collect_quarantined) \
        + gate.duplicates
    assert c["read"] == 27 and (c["loaded"], c["quarantined"], c["duplicates"]) == (20, 5, 2)
    assert gate.quarantine_share == pytest.approx(5 / 25)
    assert gate.status == "passed", gate.failed_critical

    with session_scope(engine) as s:
        qrows = {q.row_key: q for q in s.execute(select(QuarantinedRow).where(
            v.QR.stage == "validate")).scalars()}
        flagged = set(s.execute(select(v.FB.response_id).where(v.FB.quarantined)).scalars())
    assert set(qrows) == {"r50", "r51", "r52", "r53"} == flagged
    assert {r["expectation"] for r in qrows["r50"].reasons} == {"nps_in_scale", "channel_in_vocabulary"}
    assert qrows["r50"].raw["nps"] == 11 and qrows["r50"].raw["channel"] == "fax"
    assert qrows["r50"].response_id == "r50" and qrows["r50"].readmitted_at is None
    n_checks = _count(engine, QualityCheck, v.QC.period == PERIOD)
    assert n_checks == len(gate.checks) > 20

    # the report lists every expectation with its result, failing samples escaped
    assert gate.report_path == settings.resolve("reports") / PERIOD / "validation.html"
    html = gate.report_path.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for check in gate.checks:
        assert f'data-expectation="{check.expectation}" data-success="{str(check.success).lower()}"' in html
    assert 'data-expectation="channel_in_vocabulary" data-success="false"' in html
    assert 'data-status="passed"' in html and "<code>web|r50</code>: 11" in html

    again = v.validate_period(settings, engine, PERIOD, now=NOW, lang="zh")
    assert again.counts() == c
    assert _count(engine, QualityCheck, v.QC.period == PERIOD) == n_checks
    assert _count(engine, QuarantinedRow) == 5
    assert "数据质量闸门" in gate.report_path.read_text(encoding="utf-8")

    # The file corrected in one row and collected again: its import counts the 22 rows it left
    # unchanged as duplicates of the stored ones (so do `cxloop imports`: per file, read = loaded +
    # updated + duplicates + rejected + out_of_period). Those rows are loaded, and the stage's
    # figures still add up: its duplicates are the rows that repeat a response of the month.
    with session_scope(engine) as s:
        s.add(ImportRecord(source="web", file="web.csv", content_hash="y", period=PERIOD, rows_read=27,
                           loaded=0, updated=2, duplicates=24, rejected=1))
    fixed = v.validate_period(settings, engine, PERIOD, now=NOW, lang="en").counts()
    assert (fixed["read"], fixed["loaded"], fixed["quarantined"], fixed["duplicates"]) == (27, 20, 5, 2)


def test_a_quarantined_row_names_the_file_that_loaded_it(engine: Engine, tmp_path: Path,
                                                         gx_loaded: None) -> None:
    """Where to fix a row validate quarantined: the file of its import record (quarantine show and
    export showed an empty file for every such row)."""
    settings = make_settings(tmp_path, quality={"max_quarantine_share": 1.0})
    with session_scope(engine) as s:
        record = ImportRecord(source="web", file="exports/web_10.csv", content_hash="x", period=PERIOD,
                              rows_read=6, loaded=6)
        s.add(record)
        s.flush()
        for r in [good_row(i) for i in range(5)] + [good_row(9, csat=9)]:
            s.add(Feedback(period=PERIOD, content_hash="h", import_id=record.id, **r))
        s.add(Feedback(period=PERIOD, content_hash="h", **good_row(10, ces=0)))  # loaded some other way
    assert v.validate_period(settings, engine, PERIOD, now=NOW).quarantined == 2
    with session_scope(engine) as s:
        files = {q.row_key: (q.file, q.line) for q in s.execute(select(QuarantinedRow)).scalars()}
    assert files == {"r9": ("exports/web_10.csv", None), "r10": (None, None)}


def test_fixed_row_is_readmitted(engine: Engine, tmp_path: Path, gx_loaded: None) -> None:
    settings = make_settings(tmp_path, quality={"max_quarantine_share": 1.0})
    add_rows(engine, [good_row(i) for i in range(5)] + [good_row(9, csat=9), good_row(10, ces=0)])
    first = v.validate_period(settings, engine, PERIOD, now=NOW)
    assert first.quarantined == 2
    with session_scope(engine) as s:
        s.execute(update(Feedback).where(v.FB.response_id == "r9").values(csat=4))

    out = v.readmit(settings, engine, PERIOD, now=NOW)
    assert out["quarantined_before"] == 2 and out["readmitted"] == 1 and out["still_quarantined"] == 1
    with session_scope(engine) as s:
        back = s.execute(select(QuarantinedRow).where(v.QR.row_key == "r9")).scalar_one()
        fb = s.execute(select(Feedback).where(v.FB.response_id == "r9")).scalar_one()
        assert back.readmitted_at is not None and not fb.quarantined
    # breaking it again re-quarantines the same row (no duplicate)
    with session_scope(engine) as s:
        s.execute(update(Feedback).where(v.FB.response_id == "r9").values(csat=7))
    again = v.validate_period(settings, engine, PERIOD, now=NOW)
    assert again.quarantined == 2 and _count(engine, QuarantinedRow) == 2
    with session_scope(engine) as s:
        back = s.execute(select(QuarantinedRow).where(v.QR.row_key == "r9")).scalar_one()
        assert back.readmitted_at is None and back.reasons[0]["value"] == 7


def test_gate_holds_on_quarantine_share_and_missing_source_but_not_on_warnings(
        engine: Engine, tmp_path: Path, gx_loaded: None) -> None:
    sources = [{"name": "web", "kind": "csv", "path": "web.csv"},
               {"name": "app", "kind": "csv", "path": "a.csv"}]
    settings = make_settings(tmp_path, sources=sources)
    # history: three months where web always had channels web/app/hotline and nps always filled
    for k in (1, 2, 3):
        p = shift_period(PERIOD, -k)
        start = period_bounds(p, settings.tz)[0] + timedelta(days=3)
        add_rows(engine, [good_row(i, response_id=f"{p}-{i}", submitted_at=start, source=src)
                          for i in range(12) for src in ("web", "app")], period=p)
    # this month: app delivered nothing, hotline is gone, nps mostly empty, 1 of 12 rows bad (8%)
    rows = [good_row(i, channel=["web", "app"][i % 2], nps=None if i < 9 else 5) for i in range(11)]
    add_rows(engine, rows + [good_row(99, csat=8)])

    gate = v.validate_period(settings, engine, PERIOD, now=NOW)
    failed = {c.expectation: c for c in gate.checks if not c.success}
    assert gate.status == "held"
    assert set(gate.failed_critical) == {"source_delivered", "quarantine_share_below_max"}
    assert failed["source_delivered"].sample == [{"key": "app", "value": False}]
    assert {"channel_not_missing", "score_null_rate_stable"} <= set(failed)
    assert failed["channel_not_missing"].sample[0]["key"] == "hotline"
    assert failed["score_null_rate_stable"].sample[0]["key"] == "nps"
    assert set(gate.warnings) == {"channel_not_missing", "score_null_rate_stable"}
    stored = {q.expectation: q for q in _checks(engine)}
    assert stored["source_delivered"].severity == "critical" and not stored["source_delivered"].success
    assert stored["channel_not_missing"].severity == "warning"

    # warnings alone never hold: relax the critical ones and the gate passes with the warnings left
    relaxed = make_settings(tmp_path, sources=sources[:1], quality={"max_quarantine_share": 0.1})
    gate = v.validate_period(relaxed, engine, PERIOD, now=NOW)
    assert gate.status == "passed" and gate.failed_critical == []
    assert set(gate.warnings) == {"channel_not_missing", "score_null_rate_stable"}


def _checks(engine: Engine) -> list[QualityCheck]:
    with session_scope(engine) as s:
        return list(s.execute(select(QualityCheck).where(v.QC.period == PERIOD)).scalars())


def test_volume_far_below_trailing_median_holds(engine: Engine, tmp_path: Path, gx_loaded: None) -> None:
    settings = make_settings(tmp_path)
    for k, n in ((1, 20), (2, 24), (3, 18)):
        p = shift_period(PERIOD, -k)
        start = period_bounds(p, settings.tz)[0] + timedelta(days=2)
        add_rows(engine, [good_row(i, response_id=f"{p}-{i}", submitted_at=start) for i in range(n)],
                 period=p)
    add_rows(engine, [good_row(i) for i in range(4)])
    gate = v.validate_period(settings, engine, PERIOD, now=NOW)
    assert gate.failed_critical == ["source_volume_in_band"]
    check = next(c for c in gate.checks if c.expectation == "source_volume_in_band")
    assert check.sample == [{"key": "web", "value": pytest.approx(4 / 20)}]
    # a wider band accepts it
    wide = make_settings(tmp_path, quality={"volume_band": [0.1, 10]})
    assert v.validate_period(wide, engine, PERIOD, now=NOW).status == "passed"


def test_the_gate_quarantines_the_same_with_row_keys_as_text(engine: Engine, tmp_path: Path,
                                                             gx_loaded: None) -> None:
    """A user expectation that reads the keys' text (a pattern) makes the gate hand GX the keys as
    text: quarantine, flags, reasons, counts and the shipped checks are as with keys as numbers."""
    settings = make_settings(tmp_path, quality={"max_quarantine_share": 1.0})
    add_rows(engine, [good_row(i) for i in range(8)] + [good_row(9, csat=9), good_row(10, nps=12, ces=0),
                                                         good_row(11, channel="fax")])

    def outcome(settings: Settings) -> tuple[Any, ...]:
        gate = v.validate_period(settings, engine, PERIOD, now=NOW)
        with session_scope(engine) as s:
            quarantine = sorted((q.row_key, q.raw, q.reasons, q.readmitted_at) for q in s.execute(
                select(QuarantinedRow).where(v.QR.period == PERIOD)).scalars())
            flagged = sorted(s.execute(select(v.FB.response_id).where(v.FB.quarantined)).scalars())
        checks = {c.expectation: c for c in gate.checks}
        return gate.counts(), quarantine, flagged, checks

    numbers = outcome(settings)
    (tmp_path / "expectations").mkdir()
    (tmp_path / "expectations" / "keys.json").write_text(json.dumps({
        "name": "keys", "meta": {"level": "row"},
        "expectations": [{"type": "expect_column_values_to_match_regex",
                          "kwargs": {"column": "row_key", "regex": "^web[|]r[0-9]$"},
                          "meta": {"id": "key_pattern", "severity": "warning"}}]}))
    text = outcome(settings)
    exps = [e for s in v.load_suites(settings) if s.level == "row"
            for e in v.expectations_of(s, settings, v.placeholder_values(settings, PERIOD, NOW))]
    assert not v.keys_by_equality(exps)
    pattern = text[3].pop("key_pattern")
    assert pattern.unexpected_count == 2 and {x["key"] for x in pattern.sample} == {"web|r10", "web|r11"}
    assert (text[0].pop("failed"), text[0].pop("warnings")) == (numbers[0].pop("failed") + 1, 1)
    for counts in (numbers[0], text[0]):
        counts.pop("checks"), counts.pop("warnings", None)
    assert text == numbers
    assert numbers[2] == ["r10", "r11", "r9"] and numbers[0]["quarantined"] == 3


def test_user_suite_and_severity_override_are_applied(engine: Engine, tmp_path: Path,
                                                      gx_loaded: None) -> None:
    (tmp_path / "expectations").mkdir()
    (tmp_path / "expectations" / "house_rules.json").write_text(json.dumps({
        "name": "house_rules", "meta": {"level": "row"},
        "expectations": [{"type": "expect_column_values_to_be_in_set",
                          "kwargs": {"column": "region", "value_set": ["north", "south"]},
                          "meta": {"id": "region_known", "severity": "critical"}}]}))
    (tmp_path / "expectations" / "house_batch.json").write_text(json.dumps({
        "name": "house_batch", "meta": {"level": "batch"},
        "expectations": [{"type": "expect_column_values_to_be_between",
                          "kwargs": {"column": "rows", "min_value": 10},
                          "meta": {"id": "at_least_ten_rows", "frame": "batch", "severity": "warning"}}]}))
    settings = make_settings(tmp_path, quality={"severity": {"nps_in_scale": "warning"},
                                                "max_quarantine_share": 1.0})
    add_rows(engine, [good_row(1, region="north"), good_row(2, region="mars"), good_row(3, nps=13)])
    gate = v.validate_period(settings, engine, PERIOD, now=NOW)
    with session_scope(engine) as s:
        q = s.execute(select(QuarantinedRow)).scalars().all()
    assert [(r.row_key, [x["expectation"] for x in r.reasons]) for r in q] == [("r2", ["region_known"])]
    nps = next(c for c in gate.checks if c.expectation == "nps_in_scale")
    assert nps.severity == "warning" and not nps.success  # reported, row not quarantined
    assert "at_least_ten_rows" in gate.warnings and gate.status == "passed"
    assert {c.suite for c in gate.checks} == {"feedback_rows", "feedback_batch", "house_rules", "house_batch"}


def test_bad_suite_file_names_the_file(tmp_path: Path, gx_loaded: None) -> None:
    (tmp_path / "expectations").mkdir()
    bad = tmp_path / "expectations" / "broken.json"
    bad.write_text('{"name": "broken", "expectations": [{"type": "expect_nonsense", "kwargs": {}}]}')
    settings = make_settings(tmp_path)
    exps = [e for s in v.load_suites(settings) if s.path == bad
            for e in v.expectations_of(s, settings, v.placeholder_values(settings, PERIOD, NOW))]
    with pytest.raises(v.SuiteError, match="broken.json.*expect_nonsense"):
        v.run_expectations(exps, pd.DataFrame({"row_key": ["a"]}), "rows")
    bad.write_text('{"name": "broken", "expectations": [{"type": "expect_column_values_to_be_in_set", '
                   '"kwargs": {"column": "x", "value_set": "${vocabulary.colour}"}}]}')
    with pytest.raises(v.SuiteError, match=r"broken.json.*unknown placeholder \$\{vocabulary.colour\}"):
        for suite in v.load_suites(settings):
            v.expectations_of(suite, settings, v.placeholder_values(settings, PERIOD, NOW))
    bad.write_text("{not json")
    with pytest.raises(v.SuiteError, match="broken.json"):
        v.load_suites(settings)


def _complete_in_one_pass(exps: list[v.Expectation], df: pd.DataFrame) -> dict[str, v.CheckResult]:
    """The reference: every expectation in one suite, one COMPLETE validation of the frame."""
    gx = v._gx()
    ctx = v._context()
    suite = ctx.suites.add(gx.ExpectationSuite(name="all", expectations=v.build_gx(exps)))
    batch = (ctx.data_sources.add_pandas("p").add_dataframe_asset("rows")
             .add_batch_definition_whole_dataframe("w")
             .get_batch(batch_parameters={"dataframe": df[v.columns_used(exps, df, "row_key")]}))
    out = {}
    for r in batch.validate(suite, result_format=v._COMPLETE).results:
        exp = exps[int(r.expectation_config.meta["cx_index"])]
        result = dict(r.result or {})
        result["unexpected_index_list"] = v._failing(df, "row_key", exp, result.get("unexpected_index_list"))
        outcome = {"success": bool(r.success), "result": result, "error": v._errors(r)}
        out[exp.name] = v.check_result(exp, outcome, "row_key")
    return out


def test_split_batches_and_basic_first_give_the_one_pass_complete_results(tmp_path: Path,
                                                                          gx_loaded: None) -> None:
    """The gate validates each set of columns on its own batch, BASIC first and COMPLETE only where rows
    fail: every check (counts, samples, messages, errors) equals one COMPLETE pass over the frame."""
    (tmp_path / "expectations").mkdir()
    extra = [
        ("expect_column_values_to_match_regex", {"column": "response_id", "regex": "^r[0-9]+$",
                                                 "mostly": 0.5}),
        ("expect_column_values_to_be_between", {"column": "csat", "min_value": 2, "mostly": 0.1}),
        ("expect_column_values_to_not_be_null", {"column": "csat", "row_condition": 'channel == "web"',
                                                 "condition_parser": "pandas"}),
        ("expect_column_values_to_be_in_set", {"column": "region", "value_set": ["north"]}),
        ("expect_column_values_to_be_in_set", {"column": "no_such_column", "value_set": [1]}),
        ("expect_column_mean_to_be_between", {"column": "nps", "min_value": 0, "max_value": 3}),
        ("expect_compound_columns_to_be_unique", {"column_list": ["channel", "touchpoint"]}),
        ("expect_table_row_count_to_be_between", {"min_value": 1}),
        ("expect_table_columns_to_match_set", {"column_set": ["row_key"], "exact_match": False}),
    ]
    (tmp_path / "expectations" / "extra.json").write_text(json.dumps({
        "name": "extra", "meta": {"level": "row"},
        "expectations": [{"type": t, "kwargs": k, "meta": {"id": f"extra_{i}"}}
                         for i, (t, k) in enumerate(extra)]}))
    settings = make_settings(tmp_path)
    exps = [e for s in v.load_suites(settings) if s.level == "row"
            for e in v.expectations_of(s, settings, v.placeholder_values(settings, PERIOD, NOW))]
    rows = [good_row(i, region=["north", None, "south"][i % 3], csat=None if i % 4 == 0 else 1 + i % 5,
                     opened_at=None if i % 3 == 0 else MID) for i in range(40)]
    rows += [good_row(100 + n, **{"response_id": f"bad-{name}", **over})
             for n, (name, over) in enumerate(BAD.items())]
    rows.append(good_row(200, response_id="dup"))
    df = v.row_frame(pd.DataFrame(rows))

    checks, reasons = v.check_rows(exps, df)
    reference = _complete_in_one_pass(exps, df)
    assert [c.expectation for c in checks] == [e.name for e in exps]
    for check in checks:
        assert check == reference[check.expectation], check.expectation
    by = {c.expectation: c for c in checks}
    assert by["extra_0"].success and by["extra_0"].sample  # passing "mostly" checks still list failing rows
    assert "error" in by["extra_4"].observed and not by["extra_4"].success
    assert by["extra_5"].observed["observed_value"] > 0 and by["extra_7"].success
    south = {k for k, region in zip(df["row_key"], df["region"], strict=True) if region == "south"}
    failing = {k for k, rs in reasons.items() if any(r["expectation"] == "extra_3" for r in rs)}
    assert south and failing == south


def test_the_kept_month_follows_the_quarantine_flags(engine: Engine, tmp_path: Path, gx_loaded: None) -> None:
    """Inside a cycle run the month frame is shared: the gate reads it and patches `quarantined`."""
    import cxloop.tasks.month as month

    settings = make_settings(tmp_path, quality={"max_quarantine_share": 1.0})
    add_rows(engine, [good_row(i) for i in range(6)] + [good_row(9, csat=9), good_row(10, ces=0)])

    def flags() -> dict[str, bool]:
        with engine.connect() as conn:
            return dict(conn.execute(select(v.FB.response_id, v.FB.quarantined)).tuples().all())

    shared = month.Month(engine, PERIOD, keep=True)
    kept = shared.rows()  # read before the gate, as the cycle does
    assert not kept["quarantined"].any()
    v.validate_period(settings, engine, PERIOD, now=NOW, month_rows=shared)
    frame = shared.rows()
    assert dict(zip(frame["response_id"], frame["quarantined"], strict=True)) == flags()
    assert set(frame.loc[frame["quarantined"], "response_id"]) == {"r9", "r10"}
    # fixed at the source: the next run clears the flag in the database and in the kept frame
    with session_scope(engine) as s:
        s.execute(update(Feedback).where(v.FB.response_id == "r9").values(csat=4))
    shared.forget()  # (a write the kept frame was not told about, as collect does)
    v.validate_period(settings, engine, PERIOD, now=NOW, month_rows=shared)
    frame = shared.rows()
    assert dict(zip(frame["response_id"], frame["quarantined"], strict=True)) == flags()
    assert set(frame.loc[frame["quarantined"], "response_id"]) == {"r10"}
