"""columnar_copy: the stamp of each period's columnar copy (issue 20)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'columnar_copy',
        sa.Column('period', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('stamp', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('max_id', sa.Integer(), nullable=False),
        sa.Column('written_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('period'),
    )


def downgrade() -> None:
    op.drop_table('columnar_copy')
