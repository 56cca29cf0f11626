"""The points ledger's rules: pure functions on a member's account state, as
``loyalty/earning.py`` is for earning. No database here: ``loyalty/accounts.py`` loads
the state (locked) and saves the rows the rules append to it.

Every change is an ``Entry`` posted with the account's cached balances. Earned points are
``Lot``s; spending takes the lots closest to expiry first (then the oldest); a return
takes back what its purchase earned, first from that purchase's own lot. With
``allow_negative`` a shortfall becomes debt, which later earnings repay before they can
be spent; without it the shortfall is recorded as uncollected and the balance stays at
zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from crm.db import utcnow
from crm.errors import Conflict
from loyalty.models import Program


class InsufficientPoints(Conflict):
    slug, title = "insufficient-points", "Not enough points"


class MergedAway(Conflict):
    slug, title = "merged", "Customer merged"


@dataclass(slots=True)
class Lot:
    """Points earned together, spent and expired together. ``id`` is None until saved;
    ``loaded`` is (remaining, released) as read, which saving compares with."""

    id: int | None
    points: int
    remaining: int
    released: bool
    pending_until: datetime | None
    expires_at: datetime | None
    purchase_id: int | None
    loaded: tuple[int, bool] | None = None

    @property
    def changed(self) -> bool:
        return self.loaded is not None and self.loaded != (self.remaining, self.released)


@dataclass(slots=True)
class Entry:
    """A ledger row: ``points`` (spendable) and ``pending`` moved, and why."""

    kind: str
    cause: str
    points: int
    pending: int
    balance_after: int
    occurred_at: datetime
    purchase_id: int | None = None
    return_id: int | None = None
    lot: Lot | None = None
    reason: str | None = None
    actor: str | None = None


@dataclass(slots=True)
class Draw:
    """Points an entry took from a lot."""

    entry: Entry
    lot: Lot
    points: int


@dataclass(slots=True)
class Account:
    """A member's account as the rules see it: its cached balances, and (when loaded
    with them) its lots with points left, in spending order. ``added`` holds what the
    rules made since it was loaded or saved: new lots, entries and draws, in order."""

    customer_id: int
    balance: int
    pending: int
    lifetime: int
    tier_id: int | None
    tier_since: datetime | None
    downgrade_at: datetime | None
    birth_month: int | None = None
    lots: list[Lot] | None = None  # None: not loaded
    added: list[Lot | Entry | Draw] = field(default_factory=list)
    loaded: tuple[object, ...] = ()  # the balances and tier as read or last saved

    def snapshot(self) -> tuple[object, ...]:
        return (self.balance, self.pending, self.lifetime, self.tier_id, self.tier_since,
                self.downgrade_at)

    @property
    def changed(self) -> bool:
        return self.snapshot() != self.loaded

    def spending_order(self) -> list[Lot]:
        if self.lots is None:
            raise RuntimeError(f"account {self.customer_id} was loaded without its lots")
        self.lots.sort(key=_spending_key)
        return self.lots


def _spending_key(lot: Lot) -> tuple[bool, datetime | None, float]:
    never = lot.expires_at is None
    return never, None if never else lot.expires_at, lot.id or float("inf")


def _post(account: Account, kind: str, cause: str, *, points: int = 0, pending: int = 0,
          occurred_at: datetime | None = None, **fields: object) -> Entry:
    account.balance += points
    account.pending += pending
    entry = Entry(kind, cause, points, pending, account.balance, occurred_at or utcnow(),
                  **fields)
    account.added.append(entry)
    return entry


def _new_lot(account: Account, lot: Lot) -> Lot:
    account.added.append(lot)
    if account.lots is not None:
        account.lots.append(lot)
    return lot


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
    lot = _new_lot(account, Lot(None, points, points, released, pending_until,
                                expires_at(program, occurred_at), purchase_id))
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
    wait for the jobs; return its spendable lots in spending order. Settling twice finds
    nothing more to do."""
    now = now or utcnow()
    spendable = []
    for lot in account.spending_order():
        if not lot.released and lot.pending_until is not None and lot.pending_until <= now:
            release(account, lot)
        if lot.released and lot.remaining > 0 and lot.expires_at is not None \
                and lot.expires_at <= now:
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


def _draw(account: Account, entry: Entry, lots: list[Lot], points: int) -> int:
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
            account.added.append(Draw(entry, lot, taken))
    return left


def spend(account: Account, program: Program, points: int, *, kind: str, cause: str,
          purchase_id: int | None = None, actor: str | None = None,
          reason: str | None = None, occurred_at: datetime | None = None) -> Entry:
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
              return_row_id: int | None, occurred_at: datetime, actor: str | None,
              cause: str = "return") -> Clawback:
    """Take back ``points`` a purchase earned: from that purchase's lot first (pending
    or spendable), then from the rest of the balance, then as debt if allowed."""
    if points <= 0:
        return Clawback(0, 0)
    spendable = settle(account)
    own = [lot for lot in account.spending_order()
           if lot.purchase_id == purchase_id and lot.remaining > 0]
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
    entry = _post(account, "reverse", cause, points=-(from_balance + debt),
                  pending=-from_pending, purchase_id=purchase_id, return_id=return_row_id,
                  occurred_at=occurred_at, actor=actor)
    ordered = [lot for lot in own if lot.released] + [
        lot for lot in spendable if lot.purchase_id != purchase_id]
    _draw(account, entry, ordered, from_balance)
    account.lifetime -= points - uncollected
    return Clawback(points - uncollected, uncollected)


@dataclass
class Redemption:
    """What a purchase's redemption drew, for giving it back: each draw's points and lot
    (latest-expiring first), and the points given back by earlier returns."""

    draws: list[tuple[int, Lot]]
    restored: int


def restore(account: Account, program: Program, points: int, redemption: Redemption, *,
            purchase_id: int, return_row_id: int, occurred_at: datetime,
            actor: str | None) -> None:
    """Give back ``points`` that a purchase redeemed, into the member's lots they came
    from (latest-expiring first); the rest (spent on credit, or drawn from lots that
    have since gone to another record) comes back as a new lot. Debt is repaid first."""
    if points <= 0:
        return
    skip, left, touched = redemption.restored, points, []
    for drawn, lot in redemption.draws:
        room = drawn - min(skip, drawn)
        skip = max(0, skip - drawn)
        put = min(room, left)
        if put:
            lot.remaining += put
            left -= put
            touched.append(lot)
    lot = None
    if left > 0:
        lot = _new_lot(account, Lot(None, left, left, True, None,
                                    expires_at(program, utcnow()), purchase_id))
        touched.append(lot)
    if account.balance < 0:
        _repay_debt(account, touched)
    _post(account, "restore", "return", points=points, purchase_id=purchase_id,
          return_id=return_row_id, occurred_at=occurred_at, actor=actor, lot=lot)


def adjust(account: Account, program: Program, points: int, *, reason: str, actor: str,
           cause: str = "admin") -> Entry | Lot | None:
    """An administrator's correction: a positive one is a new lot, a negative one is
    spent like a redemption."""
    if points > 0:
        return earn(account, program, points, cause=cause, kind="adjust",
                    occurred_at=utcnow(), actor=actor, reason=reason)
    return spend(account, program, -points, kind="adjust", cause=cause, actor=actor,
                 reason=reason)


def transfer(source: Account, target: Account, *, points: int | None = None,
             pending: int | None = None, lifetime: int | None = None,
             reason: str) -> None:
    """Move points between two members' accounts (a merge, or its undoing) as a pair of
    ``transfer`` rows. By default everything the source holds moves, debt included; the
    lots have been moved by the caller (and are among the target's lots)."""
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
