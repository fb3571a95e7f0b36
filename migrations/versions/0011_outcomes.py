"""outcome: what customers did afterwards (orders, spend, visits, churn/renewal flags by customer and
date), from the `[outcomes]` export, joined to responses by customer id (issue 22, item 4)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('outcome',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('file', _S(), nullable=False),
    sa.Column('file_hash', _S(), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('customer_id', _S(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('orders', sa.Float(), nullable=True),
    sa.Column('spend', sa.Float(), nullable=True),
    sa.Column('visits', sa.Float(), nullable=True),
    sa.Column('churned', sa.Boolean(), nullable=True),
    sa.Column('renewed', sa.Boolean(), nullable=True),
    sa.Column('loaded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_outcome_file', 'outcome', ['file'])
    op.create_index('ix_outcome_customer_id', 'outcome', ['customer_id'])


def downgrade() -> None:
    op.drop_index('ix_outcome_customer_id', table_name='outcome')
    op.drop_index('ix_outcome_file', table_name='outcome')
    op.drop_table('outcome')
