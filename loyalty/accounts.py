"""The one store of every change of points: it loads a member's account (locked, with
the lots the operation needs) as a plain ``ledger.Account`` and saves what the ledger's
rules added to it, in a few hand-written statements (crm/sql.py). The till's sale,
returns, claims, adjustments, reward claims, merges and the jobs all go through here.

Locking: ``SELECT ... FOR UPDATE`` of the account row on PostgreSQL; on SQLite the write
transaction began with ``BEGIN IMMEDIATE`` and holds the database's write lock. Several
accounts are locked in the order of their ids, so two operations never deadlock.

Saving writes the rows in the order the rules made them, so that a new entry's lot and a
draw's entry are the rows inserted last into their tables: their ids are taken there, in
SQL (``currval`` of the table's sequence on PostgreSQL, the largest id on SQLite, where
the write lock is ours), and no id has to travel back to Python first. That is one round
trip for the whole save on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import current_app
from sqlalchemy import JSON, BigInteger, bindparam, case, cast, func, literal_column, select

from crm import signals
from crm.db import UTCDateTime, db, utcnow
from crm.models import Customer
from crm.sql import Sql, Statement, as_time, insert_for
from loyalty.ledger import Account, Draw, Entry, Lot, MergedAway, Redemption
from loyalty.models import Account as AccountRow
from loyalty.models import LedgerEntry, LotDraw
from loyalty.models import Lot as LotRow

_A, _C = AccountRow.__table__, Customer.__table__
_L, _E, _D = LotRow.__table__, LedgerEntry.__table__, LotDraw.__table__
_LOT_COLUMNS = (_L.c.id, _L.c.points, _L.c.remaining, _L.c.released, _L.c.pending_until,
                _L.c.expires_at, _L.c.purchase_id)
_ACCOUNT_COLUMNS = (_A.c.customer_id, _A.c.balance, _A.c.pending, _A.c.lifetime,
                    _A.c.tier_id, _A.c.tier_since, _A.c.downgrade_at, _C.c.merged_into_id,
                    _C.c.birth_month)
_SPENDING_ORDER = (_L.c.expires_at.is_(None), _L.c.expires_at, _L.c.id)


def _ids_in(dialect: str, column: Any, name: str) -> Any:
    """``column IN`` the ids of a JSON list parameter (one parameter for any number)."""
    if dialect == "postgresql":
        values = func.json_array_elements_text(cast(bindparam(name), JSON)).table_valued(
            "value")
        return column.in_(select(cast(values.c.value, BigInteger)))
    return column.in_(select(literal_column("value")).select_from(
        func.json_each(bindparam(name))))


def _last_id(dialect: str, table: Any) -> Any:
    """The id of the row this transaction inserted last into ``table``."""
    if dialect == "postgresql":
        return func.currval(func.pg_get_serial_sequence(literal_column(f"'{table.name}'"),
                                                        literal_column("'id'")))
    return select(func.max(table.c.id)).scalar_subquery()


_LOCK = Statement(select(*_ACCOUNT_COLUMNS).select_from(_A.join(_C, _C.c.id == _A.c.customer_id))
                  .where(_A.c.customer_id == bindparam("customer_id"))
                  .with_for_update(of=_A))
_LOCK_MANY = Statement(lambda d: select(*_ACCOUNT_COLUMNS).select_from(
    _A.join(_C, _C.c.id == _A.c.customer_id)).where(_ids_in(d, _A.c.customer_id, "ids"))
    .order_by(_A.c.customer_id).with_for_update(of=_A))
_MAKE = Statement(lambda d: insert_for(d, _A).values(
    customer_id=bindparam("customer_id"), balance=0, pending=0, lifetime=0,
    updated_at=bindparam("now", type_=UTCDateTime())
).on_conflict_do_nothing(index_elements=["customer_id"]))
_MAKE_MANY = Statement(lambda d: insert_for(d, _A).from_select(
    ["customer_id", "balance", "pending", "lifetime", "updated_at"],
    select(_C.c.id, literal_column("0"), literal_column("0"), literal_column("0"),
           bindparam("now", type_=UTCDateTime())).where(_ids_in(d, _C.c.id, "ids"))
).on_conflict_do_nothing(index_elements=["customer_id"]))
# ``remaining > 0`` written in the statement, not bound: only then may SQLite use the
# partial index (a bound value makes it prepare the statement again on every run, three
# times the cost) and PostgreSQL's generic plan.
_LOTS = Statement(select(*_LOT_COLUMNS).where(
    _L.c.customer_id == bindparam("customer_id"), _L.c.remaining > literal_column("0"))
    .order_by(*_SPENDING_ORDER))
_LOTS_BY_ID = Statement(lambda d: select(_L.c.customer_id, *_LOT_COLUMNS).where(
    _ids_in(d, _L.c.id, "ids")).order_by(_L.c.id))
_REDEEMED = Statement(
    select(_D.c.points, *_LOT_COLUMNS)
    .select_from(_D.join(_L, _L.c.id == _D.c.lot_id).join(_E, _E.c.id == _D.c.entry_id))
    .where(_E.c.purchase_id == bindparam("purchase_id"), _E.c.kind == "redeem",
           _L.c.customer_id == bindparam("customer_id"))
    .order_by(_L.c.expires_at.is_(None).desc(), _L.c.expires_at.desc(), _L.c.id.desc()))
_RESTORED = Statement(select(func.coalesce(func.sum(_E.c.points), 0)).where(
    _E.c.purchase_id == bindparam("purchase_id"), _E.c.kind == "restore"))

_LOT_FIELDS = ["customer_id", "points", "remaining", "released", "pending_until",
               "expires_at", "purchase_id", "created_at"]
_ENTRY_FIELDS = ["customer_id", "kind", "cause", "points", "pending", "balance_after",
                 "purchase_id", "return_id", "reason", "actor", "occurred_at", "created_at"]
_INSERT_LOT = Statement(_L.insert().inline(), columns=_LOT_FIELDS)
_INSERT_ENTRY = Statement(_E.insert().inline(), columns=[*_ENTRY_FIELDS, "lot_id"])
_INSERT_ENTRY_OF_NEW_LOT = Statement(lambda d: _E.insert().inline().values(lot_id=_last_id(d, _L)),
                                     columns=_ENTRY_FIELDS)
_INSERT_DRAW = Statement(lambda d: _D.insert().inline().values(entry_id=_last_id(d, _E)),
                         columns=["lot_id", "points"])
_INSERT_DRAW_OF_NEW_LOT = Statement(lambda d: _D.insert().inline().values(
    entry_id=_last_id(d, _E), lot_id=_last_id(d, _L)), columns=["points"])
_UPDATE_LOT = Statement(_L.update().where(_L.c.id == bindparam("lot_id")),
                        columns=["remaining", "released"])
_UPDATE_ACCOUNT = Statement(
    _A.update().where(_A.c.customer_id == bindparam("account_id")),
    columns=["balance", "pending", "lifetime", "tier_id", "tier_since", "downgrade_at",
             "updated_at"])


def _account(row: tuple[Any, ...], merged_ok: bool) -> Account:
    cid, balance, pending, lifetime, tier_id, tier_since, downgrade_at, merged, birth_month = row
    if merged is not None and not merged_ok:
        raise MergedAway(f"Customer {cid} has just been merged into {merged}; retry.",
                         merged_into=merged)
    account = Account(cid, balance, pending, lifetime, tier_id, as_time(tier_since),
                      as_time(downgrade_at), birth_month)
    account.loaded = account.snapshot()
    return account


def _lot(row: tuple[Any, ...]) -> Lot:
    lot_id, points, remaining, released, pending_until, expires, purchase_id = row
    return Lot(lot_id, points, remaining, bool(released), as_time(pending_until),
               as_time(expires), purchase_id, (remaining, bool(released)))


def load(sql: Sql, customer_id: int, *, lots: bool = False,
         merged_ok: bool = False) -> Account:
    """The member's account (made if missing), locked until the transaction ends, with
    its lots that have points left when ``lots``. A customer merged into another
    meanwhile is a 409 (a retry finds the survivor), so that no point lands on a record
    that a merge has just emptied; merges themselves pass ``merged_ok``."""
    params = {"customer_id": customer_id}
    locked = sql.run(_LOCK, params)
    asked = sql.run(_LOTS, params) if lots else None  # with the lock: one round trip
    row = locked.one()
    if row is None:
        sql.run(_MAKE, {"customer_id": customer_id, "now": utcnow()})
        row = sql.run(_LOCK, params).one()
        if row is None:
            raise LookupError(f"no customer has the id {customer_id}")
    account = _account(row, merged_ok)
    if lots:
        account.lots = [_lot(r) for r in asked.all()]
    return account


def load_many(sql: Sql, customer_ids: Iterable[int], *,
              lot_ids: Iterable[int] = ()) -> dict[int, Account]:
    """Several members' accounts (made if missing), locked in the order of their ids,
    each with those of ``lot_ids`` that are its own (whatever their points)."""
    ids, wanted = sorted(set(customer_ids)), sorted(set(lot_ids))
    sql.run(_MAKE_MANY, {"ids": ids, "now": utcnow()})
    accounts = {row[0]: _account(row, merged_ok=True)
                for row in sql.run(_LOCK_MANY, {"ids": ids}).all()}
    if wanted:
        for account in accounts.values():
            account.lots = []
        for row in sql.run(_LOTS_BY_ID, {"ids": wanted}).all():
            if row[0] in accounts:
                accounts[row[0]].lots.append(_lot(row[1:]))
    return accounts


def load_redemption(sql: Sql, account: Account, purchase_id: int) -> Redemption:
    """What ``purchase_id``'s redemption drew from ``account``'s lots (the lots joined
    to those the account holds already), and what returns have given back since."""
    params = {"purchase_id": purchase_id, "customer_id": account.customer_id}
    drawn, restored = sql.run(_REDEEMED, params), sql.run(_RESTORED, params)
    held = {lot.id: lot for lot in account.lots or ()}
    draws = []
    for points, *lot_row in drawn.all():
        lot = held.get(lot_row[0])
        if lot is None:
            lot = held[lot_row[0]] = _lot(tuple(lot_row))
            if account.lots is not None:
                account.lots.append(lot)
        draws.append((points, lot))
    return Redemption(draws, int(restored.scalar()))


def save(sql: Sql, *accounts: Account) -> None:
    """Write what the rules added to ``accounts`` since they were loaded (or last saved):
    the new lots, entries and draws in the order they were made, the lots that changed,
    and the accounts' balances and tier."""
    now = utcnow()
    points_changed = signals.points_changed
    for account in accounts:
        cid, last_lot, last_entry = account.customer_id, None, None
        for row in account.added:
            if isinstance(row, Lot):
                sql.run(_INSERT_LOT, {
                    "customer_id": cid, "points": row.points, "remaining": row.remaining,
                    "released": row.released, "pending_until": row.pending_until,
                    "expires_at": row.expires_at, "purchase_id": row.purchase_id,
                    "created_at": now})
                last_lot = row
            elif isinstance(row, Entry):
                _insert_entry(sql, cid, row, last_lot, now)
                last_entry = row
            else:
                _insert_draw(sql, row, last_lot, last_entry)
        changed = [lot for lot in account.lots or () if lot.changed]
        sql.run_many(_UPDATE_LOT, [{"lot_id": lot.id, "remaining": lot.remaining,
                                    "released": lot.released} for lot in changed])
        for lot in changed:
            lot.loaded = (lot.remaining, lot.released)
        if account.changed:
            sql.run(_UPDATE_ACCOUNT, {
                "account_id": cid, "balance": account.balance, "pending": account.pending,
                "lifetime": account.lifetime, "tier_id": account.tier_id,
                "tier_since": account.tier_since, "downgrade_at": account.downgrade_at,
                "updated_at": now})
            account.loaded = account.snapshot()
        if points_changed.receivers:
            app = current_app._get_current_object()
            for row in account.added:
                if isinstance(row, Entry):
                    points_changed.send(app, customer_id=cid, kind=row.kind, cause=row.cause,
                                        points=row.points, pending=row.pending,
                                        balance_after=row.balance_after,
                                        purchase_id=row.purchase_id)
        account.added = []


def _insert_entry(sql: Sql, customer_id: int, entry: Entry, last_lot: Lot | None,
                  now: Any) -> None:
    values = {"customer_id": customer_id, "kind": entry.kind, "cause": entry.cause,
              "points": entry.points, "pending": entry.pending,
              "balance_after": entry.balance_after, "purchase_id": entry.purchase_id,
              "return_id": entry.return_id, "reason": entry.reason, "actor": entry.actor,
              "occurred_at": entry.occurred_at, "created_at": now}
    lot = entry.lot
    if lot is not None and lot.id is None:
        if lot is not last_lot:
            raise RuntimeError("an entry's new lot is the lot inserted just before it")
        sql.run(_INSERT_ENTRY_OF_NEW_LOT, values)
    else:
        sql.run(_INSERT_ENTRY, {**values, "lot_id": lot.id if lot else None})


def _insert_draw(sql: Sql, draw: Draw, last_lot: Lot | None, last_entry: Entry | None) -> None:
    if draw.entry is not last_entry:
        raise RuntimeError("a draw follows its entry")
    if draw.lot.id is not None:
        sql.run(_INSERT_DRAW, {"lot_id": draw.lot.id, "points": draw.points})
    elif draw.lot is last_lot:
        sql.run(_INSERT_DRAW_OF_NEW_LOT, {"points": draw.points})
    else:
        raise RuntimeError("a draw's new lot is the lot inserted last")


def verify() -> list[dict[str, int]]:
    """Every account whose cached balances differ from its ledger or its lots."""
    ledger = (select(LedgerEntry.customer_id,
                     func.sum(LedgerEntry.points).label("points"),
                     func.sum(LedgerEntry.pending).label("pending"))
              .group_by(LedgerEntry.customer_id).subquery())
    lots = (select(LotRow.customer_id,
                   func.sum(case((LotRow.released, LotRow.remaining), else_=0))
                   .label("spendable"),
                   func.sum(case((LotRow.released, 0), else_=LotRow.remaining))
                   .label("locked"))
            .group_by(LotRow.customer_id).subquery())
    rows = db.session.execute(
        select(AccountRow.customer_id, AccountRow.balance, AccountRow.pending,
               func.coalesce(ledger.c.points, 0), func.coalesce(ledger.c.pending, 0),
               func.coalesce(lots.c.spendable, 0), func.coalesce(lots.c.locked, 0))
        .outerjoin(ledger, ledger.c.customer_id == AccountRow.customer_id)
        .outerjoin(lots, lots.c.customer_id == AccountRow.customer_id)
    )
    problems = []
    for row in rows:  # sums of BIGINT are NUMERIC on PostgreSQL: back to int
        cid, balance, pending, l_points, l_pending, spendable, locked = map(int, row)
        if (balance, pending) != (l_points, l_pending) or \
                (max(balance, 0), pending) != (spendable, locked):
            problems.append({"customer_id": cid, "balance": balance, "pending": pending,
                             "ledger_balance": l_points, "ledger_pending": l_pending,
                             "lots_spendable": spendable, "lots_pending": locked})
    orphans = db.session.scalars(
        select(LedgerEntry.customer_id).distinct()
        .where(LedgerEntry.customer_id.not_in(select(AccountRow.customer_id))))
    problems += [{"customer_id": cid, "missing_account": 1} for cid in orphans]
    return problems

