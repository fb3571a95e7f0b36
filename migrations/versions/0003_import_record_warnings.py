"""import_record.warnings: what collect cleaned or noticed in a file that still loaded

NUL characters removed from cells (PostgreSQL cannot store them), a response_id repeated with
different content in one file: counted, with the first places, so the admin sees them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('import_record', sa.Column('warnings', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('import_record') as batch:
        batch.drop_column('warnings')
