"""Look-alike emails: customer_identifiers.alike, a short blind index of an email's
skeleton (crm.identifiers.skeleton: each character that only looks like a Latin letter
written as that letter), indexed for the duplicate finder. Existing emails are opened
with the app's key ring, in batches. Never the skeleton itself: that is the address.

Revision ID: 0084
Revises: 0083
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0084"
down_revision = "0083"
branch_labels = None
depends_on = None

BATCH = 2000


def upgrade():
    from crm import pii
    from crm.models import identifier_alike

    # plain ALTER TABLE on both databases: no table copy, the expression indexes stay
    op.add_column("customer_identifiers", sa.Column("alike", sa.String(24), nullable=True))
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(sa.text(
            "SELECT id, sealed FROM customer_identifiers WHERE kind = 'email' AND id > :after "
            "ORDER BY id LIMIT :n"), {"after": after, "n": BATCH}).all()
        if not rows:
            break
        conn.execute(sa.text("UPDATE customer_identifiers SET alike = :a WHERE id = :i"), [
            {"i": iid, "a": identifier_alike(
                "email", pii.open_("customer_identifiers", "sealed", iid, sealed))}
            for iid, sealed in rows])
        after = rows[-1][0]
    op.create_index("ix_customer_identifiers_alike", "customer_identifiers", ["alike"])


def downgrade():
    op.drop_index("ix_customer_identifiers_alike", table_name="customer_identifiers")
    op.execute("ALTER TABLE customer_identifiers DROP COLUMN alike")
