"""Service state shared by every worker and node: counters and heartbeats by name.
``api_keys`` counts changes to keys and stores (a revocation bumps it; every worker reads
it with its key cache), ``scheduler`` is the active scheduler's heartbeat.

Revision ID: 0085
Revises: 0084
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0085"
down_revision = "0084"
branch_labels = None
depends_on = None


def upgrade():
    table = op.create_table(
        "service_state",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("counter", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False, server_default="0"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("node", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_state")),
    )
    op.bulk_insert(table, [{"name": "api_keys", "counter": 0}])


def downgrade():
    op.drop_table("service_state")
