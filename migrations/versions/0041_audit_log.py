"""The hash-chained audit log, append-only by trigger on both databases; the old
audit_events (exports and erasures) are folded into it.

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-01
"""

import hashlib
import json
from datetime import UTC

import sqlalchemy as sa
from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None

REFUSE = "audit_log is append-only: UPDATE and DELETE are refused"
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, '{REFUSE}'); END""",
    f"""CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, '{REFUSE}'); END""",
]
POSTGRES_TRIGGERS = [
    f"""CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{REFUSE}'; END $$""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_refuse()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse()""",
]


def _digest(row, prev):
    # The same canonical form as crm/audit.py (frozen here: a migration never changes).
    content = {"id": row["id"], "at": row["created_at"].astimezone(UTC).isoformat(),
               "actor": row["actor"], "store_id": None, "address": None, "request_id": None,
               "action": row["action"], "object_type": "customer",
               "object_id": row["object_id"], "fields": [], "before": {},
               "after": row["after"], "prev": prev}
    return hashlib.sha256(json.dumps(content, sort_keys=True,
                                     separators=(",", ":")).encode()).hexdigest()


def upgrade():
    table = op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=45), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("object_type", sa.String(length=40), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    op.create_index("ix_audit_log_object", "audit_log", ["object_type", "object_id", "id"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor", "id"])
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])

    # The exports and erasures recorded so far become the chain's first rows.
    conn = op.get_bind()
    old = sa.table("audit_events", sa.column("id"), sa.column("customer_id"),
                   sa.column("action"), sa.column("actor"), sa.column("detail", sa.JSON),
                   sa.column("created_at", sa.DateTime(timezone=True)))
    rows, prev = [], "0" * 64
    for n, e in enumerate(conn.execute(sa.select(old).order_by(old.c.id)).mappings(), 1):
        at = e["created_at"] if e["created_at"].tzinfo else e["created_at"].replace(tzinfo=UTC)
        row = {"id": n, "created_at": at, "actor": e["actor"] or "unknown",
               "action": e["action"], "object_id": str(e["customer_id"]),
               "after": json.loads(json.dumps(e["detail"] or {}, default=str))}
        row["hash"] = _digest(row, prev)
        rows.append({**row, "store_id": None, "address": None, "request_id": None,
                     "object_type": "customer", "fields": [], "before": {},
                     "prev_hash": prev})
        prev = row["hash"]
    if rows:
        op.bulk_insert(table, rows)
    op.drop_table("audit_events")

    for statement in (POSTGRES_TRIGGERS if conn.dialect.name == "postgresql"
                      else SQLITE_TRIGGERS):
        op.execute(statement)


def downgrade():
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_refuse()")
    else:
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute("DROP TRIGGER audit_log_no_update")
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_audit_events_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_customer_id", "audit_events", ["customer_id"])
    op.drop_table("audit_log")
