"""The console's live segment counts, seen by every worker and node: one row a count,
with the heartbeat of the process running it and, once done, its figure and sample ids.

Revision ID: 0083
Revises: 0080
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0083"
down_revision = "0080"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "segment_count_jobs",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=True),
        sa.Column("sample", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_segment_count_jobs")),
    )
    op.create_index("ix_segment_count_jobs_heartbeat", "segment_count_jobs",
                    ["heartbeat_at"])


def downgrade():
    op.drop_index("ix_segment_count_jobs_heartbeat", table_name="segment_count_jobs")
    op.drop_table("segment_count_jobs")
