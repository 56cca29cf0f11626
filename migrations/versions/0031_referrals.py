"""Referral program: settings, personal codes, referrals.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "referral_program",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("referrer_points", BigId, nullable=False),
        sa.Column("friend_points", BigId, nullable=False),
        sa.Column("friend_offer_id", sa.BigInteger(), nullable=True),
        sa.Column("min_first_purchase", BigId, nullable=False),
        sa.Column("qualify_days", sa.Integer(), nullable=False),
        sa.Column("max_per_referrer_per_month", sa.Integer(), nullable=True),
        sa.Column("max_per_referrer", sa.Integer(), nullable=True),
        sa.Column("updated_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_program")),
    )
    op.create_table(
        "referral_codes",
        sa.Column("customer_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_referral_codes_customer_id_customers")),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_referral_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_referral_codes_code")),
    )
    op.create_table(
        "referrals",
        sa.Column("id", BigId, nullable=False),
        sa.Column("referrer_id", sa.BigInteger(), nullable=False),
        sa.Column("friend_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("purchase_id", sa.BigInteger(), nullable=True),
        sa.Column("qualified_at", When, nullable=True),
        sa.Column("reward_due_at", When, nullable=True),
        sa.Column("rewarded_at", When, nullable=True),
        sa.Column("reversed_at", When, nullable=True),
        sa.Column("referrer_points", BigId, nullable=False),
        sa.Column("friend_points", BigId, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.CheckConstraint("status IN ('attributed', 'qualified', 'rewarded', 'rejected', "
                           "'reversed', 'capped')", name=op.f("ck_referrals_status")),
        sa.ForeignKeyConstraint(["referrer_id"], ["customers.id"],
                                name=op.f("fk_referrals_referrer_id_customers")),
        sa.ForeignKeyConstraint(["friend_id"], ["customers.id"],
                                name=op.f("fk_referrals_friend_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
        sa.UniqueConstraint("friend_id", name=op.f("uq_referrals_friend_id")),
    )
    op.create_index("ix_referrals_referrer_status", "referrals", ["referrer_id", "status"])
    op.create_index("ix_referrals_status_due", "referrals", ["status", "reward_due_at"])
    op.create_index("ix_referrals_purchase", "referrals", ["purchase_id"])
    op.create_index("ix_referrals_fingerprint", "referrals", ["fingerprint"])


def downgrade():
    op.drop_index("ix_referrals_fingerprint", table_name="referrals")
    op.drop_index("ix_referrals_purchase", table_name="referrals")
    op.drop_index("ix_referrals_status_due", table_name="referrals")
    op.drop_index("ix_referrals_referrer_status", table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("referral_codes")
    op.drop_table("referral_program")
