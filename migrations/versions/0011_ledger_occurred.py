"""The ledger by time, for the dashboard's points per day.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('loyalty_ledger', schema=None) as batch_op:
        batch_op.create_index('ix_loyalty_ledger_occurred', ['occurred_at'], unique=False)


def downgrade():
    with op.batch_alter_table('loyalty_ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_ledger_occurred')
