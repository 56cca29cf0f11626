"""Money (minor units) and points as 64-bit integers on PostgreSQL (SQLite's INTEGER is
64-bit already): a large basket, or points piling up, must never overflow.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = {
    "coupon_redemptions": ('discount', 'bonus_points'),
    "loyalty_accounts": ('balance', 'pending', 'lifetime'),
    "loyalty_earning_rules": ('min_spend', 'cap_points'),
    "loyalty_ledger": ('points', 'pending', 'balance_after'),
    "loyalty_lot_draws": ('points',),
    "loyalty_lots": ('points', 'remaining'),
    "loyalty_rule_awards": ('points',),
    "loyalty_tiers": ('threshold_points', 'threshold_spend'),
    "offers": ('min_spend', 'budget', 'spent'),
    "purchase_lines": ('unit_price', 'amount'),
    "purchase_returns": ('returned_paid', 'points_reversed', 'points_restored', 'points_uncollected', 'balance_after'),
    "purchases": ('total', 'discount', 'paid', 'points_earned', 'points_pending', 'points_redeemed', 'balance_after', 'returned_paid', 'points_reversed', 'points_restored'),
    "reward_claims": ('points',),
    "rewards": ('points_cost',),
}


def _retype(type_):
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=type_)


def upgrade():
    _retype(sa.BigInteger())


def downgrade():
    _retype(sa.Integer())
