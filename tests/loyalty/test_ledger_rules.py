"""The ledger's rules on plain account state, without a database: what each rule appends
and how it changes the balances and the lots."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from loyalty import ledger
from loyalty.ledger import Account, Draw, Entry, Lot

NOW = datetime.now(UTC)  # the rules settle against the present
PROGRAM = SimpleNamespace(pending_days=0, expiry_days=365, allow_negative=False,
                          point_value=Decimal("0.01"))


def account(*lots: Lot, balance: int | None = None) -> Account:
    spendable = sum(lot.remaining for lot in lots if lot.released)
    pending = sum(lot.remaining for lot in lots if not lot.released)
    state = Account(7, spendable if balance is None else balance, pending, spendable,
                    None, None, None, lots=list(lots))
    state.loaded = state.snapshot()
    return state


def lot(lot_id: int, points: int, *, expires_in: int | None = 100, released: bool = True,
        pending_for: int | None = None) -> Lot:
    return Lot(lot_id, points, points, released,
               NOW + timedelta(days=pending_for) if pending_for is not None else None,
               NOW + timedelta(days=expires_in) if expires_in is not None else None, None,
               (points, released))


def test_spending_takes_the_lots_closest_to_expiry_first_and_records_each_draw():
    late, soon, never = lot(1, 50, expires_in=300), lot(2, 30, expires_in=10), \
        lot(3, 40, expires_in=None)
    state = account(late, never, soon)
    entry = ledger.spend(state, PROGRAM, 60, kind="redeem", cause="purchase")
    assert (soon.remaining, late.remaining, never.remaining) == (0, 20, 40)
    assert state.balance == 60 and entry.balance_after == 60
    assert [type(row) for row in state.added] == [Entry, Draw, Draw]
    assert [(d.lot.id, d.points) for d in state.added[1:]] == [(2, 30), (1, 30)]
    assert state.changed and soon.changed and not never.changed


def test_more_than_the_balance_is_refused_and_changes_nothing():
    only = lot(1, 10)
    state = account(only)
    with pytest.raises(ledger.InsufficientPoints):
        ledger.spend(state, PROGRAM, 11, kind="redeem", cause="purchase")
    assert state.added == [] and only.remaining == 10 and not state.changed


def test_settling_releases_and_expires_what_is_due_once():
    due = lot(1, 25, released=False, pending_for=-1)
    gone = lot(2, 15, expires_in=-1)
    state = account(due, gone)
    assert state.pending == 25 and state.balance == 15
    spendable = ledger.settle(state, NOW)
    assert spendable == [due] and state.balance == 25 and state.pending == 0
    assert sorted(e.kind for e in state.added) == ["expire", "release"]
    ledger.settle(state, NOW)  # twice: nothing more to do
    assert len(state.added) == 2


def test_new_points_pay_off_debt_first():
    program = SimpleNamespace(**{**vars(PROGRAM), "allow_negative": True})
    state = account(balance=-30)
    made = ledger.earn(state, program, 100, cause="purchase", occurred_at=NOW, now=NOW)
    assert state.balance == 70 and made.remaining == 70 and state.lifetime == 100
    assert state.lots == [made] and state.added[0] is made


def test_claw_back_takes_the_purchases_own_pending_lot_first_then_the_balance():
    old = lot(1, 40)
    own = Lot(2, 30, 30, False, NOW + timedelta(days=5), NOW + timedelta(days=365), 9,
              (30, False))
    state = account(old, own)
    done = ledger.claw_back(state, PROGRAM, 50, purchase_id=9, return_row_id=None,
                            occurred_at=NOW, actor="till")
    assert (done.reversed, done.uncollected) == (50, 0)
    assert (own.remaining, old.remaining, state.pending, state.balance) == (0, 20, 0, 20)


def test_restore_gives_points_back_to_the_lots_they_came_from():
    spent = lot(1, 50)
    spent.remaining = 0
    state = account(spent, balance=0)
    redemption = ledger.Redemption(draws=[(50, spent)], restored=10)
    ledger.restore(state, PROGRAM, 30, redemption, purchase_id=9, return_row_id=3,
                   occurred_at=NOW, actor="till")
    assert spent.remaining == 30 and state.balance == 30
    ledger.restore(state, PROGRAM, 20, ledger.Redemption([(50, spent)], 40),
                   purchase_id=9, return_row_id=4, occurred_at=NOW, actor="till")
    assert spent.remaining == 40  # only 10 were left to give back there: 10 as a new lot
    assert [row.points for row in state.added if isinstance(row, Lot)] == [10]


def test_rules_need_the_lots_when_they_spend():
    state = Account(7, 100, 0, 100, None, None, None)  # loaded without its lots
    with pytest.raises(RuntimeError, match="without its lots"):
        ledger.spend(state, PROGRAM, 10, kind="redeem", cause="purchase")
