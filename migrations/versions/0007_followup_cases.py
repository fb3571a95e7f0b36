"""follow-up cases (issue 19): contact_ok on feedback, customer_contact, followup_case,
case_response, case_event, case_notice, followup_run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_ok', sa.Boolean(), nullable=True))
    op.create_table('customer_contact',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', _S(), nullable=False),
    sa.Column('response_id', _S(), nullable=False),
    sa.Column('customer_id', _S(), nullable=True),
    sa.Column('name', _S(), nullable=True),
    sa.Column('phone', _S(), nullable=True),
    sa.Column('email', _S(), nullable=True),
    sa.Column('submitted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('stored_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'response_id', name='uq_customer_contact')
    )
    op.create_index('ix_customer_contact_customer_id', 'customer_contact', ['customer_id'])
    op.create_table('followup_case',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_key', _S(), nullable=False),
    sa.Column('customer_id', _S(), nullable=True),
    sa.Column('department', _S(), nullable=False),
    sa.Column('queue', _S(), nullable=True),
    sa.Column('status', _S(), nullable=False),
    sa.Column('period', _S(), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=True),
    sa.Column('responses', sa.Integer(), nullable=False),
    sa.Column('opened_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('contact_due', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('close_due', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('contacted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('root_cause', _S(), nullable=True),
    sa.Column('outcome', _S(), nullable=True),
    sa.Column('resurvey_score', sa.Integer(), nullable=True),
    sa.Column('resurvey_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('reminded', sa.JSON(), nullable=True),
    sa.Column('escalated', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_key')
    )
    for column in ('customer_id', 'department', 'status', 'period'):
        op.create_index(f'ix_followup_case_{column}', 'followup_case', [column])
    op.create_table('case_response',
    sa.Column('feedback_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['followup_case.id'], ),
    sa.ForeignKeyConstraint(['feedback_id'], ['feedback.id'], ),
    sa.PrimaryKeyConstraint('feedback_id')
    )
    op.create_index('ix_case_response_case_id', 'case_response', ['case_id'])
    op.create_table('case_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('by', _S(), nullable=False),
    sa.Column('from_status', _S(), nullable=True),
    sa.Column('to_status', _S(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['followup_case.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_case_event_case_id', 'case_event', ['case_id'])
    op.create_table('case_notice',
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['followup_case.id'], ),
    sa.ForeignKeyConstraint(['message_id'], ['outbox_message.id'], ),
    sa.PrimaryKeyConstraint('case_id', 'message_id')
    )
    op.create_table('followup_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', _S(), nullable=False),
    sa.Column('last_feedback_id', sa.Integer(), nullable=False),
    sa.Column('considered', sa.Integer(), nullable=False),
    sa.Column('opened', sa.Integer(), nullable=False),
    sa.Column('merged', sa.Integer(), nullable=False),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_followup_run_day', 'followup_run', ['day'])


def downgrade() -> None:
    for table in ('followup_run', 'case_notice', 'case_event', 'case_response', 'followup_case',
                  'customer_contact'):
        op.drop_table(table)
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_column('contact_ok')
