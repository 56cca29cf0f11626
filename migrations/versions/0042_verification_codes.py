"""One-time codes for spending points from a till above the program's threshold.

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("loyalty_program") as batch:
        batch.add_column(sa.Column("verification_threshold",
                                    sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                    nullable=True))
    op.create_table(
        "verification_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_for", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_verification_codes_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_codes")),
    )
    op.create_index("ix_verification_codes_customer", "verification_codes",
                    ["customer_id", "id"])


def downgrade():
    op.drop_index("ix_verification_codes_customer", table_name="verification_codes")
    op.drop_table("verification_codes")
    with op.batch_alter_table("loyalty_program") as batch:
        batch.drop_column("verification_threshold")
