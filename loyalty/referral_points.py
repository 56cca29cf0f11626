"""Every ledger call of the referral program, in one place: a reward is an ``adjust`` row
with cause ``referral`` (spendable at once: it is written after the hold), and taking
one back spends it again, as far as the balance allows (or into debt where the program
allows a negative balance), as a return claws back a purchase's points. Both go through
the account store like every change of points."""

from __future__ import annotations

from crm.db import utcnow
from crm.sql import Sql
from loyalty import accounts, ledger, settings

ACTOR = "referrals"


def give(customer_id: int, points: int, referral_id: int) -> int:
    """Credit a referral reward; the points given."""
    if points <= 0:
        return 0
    with Sql() as sql:
        account = accounts.load(sql, customer_id)
        ledger.earn(account, settings.program(), points, cause="referral", kind="adjust",
                    occurred_at=utcnow(), actor=ACTOR, reason=f"referral {referral_id}")
        accounts.save(sql, account)
    return points


def take_back(customer_id: int, points: int, referral_id: int) -> int:
    """Reverse a referral reward (the customer may have been merged: the points followed
    them to the survivor, whose id is given); the points taken back."""
    if points <= 0:
        return 0
    program = settings.program()
    with Sql() as sql:
        account = accounts.load(sql, customer_id, lots=True, merged_ok=True)
        taken = points if program.allow_negative else min(points, max(account.balance, 0))
        if taken:
            ledger.spend(account, program, taken, kind="reverse", cause="referral",
                         actor=ACTOR, reason=f"referral {referral_id} reversed")
            accounts.save(sql, account)
    return taken
