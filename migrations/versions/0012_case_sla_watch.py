"""followup_case.sla_watch: the earliest deadline of a case still owed a reminder or escalation, and
an index on (status, sla_watch), so the daily SLA scan reads only the cases whose deadline has come
near instead of every open case; an index on customer_contact.submitted_at, so the daily purge of
contact details past retention reads only those (issue 19, item 8)

Open cases get a watch the scan can only find too early, never too late: first contact (or closure,
if earlier) for new cases, closure for contacted ones. A case already escalated is read once by the
next scan, which finds nothing owed and stores its true watch.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('followup_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sla_watch', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute("UPDATE followup_case SET sla_watch = CASE WHEN contact_due <= close_due THEN contact_due"
               " ELSE close_due END WHERE status = 'new'")
    op.execute("UPDATE followup_case SET sla_watch = close_due WHERE status = 'contacted'")
    op.create_index('ix_followup_case_sla_watch', 'followup_case', ['status', 'sla_watch'])
    op.create_index('ix_customer_contact_submitted_at', 'customer_contact', ['submitted_at'])


def downgrade() -> None:
    op.drop_index('ix_customer_contact_submitted_at', table_name='customer_contact')
    op.drop_index('ix_followup_case_sla_watch', table_name='followup_case')
    with op.batch_alter_table('followup_case', schema=None) as batch_op:
        batch_op.drop_column('sla_watch')
