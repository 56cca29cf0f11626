"""The points ledger: the one place where balances change.

Every change is a ``LedgerEntry`` written by ``_post`` together with the cached balances on
the locked ``Account`` row. Earned points are lots; spending takes the lots closest to
expiry first (then the oldest); a return takes back what its purchase earned, first from
that purchase's own lot. With ``allow_negative`` a shortfall becomes debt, which later
earnings repay before they can be spent; without it the shortfall is recorded as
uncollected and the balance stays at zero.

Two ways to hold an account, one set of rules: ``lock_account`` gives the ORM row, and
what changes goes through the session; ``open_account`` (the till's sale, the hot path)
gives the same row as a detached object carrying a ``Batch``, which collects the lots,
ledger rows and draws the rules make and writes them, with the account, in a few
hand-written statements (``Batch.write``). A batch account is for earning and spending;
returns, merges and jobs use ``lock_account``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import case, func, select

from crm import signals
from crm.db import db, insert_ignoring_conflicts, utcnow
from crm.errors import Conflict
from crm.models import Customer
from crm.sql import Answer, Sql, as_date, as_time
from loyalty.models import Account, LedgerEntry, Lot, LotDraw, Program


class InsufficientPoints(Conflict):
    slug, title = "insufficient-points", "Not enough points"


class MergedAway(Conflict):
    slug, title = "merged", "Customer merged"


def lock_account(customer_id: int, merged_ok: bool = False) -> Account:
    """The member's account, made if missing, locked until the transaction ends
    (SELECT ... FOR UPDATE on PostgreSQL; on SQLite the write transaction began with
    BEGIN IMMEDIATE and so holds the database's write lock). A customer merged into
    another meanwhile is a 409 (a retry finds the survivor), so that no point lands on a
    record that a merge has just emptied."""
    stmt = (select(Account, Customer.merged_into_id)
            .join(Customer, Customer.id == Account.customer_id)
            .where(Account.customer_id == customer_id)
            .with_for_update(of=Account).execution_options(populate_existing=True))
    row = db.session.execute(stmt).first()
    if row is None:
        db.session.execute(
            insert_ignoring_conflicts(Account.__table__, "customer_id")
            .values(customer_id=customer_id, balance=0, pending=0, lifetime=0,
                    updated_at=utcnow())
        )
        row = db.session.execute(stmt).first()
    account, merged_into = row
    if merged_into is not None and not merged_ok:
        raise _merged(customer_id, merged_into)
    return account


def _merged(customer_id: int, merged_into: int) -> MergedAway:
    return MergedAway(f"Customer {customer_id} has just been merged into {merged_into}; "
                      "retry.", merged_into=merged_into)


_LOCK = """SELECT a.balance, a.pending, a.lifetime, a.tier_id, a.tier_since, a.downgrade_at,
       c.merged_into_id, c.birthday
  FROM loyalty_accounts a JOIN customers c ON c.id = a.customer_id
 WHERE a.customer_id = ? FOR UPDATE OF a"""
_LOTS = """SELECT id, points, remaining, released, pending_until, expires_at, purchase_id
  FROM loyalty_lots WHERE customer_id = ? AND remaining > 0
 ORDER BY expires_at IS NULL, expires_at, id"""
_ENTRY = """INSERT INTO loyalty_ledger (customer_id, kind, cause, points, pending, balance_after,
    purchase_id, return_id, lot_id, reason, actor, occurred_at, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_MAKE = """INSERT INTO loyalty_accounts (customer_id, balance, pending, lifetime, updated_at)
VALUES (?, 0, 0, 0, ?) ON CONFLICT (customer_id) DO NOTHING"""


class Batch:
    """What a change to one member's points adds and alters, written in one go."""

    def __init__(self, sql: Sql, account: Account, lots: Answer | None = None) -> None:
        self.sql, self.account, self.asked = sql, account, lots
        self.opened: list[tuple[Lot, int, bool]] = []  # lots read, as they were read
        self.lots: list[Lot] = []
        self.entries: list[LedgerEntry] = []
        self.draws: list[LotDraw] = []

    def keep(self, row: Lot | LedgerEntry | LotDraw) -> None:
        {Lot: self.lots, LedgerEntry: self.entries, LotDraw: self.draws}[type(row)].append(row)

    def open_lots(self) -> list[Lot]:
        """The member's lots with points left, in spending order (as ``settle`` reads
        them through the session). Read once: later changes are the batch's own."""
        if self.opened:
            raise RuntimeError("a batch reads its account's lots once")
        asked, self.asked = self.asked, None
        rows = (asked or self.sql.ask(_LOTS, (self.account.customer_id,))).all()
        lots = []
        for lot_id, points, remaining, released, pending_until, expires, purchase_id in rows:
            lot = Lot(id=lot_id, customer_id=self.account.customer_id, points=points,
                      remaining=remaining, released=bool(released),
                      pending_until=as_time(pending_until), expires_at=as_time(expires),
                      purchase_id=purchase_id)
            lots.append(lot)
            self.opened.append((lot, remaining, bool(released)))
        return lots

    def write(self) -> None:
        """Write the new lots (their ids come back), the lots that changed, the ledger
        rows (with ids only where draws need them), the draws and the account."""
        sql, now = self.sql, utcnow()
        new_ids = [sql.ask(
            """INSERT INTO loyalty_lots (customer_id, points, remaining, released,
               pending_until, expires_at, purchase_id, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            (lot.customer_id, lot.points, lot.remaining, lot.released, lot.pending_until,
             lot.expires_at, lot.purchase_id, now)) for lot in self.lots]
        changed = [lot for lot, remaining, released in self.opened
                   if (lot.remaining, lot.released) != (remaining, released)]
        sql.many_later("UPDATE loyalty_lots SET remaining = ?, released = ? WHERE id = ?",
                       [(lot.remaining, lot.released, lot.id) for lot in changed])
        for lot, asked in zip(self.lots, new_ids, strict=True):
            lot.id = asked.one()[0]
        drawn = {id(draw.entry) for draw in self.draws}
        for entry in self.entries:
            values = (entry.customer_id, entry.kind, entry.cause, entry.points, entry.pending,
                      entry.balance_after, entry.purchase_id, entry.return_id,
                      entry.lot.id if entry.lot is not None else None, entry.reason,
                      entry.actor, entry.occurred_at, now)
            if id(entry) in drawn:  # its draws need its id
                entry.id = sql.one(_ENTRY + " RETURNING id", values)[0]
            else:
                sql.later(_ENTRY, values)
        sql.many_later(
            "INSERT INTO loyalty_lot_draws (entry_id, lot_id, points) VALUES (?, ?, ?)",
            [(draw.entry.id, draw.lot.id, draw.points) for draw in self.draws])
        self.lots, self.entries, self.draws = [], [], []
        self.opened = [(lot, lot.remaining, lot.released) for lot, _, _ in self.opened]
        self.write_account()

    def write_account(self) -> None:
        a = self.account
        self.sql.later(
            """UPDATE loyalty_accounts SET balance = ?, pending = ?, lifetime = ?, tier_id = ?,
               tier_since = ?, downgrade_at = ?, updated_at = ? WHERE customer_id = ?""",
            (a.balance, a.pending, a.lifetime, a.tier_id, a.tier_since, a.downgrade_at,
             utcnow(), a.customer_id))


def open_account(sql: Sql, customer_id: int,
                 spending: bool = False) -> tuple[Account, date | None]:
    """The member's account (made if missing) and birthday, locked as ``lock_account``
    locks it, detached from the session with a ``Batch`` to collect its changes. About
    to spend: its lots are read with the lock (in one round trip on PostgreSQL)."""
    locked = sql.ask(_LOCK, (customer_id,))
    lots = sql.ask(_LOTS, (customer_id,)) if spending else None
    row = locked.one()
    if row is None:
        sql.execute(_MAKE, (customer_id, utcnow()))
        row, lots = sql.one(_LOCK, (customer_id,)), None
    balance, pending, lifetime, tier_id, tier_since, downgrade_at, merged_into, birthday = row
    if merged_into is not None:
        raise _merged(customer_id, merged_into)
    account = Account(customer_id=customer_id, balance=balance, pending=pending,
                      lifetime=lifetime, tier_id=tier_id, tier_since=as_time(tier_since),
                      downgrade_at=as_time(downgrade_at))
    account.batch = Batch(sql, account, lots)
    return account, as_date(birthday)


def _keep(account: Account, row: Lot | LedgerEntry | LotDraw) -> None:
    batch = getattr(account, "batch", None)
    if batch is None:
        db.session.add(row)
    else:
        batch.keep(row)


def _post(account: Account, kind: str, cause: str, *, points: int = 0, pending: int = 0,
          occurred_at: datetime | None = None, **fields: object) -> LedgerEntry:
    account.balance += points
    account.pending += pending
    entry = LedgerEntry(customer_id=account.customer_id, kind=kind, cause=cause,
                        points=points, pending=pending, balance_after=account.balance,
                        occurred_at=occurred_at or utcnow(), **fields)
    _keep(account, entry)
    signals.points_changed.send(current_app._get_current_object(), customer_id=account.customer_id, kind=kind, cause=cause, points=points, pending=pending, balance_after=account.balance, purchase_id=fields.get("purchase_id"))  # noqa: E501
    return entry


def _repay_debt(account: Account, lots: list[Lot]) -> None:
    """Points arriving while the balance is negative first cover the debt."""
    debt = -account.balance
    for lot in lots:
        if debt <= 0:
            break
        taken = min(lot.remaining, debt)
        lot.remaining -= taken
        debt -= taken


def expires_at(program: Program, occurred_at: datetime) -> datetime | None:
    return occurred_at + timedelta(days=program.expiry_days) if program.expiry_days else None


def earn(account: Account, program: Program, points: int, *, cause: str, kind: str = "earn",
         occurred_at: datetime, purchase_id: int | None = None, actor: str | None = None,
         reason: str | None = None, now: datetime | None = None) -> Lot | None:
    """Add a lot of ``points`` (pending for the program's pending days after
    ``occurred_at``), with its ledger row."""
    if points <= 0:
        return None
    now = now or utcnow()
    pending_until = (occurred_at + timedelta(days=program.pending_days)
                     if program.pending_days and kind == "earn" else None)
    released = pending_until is None or pending_until <= now
    lot = Lot(customer_id=account.customer_id, points=points, remaining=points,
              released=released, pending_until=pending_until,
              expires_at=expires_at(program, occurred_at), purchase_id=purchase_id)
    _keep(account, lot)
    account.lifetime += points
    if released:
        _repay_debt(account, [lot])
        _post(account, kind, cause, points=points, occurred_at=occurred_at,
              purchase_id=purchase_id, lot=lot, actor=actor, reason=reason)
    else:
        _post(account, "pending", cause, pending=points, occurred_at=occurred_at,
              purchase_id=purchase_id, lot=lot, actor=actor, reason=reason)
    return lot


def settle(account: Account, now: datetime | None = None) -> list[Lot]:
    """Release the account's due pending lots and expire its due lots now, rather than
    wait for the jobs; return its spendable lots in spending order."""
    now = now or utcnow()
    batch = getattr(account, "batch", None)
    lots = batch.open_lots() if batch is not None else list(db.session.scalars(
        select(Lot).where(Lot.customer_id == account.customer_id, Lot.remaining > 0)
        .order_by(Lot.expires_at.is_(None), Lot.expires_at, Lot.id)
    ))
    spendable = []
    for lot in lots:
        if not lot.released and lot.pending_until is not None and lot.pending_until <= now:
            release(account, lot)
        if lot.released and lot.expires_at is not None and lot.expires_at <= now:
            expire(account, lot)
        elif lot.released and lot.remaining > 0:
            spendable.append(lot)
    return spendable


def release(account: Account, lot: Lot) -> None:
    """Pending points become spendable."""
    lot.released = True
    points = lot.remaining
    if not points:
        return
    _repay_debt(account, [lot])
    _post(account, "release", "purchase", points=points, pending=-points, lot=lot,
          purchase_id=lot.purchase_id, actor="job:release")


def expire(account: Account, lot: Lot) -> None:
    """What is left of a lot past its expiry date expires."""
    points, lot.remaining = lot.remaining, 0
    _post(account, "expire", "expiry", points=-points, lot=lot, actor="job:expire")


def _draw(account: Account, entry: LedgerEntry, lots: list[Lot], points: int) -> int:
    """Take up to ``points`` from ``lots`` in order, recording each draw; return the
    points that the lots could not cover."""
    left = points
    for lot in lots:
        if left <= 0:
            break
        taken = min(lot.remaining, left)
        if taken:
            lot.remaining -= taken
            left -= taken
            _keep(account, LotDraw(entry=entry, lot=lot, points=taken))
    return left


def spend(account: Account, program: Program, points: int, *, kind: str, cause: str,
          purchase_id: int | None = None, actor: str | None = None,
          reason: str | None = None, occurred_at: datetime | None = None) -> LedgerEntry:
    """Spend ``points`` (oldest-expiring lots first). More than the balance is refused
    with 409 unless the program allows a negative balance."""
    lots = settle(account)
    if points > account.balance and not program.allow_negative:
        raise InsufficientPoints(
            f"The member has {max(account.balance, 0)} points; {points} were asked for.",
            balance=account.balance,
        )
    entry = _post(account, kind, cause, points=-points, purchase_id=purchase_id,
                  actor=actor, reason=reason, occurred_at=occurred_at)
    _draw(account, entry, lots, points)
    return entry


@dataclass
class Clawback:
    reversed: int  # taken back, including what became debt
    uncollected: int  # could not be taken back (negative balance not allowed)


def claw_back(account: Account, program: Program, points: int, *, purchase_id: int,
              return_row_id: int | None, occurred_at: datetime, actor: str | None) -> Clawback:
    """Take back ``points`` a purchase earned: from that purchase's lot first (pending
    or spendable), then from the rest of the balance, then as debt if allowed."""
    if points <= 0:
        return Clawback(0, 0)
    spendable = settle(account)
    own = db.session.scalars(select(Lot).where(
        Lot.purchase_id == purchase_id, Lot.customer_id == account.customer_id,
        Lot.remaining > 0)).all()
    from_pending = 0
    for lot in own:
        if not lot.released:
            taken = min(lot.remaining, points - from_pending)
            lot.remaining -= taken
            from_pending += taken
    left = points - from_pending
    from_balance = min(left, max(account.balance, 0))
    debt = left - from_balance if program.allow_negative else 0
    uncollected = left - from_balance - debt
    entry = _post(account, "reverse", "return", points=-(from_balance + debt),
                  pending=-from_pending, purchase_id=purchase_id, return_id=return_row_id,
                  occurred_at=occurred_at, actor=actor)
    ordered = [lot for lot in own if lot.released] + [
        lot for lot in spendable if lot.purchase_id != purchase_id]
    _draw(account, entry, ordered, from_balance)
    account.lifetime -= points - uncollected
    return Clawback(points - uncollected, uncollected)


def restore(account: Account, program: Program, points: int, *, purchase_id: int,
            return_row_id: int, occurred_at: datetime, actor: str | None) -> None:
    """Give back ``points`` that a purchase redeemed, into the member's lots they came
    from (latest-expiring first); the rest (spent on credit, or drawn from lots that
    have since gone to another record) comes back as a new lot. Debt is repaid first."""
    if points <= 0:
        return
    draws = db.session.execute(
        select(LotDraw, Lot).join(Lot, Lot.id == LotDraw.lot_id)
        .join(LedgerEntry, LedgerEntry.id == LotDraw.entry_id)
        .where(LedgerEntry.purchase_id == purchase_id, LedgerEntry.kind == "redeem",
               Lot.customer_id == account.customer_id)
        .order_by(Lot.expires_at.is_(None).desc(), Lot.expires_at.desc(), Lot.id.desc())
    ).all()
    returned = db.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
            LedgerEntry.purchase_id == purchase_id, LedgerEntry.kind == "restore"))
    skip, left, touched = returned, points, []
    for draw, lot in draws:
        room = draw.points - min(skip, draw.points)
        skip = max(0, skip - draw.points)
        put = min(room, left)
        if put:
            lot.remaining += put
            left -= put
            touched.append(lot)
    lot = None
    if left > 0:
        lot = Lot(customer_id=account.customer_id, points=left, remaining=left, released=True,
                  pending_until=None, expires_at=expires_at(program, utcnow()),
                  purchase_id=purchase_id)
        _keep(account, lot)
        touched.append(lot)
    if account.balance < 0:
        _repay_debt(account, touched)
    _post(account, "restore", "return", points=points, purchase_id=purchase_id,
          return_id=return_row_id, occurred_at=occurred_at, actor=actor, lot=lot)


def adjust(account: Account, program: Program, points: int, *, reason: str,
           actor: str) -> LedgerEntry | Lot | None:
    """An administrator's correction: a positive one is a new lot, a negative one is
    spent like a redemption."""
    if points > 0:
        return earn(account, program, points, cause="admin", kind="adjust",
                    occurred_at=utcnow(), actor=actor, reason=reason)
    return spend(account, program, -points, kind="adjust", cause="admin", actor=actor,
                 reason=reason)


def verify() -> list[dict[str, int]]:
    """Every account whose cached balances differ from its ledger or its lots."""
    ledger = (select(LedgerEntry.customer_id,
                     func.sum(LedgerEntry.points).label("points"),
                     func.sum(LedgerEntry.pending).label("pending"))
              .group_by(LedgerEntry.customer_id).subquery())
    lots = (select(Lot.customer_id,
                   func.sum(case((Lot.released, Lot.remaining), else_=0)).label("spendable"),
                   func.sum(case((Lot.released, 0), else_=Lot.remaining)).label("locked"))
            .group_by(Lot.customer_id).subquery())
    rows = db.session.execute(
        select(Account.customer_id, Account.balance, Account.pending,
               func.coalesce(ledger.c.points, 0), func.coalesce(ledger.c.pending, 0),
               func.coalesce(lots.c.spendable, 0), func.coalesce(lots.c.locked, 0))
        .outerjoin(ledger, ledger.c.customer_id == Account.customer_id)
        .outerjoin(lots, lots.c.customer_id == Account.customer_id)
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
        .where(LedgerEntry.customer_id.not_in(select(Account.customer_id))))
    problems += [{"customer_id": cid, "missing_account": 1} for cid in orphans]
    return problems


def transfer(source: Account, target: Account, *, points: int | None = None,
             pending: int | None = None, lifetime: int | None = None,
             reason: str) -> None:
    """Move points between two members' accounts (a merge, or its undoing) as a pair of
    ``transfer`` rows. By default everything the source holds moves, debt included; the
    lots have been moved by the caller."""
    points = source.balance if points is None else points
    pending = source.pending if pending is None else pending
    lifetime = source.lifetime if lifetime is None else lifetime
    if not (points or pending or lifetime):
        return
    _post(source, "transfer", "merge", points=-points, pending=-pending, reason=reason,
          actor="merge")
    if points < 0:  # debt moves too: the target's own lots cover it first
        lots = settle(target)
        entry = _post(target, "transfer", "merge", points=points, pending=pending,
                      reason=reason, actor="merge")
        _draw(target, entry, lots, min(-points, sum(lot.remaining for lot in lots)))
    else:
        if target.balance < 0:
            _repay_debt(target, settle(target))
        _post(target, "transfer", "merge", points=points, pending=pending, reason=reason,
              actor="merge")
    source.lifetime -= lifetime
    target.lifetime += lifetime
