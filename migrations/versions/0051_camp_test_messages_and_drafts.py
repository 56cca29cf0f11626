"""Campaign tests in the outbox (purpose "test"), and the console's campaign drafts.

Revision ID: 0051
Revises: 0011
Create Date: 2026-12-02
"""

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0051"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD = "purpose IN ('campaign', 'survey', 'transactional')"
NEW = "purpose IN ('campaign', 'survey', 'transactional', 'test')"


def _purposes(check: str) -> None:
    """SQLite cannot alter a CHECK constraint: the batch copies the table (reflecting
    the tables it refers to, whose expression indexes SQLAlchemy says it skips: they are
    not copied, only messages is); PostgreSQL drops and adds the constraint."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
        with op.batch_alter_table("messages", recreate="auto") as batch:
            batch.drop_constraint(op.f("ck_messages_purpose"), type_="check")
            batch.create_check_constraint("purpose", check)


def upgrade():
    _purposes(NEW)
    op.create_table(
        "campaign_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_campaign_drafts_user_id_users")),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"],
                                name=op.f("fk_campaign_drafts_campaign_id_campaigns")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_drafts")),
    )
    op.create_index("ix_campaign_drafts_user", "campaign_drafts", ["user_id", "id"])


def downgrade():
    op.drop_index("ix_campaign_drafts_user", table_name="campaign_drafts")
    op.drop_table("campaign_drafts")
    op.execute("DELETE FROM messages WHERE purpose = 'test'")
    _purposes(OLD)
