"""feedback_rating: each response's attribute ratings for key-driver analysis

One row per response with a JSON dict {driver: value}; a driver not rated is absent (missing, not
zero). Indexed by period so a cycle reads its month without touching the feedback table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feedback_rating',
    sa.Column('feedback_id', sa.Integer(), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ratings', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['feedback_id'], ['feedback.id'], ),
    sa.PrimaryKeyConstraint('feedback_id')
    )
    with op.batch_alter_table('feedback_rating', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedback_rating_period'), ['period'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('feedback_rating', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_rating_period'))
    op.drop_table('feedback_rating')
