"""cycle.risk_basis: what an accepted data risk was accepted for

A held month whose risk was accepted (`cxloop run --accept-data-risk`) stays accepted while the
data-quality gate sees the same month: validate's figures of it, kept here at acceptance
(`flows/bookkeeping.py` `gate_basis`). Whether validate ran again is no sign of that: its input
fingerprint covers the config and every month's rows, so a later month's collect made a re-run
drop the acceptance. Cycles accepted before have none: a run that holds them again clears it,
as it did before.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('cycle', sa.Column('risk_basis', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('cycle', 'risk_basis')  # in place (SQLite 3.35+), as 0015
