"""who holds a claim: outbox_message.claimed_by, cycle.runner

A process killed with kill -9 leaves an outbox message `sending` and a cycle `running`. Recording
the holder (`host:pid:start`, see `tasks/claims.py`) lets a later run or `cxloop status` see that
the holder is gone and take over at once instead of waiting for a lease.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('outbox_message', sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('cycle', sa.Column('runner', sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cycle') as batch:
        batch.drop_column('runner')
    with op.batch_alter_table('outbox_message') as batch:
        batch.drop_column('claimed_by')
