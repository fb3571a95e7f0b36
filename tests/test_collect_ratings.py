"""Driver ratings through a real collect (`[sources.drivers]` -> `feedback_rating`): stored per
response, "not rated" absent, out-of-scale answers left out and warned about, a re-collect replaces
instead of duplicating, and a file read in chunks stores what the whole file stores; on SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, select

import cxloop.tasks.collect.big as tc
import cxloop.tasks.collect.chunked as chunked
from cxloop.config import Settings, settings_from_dict
from cxloop.models import Feedback, FeedbackRating
from cxloop.tasks.collect import CollectSummary, collect_period
from cxloop.tasks.mapping import prepare
from cxloop.tasks.readers import SourceError

P = "2026-10"
FB: Table = Feedback.__table__  # type: ignore[attr-defined]
FR: Table = FeedbackRating.__table__  # type: ignore[attr-defined]
HEADER = "id,time,nps,座椅,结账"
ROWS = [
    "R1,2026-10-01 08:00,9,5,10",
    "R2,2026-10-02 09:00,3,0,2",  # seat 0 = not rated
    "R3,2026-10-03 10:00,7,,",  # neither rated: no ratings row
    "R4,2026-10-04 11:00,x,4,4",  # bad score: quarantined, ratings not stored
    "R5,2026-10-05 12:00,8,7,11",  # both out of scale: left out, warned
    "R6,2026-09-30 12:00,8,3,3",  # another month
    "R1,2026-10-06 12:00,6,2,3",  # R1 again: this copy wins
    "R7,2026-10-07 12:00,10,good,9",  # not a number: out of scale
]


def settings_for(tmp_path: Path) -> Settings:
    return settings_from_dict({
        "project": {"timezone": "UTC"},
        "sources": [{"name": "web", "kind": "csv", "path": "export.csv",
                     "channel": "web", "columns": {"response_id": "id", "submitted_at": "time", "nps": "nps"},
                     "drivers": {"seat": "座椅", "checkout": "结账"}}],
        "drivers": [{"name": "seat", "label_en": "Seat comfort", "label_zh": "座椅舒适度", "scale": [1, 5],
                     "not_rated": [0]},
                    {"name": "checkout", "label_en": "Checkout", "label_zh": "结账", "scale": [0, 10]}],
    }, tmp_path, env={})


def write(tmp_path: Path, rows: list[str]) -> None:
    (tmp_path / "export.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")


def collect(tmp_path: Path, engine: Engine, chunks: int | None = None) -> CollectSummary:
    big, rows = chunked.BIG_FILE_BYTES, chunked.CHUNK_ROWS
    chunked.BIG_FILE_BYTES = 0 if chunks else 1 << 40
    chunked.CHUNK_ROWS = chunks or rows
    try:
        return collect_period(settings_for(tmp_path), engine, P)
    finally:
        chunked.BIG_FILE_BYTES, chunked.CHUNK_ROWS = big, rows


def stored(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(FB.c.response_id, FR.c.period, FR.c.ratings)
                            .join(FB, FB.c.id == FR.c.feedback_id)).all()
    assert len({r[0] for r in rows}) == len(rows)  # one row per response
    return {rid: (period, ratings) for rid, period, ratings in rows}


EXPECTED = {"R1": (P, {"seat": 2, "checkout": 3}), "R2": (P, {"checkout": 2}), "R7": (P, {"checkout": 9})}


@pytest.mark.parametrize("chunks", [None, 3])
def test_collect_stores_driver_ratings_once(engine: Engine, tmp_path: Path, chunks: int | None) -> None:
    write(tmp_path, ROWS)
    if chunks:  # the chunked path itself must run, not fall back to the whole file
        seen: list[int] = []
        add = tc._ChunkedImport.add

        def counted(self: tc._ChunkedImport, piece: chunked.Piece) -> None:
            seen.append(piece.rows_read)
            add(self, piece)

        tc._ChunkedImport.add = counted  # type: ignore[method-assign]
        try:
            summary = collect(tmp_path, engine, chunks)
        finally:
            tc._ChunkedImport.add = add  # type: ignore[method-assign]
        assert seen == [3, 3, 2]
    else:
        summary = collect(tmp_path, engine, chunks)
    [imp] = summary.imports
    assert (imp.loaded, imp.rejected) == (5, 1)
    assert stored(engine) == EXPECTED
    warning = imp.warnings["driver_out_of_scale"]
    assert warning["count"] == 3
    assert warning["first"] == ["row 6 column '座椅' (seat, scale 1-5)",
                                "row 6 column '结账' (checkout, scale 0-10)",
                                "row 9 column '座椅' (seat, scale 1-5)"]
    assert any("driver rating(s) outside the driver's scale" in line for line in summary.warning_lines)

    # The file changes: R2 now rates its seat, R7 no longer rates anything. Replaced, not added to.
    write(tmp_path, [r.replace("R2,2026-10-02 09:00,3,0,2", "R2,2026-10-02 09:00,3,4,2")
                     .replace("R7,2026-10-07 12:00,10,good,9", "R7,2026-10-07 12:00,10,,") for r in ROWS])
    collect(tmp_path, engine, chunks)
    assert stored(engine) == {"R1": (P, {"seat": 2, "checkout": 3}), "R2": (P, {"seat": 4, "checkout": 2})}
    collect(tmp_path, engine, chunks)  # the same bytes again: nothing changes
    assert len(stored(engine)) == 2


def test_a_driver_scale_change_reparses_the_file(engine: Engine, tmp_path: Path) -> None:
    """The driver's scale is part of the mapping: a file imported before is parsed again."""
    write(tmp_path, ROWS)
    collect_period(settings_for(tmp_path), engine, P)
    wider = settings_for(tmp_path)
    wider.drivers[0].scale = (1, 7)
    collect_period(wider, engine, P)
    assert stored(engine)["R5"] == (P, {"seat": 7})


def test_a_missing_driver_column_names_file_and_column(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    (tmp_path / "export.csv").write_text("id,time,nps,座椅\nR1,2026-10-01 08:00,9,5\n", encoding="utf-8")
    from cxloop.tasks.collect import read_file

    path = tmp_path / "export.csv"
    raw = read_file(settings, settings.sources[0], path, "export.csv", path.read_bytes())
    with pytest.raises(SourceError, match="mapped column '结账' \\(mapped to driver checkout\\) not found"):
        prepare(settings, settings.sources[0], raw, P, "export.csv")
