"""Each message's delivery history: every Twilio status callback as it came, and
whether it moved the message on; indexes for the outbox's purpose filter and for
a survey's answers by store.

Revision ID: 0052
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0052"
down_revision = "0051"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "message_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_status", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"],
                                name=op.f("fk_message_events_message_id_messages")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_events")),
    )
    op.create_index("ix_message_events_message", "message_events", ["message_id", "id"])
    op.create_index("ix_messages_purpose_id", "messages", ["purpose", "id"])
    op.create_index("ix_survey_responses_survey_store_created", "survey_responses",
                    ["survey_id", "store_id", "created_at"])


def downgrade():
    op.drop_index("ix_survey_responses_survey_store_created", table_name="survey_responses")
    op.drop_index("ix_messages_purpose_id", table_name="messages")
    op.drop_index("ix_message_events_message", table_name="message_events")
    op.drop_table("message_events")
