"""The schema comes from migrations and matches the models, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

import cxloop.models  # noqa: F401


def test_migrations_create_every_table(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= names


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    if engine.dialect.name == "sqlite":  # migration 0013 leaves SQLite's key (no table rebuild)
        kept = [d for d in diff if d[0] == "remove_fk" and d[1].parent.name == "feedback"
                and [c.name for c in d[1].columns] == ["import_id"]]
        assert len(kept) == 1, diff
        diff = [d for d in diff if d not in kept]
    assert diff == [], f"models changed without a migration: {diff}"


def test_feedback_import_key_only_where_it_is_cheap(db_url: str) -> None:
    """Migration 0013: PostgreSQL drops the foreign key feedback.import_id -> import_record (its
    row-by-row check cost a third of a big load) and a downgrade restores it; SQLite keeps it."""
    from alembic import command

    from cxloop.db import alembic_config, make_engine

    eng = make_engine(db_url)
    try:
        def keys() -> list[str]:
            return [fk["referred_table"] for fk in inspect(eng).get_foreign_keys("feedback")]

        command.upgrade(alembic_config(eng), "0012")
        assert keys() == ["import_record"]
        command.upgrade(alembic_config(eng), "head")
        assert keys() == ([] if eng.dialect.name == "postgresql" else ["import_record"])
        command.downgrade(alembic_config(eng), "0012")
        assert keys() == ["import_record"]
    finally:
        eng.dispose()


def test_feedback_pages_keep_room_on_postgresql(db_url: str) -> None:
    """Migration 0014: PostgreSQL writes feedback pages a fifth empty (the comments stage's updates
    then stay on their page) and a downgrade resets it; on SQLite, which has no such setting, both
    directions run and change nothing."""
    from alembic import command
    from sqlalchemy import text

    from cxloop.db import alembic_config, make_engine

    eng = make_engine(db_url)
    pg = eng.dialect.name == "postgresql"
    try:
        def options() -> list[str] | None:
            if not pg:
                return [c["name"] for c in inspect(eng).get_columns("feedback")][-3:]
            with eng.connect() as conn:
                return conn.execute(text("SELECT reloptions FROM pg_class WHERE oid = 'feedback'::regclass")
                                    ).scalar_one()

        command.upgrade(alembic_config(eng), "0013")
        before = options()
        command.upgrade(alembic_config(eng), "head")
        assert options() == (["fillfactor=80"] if pg else before)
        command.downgrade(alembic_config(eng), "0013")
        assert options() == before == (None if pg else before)
    finally:
        eng.dispose()


def test_comment_analysis_markers_move_out_of_cycle_stage(db_url: str) -> None:
    """Migration 0008: a database whose comment-analysis fingerprints sat in `cycle_stage` as the
    pseudo-stage "comments:analysis" keeps them, in `comment_analysis`, and loses the pseudo rows."""
    from alembic import command
    from sqlalchemy import text

    from cxloop.db import alembic_config, make_engine

    eng = make_engine(db_url)
    try:
        command.upgrade(alembic_config(eng), "0006")
        with eng.begin() as conn:
            conn.execute(text(
                "INSERT INTO cycle_stage (period, stage, status, input_hash, started_at, finished_at, counts)"
                " VALUES ('2026-10', 'comments:analysis', 'completed', 'fp1', '2026-11-01 00:00:00',"
                " '2026-11-01 00:00:00', '{\"model\": \"trained\"}'),"
                " ('2026-10', 'kpis', 'completed', 'x', '2026-11-01 00:00:00', NULL, '{}')"))
        command.upgrade(alembic_config(eng), "head")
        with eng.connect() as conn:
            assert conn.execute(text("SELECT period, fingerprint, model FROM comment_analysis")).all() == [
                ("2026-10", "fp1", "trained")]
            assert conn.execute(text("SELECT stage FROM cycle_stage")).scalars().all() == ["kpis"]
        command.downgrade(alembic_config(eng), "0006")
        with eng.connect() as conn:
            assert sorted(conn.execute(text("SELECT stage, input_hash FROM cycle_stage")).all()) == [
                ("comments:analysis", "fp1"), ("kpis", "x")]
    finally:
        eng.dispose()
