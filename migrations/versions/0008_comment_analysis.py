"""comment_analysis: the comments stage's fingerprint per period, in a table of its own

It was kept as a pseudo-stage row "comments:analysis" in `cycle_stage`, a table meant for the
cycle's stages; those rows move here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

MARKER = "comments:analysis"


def _utc(value: datetime) -> datetime:
    """Read back through a plain DateTime column, SQLite's times are naive; they were stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def upgrade() -> None:
    table = op.create_table(
        'comment_analysis',
        sa.Column('period', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('model', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('analysed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('period'),
    )
    conn = op.get_bind()
    stage = sa.table('cycle_stage', sa.column('period', sa.String), sa.column('stage', sa.String),
                     sa.column('input_hash', sa.String), sa.column('finished_at', sa.DateTime),
                     sa.column('started_at', sa.DateTime), sa.column('counts', sa.JSON))
    rows = conn.execute(sa.select(stage.c.period, stage.c.input_hash, stage.c.finished_at,
                                  stage.c.started_at, stage.c.counts)
                        .where(stage.c.stage == MARKER, stage.c.input_hash.is_not(None))).all()
    if rows:
        op.bulk_insert(table, [{"period": r.period, "fingerprint": r.input_hash,
                                "model": str((r.counts or {}).get("model", "")),
                                "analysed_at": _utc(r.finished_at or r.started_at)} for r in rows])
    conn.execute(sa.delete(stage).where(stage.c.stage == MARKER))


def downgrade() -> None:
    conn = op.get_bind()
    mark = sa.table('comment_analysis', sa.column('period', sa.String), sa.column('fingerprint', sa.String),
                    sa.column('model', sa.String), sa.column('analysed_at', sa.DateTime))
    stage = sa.table('cycle_stage', sa.column('period', sa.String), sa.column('stage', sa.String),
                     sa.column('status', sa.String), sa.column('input_hash', sa.String),
                     sa.column('started_at', sa.DateTime), sa.column('finished_at', sa.DateTime),
                     sa.column('counts', sa.JSON))
    rows = conn.execute(sa.select(mark)).all()
    if rows:
        op.bulk_insert(stage, [{"period": r.period, "stage": MARKER, "status": "completed",
                                "input_hash": r.fingerprint, "started_at": r.analysed_at,
                                "finished_at": r.analysed_at, "counts": {"model": r.model}} for r in rows])
    op.drop_table('comment_analysis')
