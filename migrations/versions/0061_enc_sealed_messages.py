"""Personal data encrypted at rest, part 2: SMS numbers and texts (both ways) and survey
comments are sealed (crm/pii.py); existing rows are sealed here, in batches.

messages.to_number, body -> to_sealed, to_index (the number's blind index), body_sealed;
inbound_messages.from_number, body -> from_sealed, body_sealed;
survey_responses.comment -> comment_sealed.

Revision ID: 0061
Revises: 0060
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0061"
down_revision = "0060"
branch_labels = None
depends_on = None

BATCH = 2000
# table: [(plain column, sealed column)], and the column whose blind index is kept
SEALED = {
    "messages": [("to_number", "to_sealed"), ("body", "body_sealed")],
    "inbound_messages": [("from_number", "from_sealed"), ("body", "body_sealed")],
    "survey_responses": [("comment", "comment_sealed")],
}
PLAIN_TYPES = {"to_number": sa.String(20), "from_number": sa.String(20), "body": sa.Text(),
               "comment": sa.Text()}


def _keyring():
    from crm import pii

    return pii.keyring()


def _batches(conn, query):
    after = 0
    while True:
        rows = conn.execute(sa.text(query), {"after": after, "n": BATCH}).all()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def _number_index(ring, number):
    from crm.identifiers import NORMALIZATION_VERSION

    return ring.index("sms", number, NORMALIZATION_VERSION) if number else None


def upgrade():
    ring = _keyring()
    conn = op.get_bind()
    op.drop_index("ix_messages_to_number", "messages")
    for table, pairs in SEALED.items():
        for _, sealed in pairs:
            op.add_column(table, sa.Column(sealed, sa.Text(), nullable=True))
        if table == "messages":
            op.add_column(table, sa.Column("to_index", sa.String(24), nullable=True))
        plain = ", ".join(p for p, _ in pairs)
        for rows in _batches(conn, f"SELECT id, {plain} FROM {table} WHERE id > :after "
                                   "ORDER BY id LIMIT :n"):
            values = []
            for row in rows:
                value = {"i": row[0]}
                for (_, sealed), text in zip(pairs, row[1:], strict=True):
                    value[sealed] = ring.seal(table, sealed, row[0], text)
                if table == "messages":
                    value["to_index"] = _number_index(ring, row[1])
                values.append(value)
            sets = ", ".join(f"{k} = :{k}" for k in values[0] if k != "i")
            conn.execute(sa.text(f"UPDATE {table} SET {sets} WHERE id = :i"), values)
        for column, _ in pairs:  # plain ALTER TABLE: SQLite >= 3.35 drops columns itself
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.create_index("ix_messages_to_index", "messages", ["to_index"])


def downgrade():
    ring = _keyring()
    conn = op.get_bind()
    op.drop_index("ix_messages_to_index", "messages")
    for table, pairs in SEALED.items():
        for column, _ in pairs:
            op.add_column(table, sa.Column(column, PLAIN_TYPES[column], nullable=True))
        sealed_columns = ", ".join(s for _, s in pairs)
        for rows in _batches(conn, f"SELECT id, {sealed_columns} FROM {table} "
                                   "WHERE id > :after ORDER BY id LIMIT :n"):
            values = []
            for row in rows:
                value = {"i": row[0]}
                for (column, sealed), text in zip(pairs, row[1:], strict=True):
                    opened = ring.open(table, sealed, row[0], text)
                    value[column] = opened if opened is not None or column == "comment" \
                        else ""
                values.append(value)
            sets = ", ".join(f"{k} = :{k}" for k in values[0] if k != "i")
            conn.execute(sa.text(f"UPDATE {table} SET {sets} WHERE id = :i"), values)
        for _, sealed in pairs:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {sealed}")
        if table == "messages":
            op.execute("ALTER TABLE messages DROP COLUMN to_index")
    op.create_index("ix_messages_to_number", "messages", ["to_number"])
