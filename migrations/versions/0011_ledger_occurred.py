"""The ledger and the purchases by time with the figures the dashboard sums (points per
day, sales per day, active members): read from the indexes alone, the 90 days of a
million purchases are not a million random reads.

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
        batch_op.create_index('ix_loyalty_ledger_occurred',
                              ['occurred_at', 'kind', 'points', 'pending'], unique=False)
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.drop_index('ix_purchases_occurred')
        batch_op.create_index('ix_purchases_occurred', ['occurred_at', 'currency', 'paid',
                                                        'returned_paid', 'customer_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.drop_index('ix_purchases_occurred')
        batch_op.create_index('ix_purchases_occurred', ['occurred_at'], unique=False)
    with op.batch_alter_table('loyalty_ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_ledger_occurred')
