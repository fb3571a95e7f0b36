"""import_record.collect_started: the start of the collect that wrote a record

Every record one collect of a source writes carries that collect's start, so the records of its
latest collect can be told from older ones: a failure is current only while it is from that
collect (`tasks/collect/records.py`). A source whose glob matched nothing is recorded under its
configured path, not under a file's name, so no later record of the same name replaced it and the
report's data-quality box showed it after the files were read. Records written before have no
value: for a source whose newest record has none, every failure stays as before.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('import_record', sa.Column('collect_started', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    # Not a batch rebuild: on SQLite that drops the table, which feedback's kept foreign key
    # (0013) refuses once a row points at a record. SQLite 3.35+ drops a column in place.
    op.drop_column('import_record', 'collect_started')
