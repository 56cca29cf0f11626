"""API keys: expiry, allowed addresses, when and where last used, networks seen.

Revision ID: 0040
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("allowed_ips", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_used_address", sa.String(length=45), nullable=True))
        batch.add_column(sa.Column("networks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("rotated_from_id", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("api_keys") as batch:
        for name in ("rotated_from_id", "networks", "last_used_address", "last_used_at",
                     "allowed_ips", "expires_at"):
            batch.drop_column(name)
