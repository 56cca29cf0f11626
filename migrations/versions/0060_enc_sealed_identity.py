"""Personal data encrypted at rest, part 1: the birthday and the email, phone and card
identifiers are sealed (crm/pii.py) and found through blind indexes; existing rows are
sealed here, in batches, with the app's own key ring.

customers.birthday -> birthday_sealed, with birth_year and birth_month in the clear
(segments) and birthday_index (duplicate blocking). customer_identifiers.value ->
lookup (the blind index of an email, phone or card; a shop or till id as it is), sealed,
and fragment (the blind index of a phone's end or an email's start).

Revision ID: 0060
Revises: 0011
Create Date: 2026-12-02
"""
import warnings
from contextlib import contextmanager
from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0060"
down_revision = "0052"
branch_labels = None
depends_on = None

BATCH = 2000
PERSONAL = ("email", "phone", "card")


def _keyring():
    from crm import pii

    return pii.keyring()


def _fragment(ring, kind, value):
    from crm.identifiers import NORMALIZATION_VERSION

    if kind == "phone":
        return ring.index("fragment.phone_end", value[-7:], NORMALIZATION_VERSION, 8)
    if kind == "email":
        return ring.index("fragment.email_start", value[:5], NORMALIZATION_VERSION, 8)
    return None


def _batches(conn, query):
    """Rows of ``query`` (its first column the id, ``:after`` its bound), BATCH at a time."""
    after = 0
    while True:
        rows = conn.execute(sa.text(query), {"after": after, "n": BATCH}).all()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


@contextmanager
def _batch(table):
    """A batch copy of ``table`` on SQLite. Its foreign key makes Alembic reflect
    ``customers`` too, whose expression indexes it cannot read: that table is not copied,
    so the warning says nothing here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
        with op.batch_alter_table(table) as batch:
            yield batch


def _drop_column(table, column):
    """ALTER TABLE ... DROP COLUMN on both databases (no batch copy on SQLite)."""
    op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


def upgrade():
    from crm.identifiers import NORMALIZATION_VERSION

    ring = _keyring()
    conn = op.get_bind()
    # customers: plain ALTER TABLE (SQLite >= 3.35 drops columns itself), so that its
    # expression indexes (names in lower case) are not lost to a batch copy.
    op.add_column("customers", sa.Column("birthday_sealed", sa.Text(), nullable=True))
    op.add_column("customers", sa.Column("birth_year", sa.SmallInteger(), nullable=True))
    op.add_column("customers", sa.Column("birth_month", sa.SmallInteger(), nullable=True))
    op.add_column("customers", sa.Column("birthday_index", sa.String(24), nullable=True))
    for rows in _batches(conn, "SELECT id, birthday FROM customers WHERE id > :after "
                               "AND birthday IS NOT NULL ORDER BY id LIMIT :n"):
        values = []
        for cid, birthday in rows:
            day = birthday if isinstance(birthday, date) else date.fromisoformat(birthday)
            values.append({
                "i": cid, "s": ring.seal("customers", "birthday_sealed", cid, day.isoformat()),
                "y": day.year, "m": day.month,
                "x": ring.index("fragment.birthday", day.isoformat(), NORMALIZATION_VERSION, 8)})
        conn.execute(sa.text("UPDATE customers SET birthday_sealed = :s, birth_year = :y, "
                             "birth_month = :m, birthday_index = :x WHERE id = :i"), values)
    op.drop_index("ix_customers_birthday", "customers")
    _drop_column("customers", "birthday")
    op.create_index("ix_customers_birthday_index", "customers", ["birthday_index"])

    op.drop_index("ix_customer_identifiers_email_start", "customer_identifiers")
    op.drop_index("ix_customer_identifiers_phone_end", "customer_identifiers")
    with _batch("customer_identifiers") as batch:
        batch.add_column(sa.Column("lookup", sa.String(320), nullable=True))
        batch.add_column(sa.Column("sealed", sa.Text(), nullable=True))
        batch.add_column(sa.Column("fragment", sa.String(24), nullable=True))
    for rows in _batches(conn, "SELECT id, kind, value FROM customer_identifiers "
                               "WHERE id > :after ORDER BY id LIMIT :n"):
        values = []
        for iid, kind, value in rows:
            personal = kind in PERSONAL
            values.append({
                "i": iid,
                "l": ring.index(kind, value, NORMALIZATION_VERSION) if personal else value,
                "s": ring.seal("customer_identifiers", "sealed", iid, value) if personal
                else None,
                "f": _fragment(ring, kind, value)})
        conn.execute(sa.text("UPDATE customer_identifiers SET lookup = :l, sealed = :s, "
                             "fragment = :f WHERE id = :i"), values)
    with _batch("customer_identifiers") as batch:
        batch.drop_constraint("uq_customer_identifiers_kind_value", type_="unique")
        batch.drop_column("value")
        batch.alter_column("lookup", existing_type=sa.String(320), nullable=False)
        batch.create_unique_constraint("uq_customer_identifiers_kind_lookup",
                                       ["kind", "lookup"])
        batch.create_index("ix_customer_identifiers_fragment", ["kind", "fragment"])


def downgrade():
    ring = _keyring()
    conn = op.get_bind()
    with _batch("customer_identifiers") as batch:
        batch.add_column(sa.Column("value", sa.String(320), nullable=True))
    for rows in _batches(conn, "SELECT id, kind, lookup, sealed FROM customer_identifiers "
                               "WHERE id > :after ORDER BY id LIMIT :n"):
        conn.execute(sa.text("UPDATE customer_identifiers SET value = :v WHERE id = :i"), [
            {"i": iid, "v": ring.open("customer_identifiers", "sealed", iid, sealed)
             if sealed is not None else lookup} for iid, _, lookup, sealed in rows])
    with _batch("customer_identifiers") as batch:
        batch.drop_index("ix_customer_identifiers_fragment")
        batch.drop_constraint("uq_customer_identifiers_kind_lookup", type_="unique")
        batch.drop_column("fragment")
        batch.drop_column("sealed")
        batch.drop_column("lookup")
        batch.alter_column("value", existing_type=sa.String(320), nullable=False)
        batch.create_unique_constraint("uq_customer_identifiers_kind_value", ["kind", "value"])
    op.execute("CREATE INDEX ix_customer_identifiers_phone_end ON customer_identifiers "
               "(substr(value, length(value) - 6)) WHERE kind = 'phone'")
    op.execute("CREATE INDEX ix_customer_identifiers_email_start ON customer_identifiers "
               "(substr(value, 1, 5)) WHERE kind = 'email'")

    op.add_column("customers", sa.Column("birthday", sa.Date(), nullable=True))
    for rows in _batches(conn, "SELECT id, birthday_sealed FROM customers WHERE id > :after "
                               "AND birthday_sealed IS NOT NULL ORDER BY id LIMIT :n"):
        conn.execute(sa.text("UPDATE customers SET birthday = :b WHERE id = :i"), [
            {"i": cid, "b": date.fromisoformat(
                ring.open("customers", "birthday_sealed", cid, sealed))}
            for cid, sealed in rows])
    op.drop_index("ix_customers_birthday_index", "customers")
    for column in ("birthday_index", "birth_month", "birth_year", "birthday_sealed"):
        _drop_column("customers", column)
    op.create_index("ix_customers_birthday", "customers", ["birthday"])
