"""The referral program: personal codes, attribution of new customers, qualification by
the friend's first purchase, rewards after the hold, reversals, fraud rules, report.

A referral goes ``attributed`` (a new customer gave a member's code) -> ``qualified``
(their first purchase at or above the minimum, within ``qualify_days``) -> ``rewarded``
(both rewards written, by ``reward_due`` once the program's pending days have passed,
or with the sale itself when there are none). Or it is ``rejected`` at attribution
(the reason kept: ``existing_customer``, ``shared_identifier``, ``ring``), ``capped``
at qualification (the referrer reached a cap), or ``reversed`` (``returned``: the
qualifying purchase came back; ``merged``: the two records are one person). Rewards are
written exactly once: the move to ``rewarded`` is a conditional update, and only the
run that made it writes the points (``loyalty.referral_points`` holds every ledger
call). Suspicious patterns raise a security alert: several friends from one mailbox
(``referral_shared_address``), or a friend who is someone up the referrer's own chain
of referrals (``referral_ring``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from flask import current_app
from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from crm import signals
from crm.alerts import raise_alert
from crm.customers import get_customer
from crm.db import db, plus_days, utcnow
from crm.errors import Invalid, NotFound
from crm.models import Customer, CustomerIdentifier
from crm.money import amounts_to_minor, to_amount
from loyalty import coupons, referral_points, settings
from loyalty.models import Purchase
from loyalty.referral_models import Referral, ReferralCode, ReferralProgram

CODE_LENGTH = 8
SAME_ADDRESS_ALERT = 3  # friends from one mailbox before an alert
RING_DEPTH = 5  # how far up the referrer's chain a ring is looked for
REVENUE_DAYS = 90


# --- settings -----------------------------------------------------------------------

_snapshot: tuple[float, SimpleNamespace] | None = None


def program() -> ReferralProgram:
    row = db.session.get(ReferralProgram, 1)
    if row is None:
        row = ReferralProgram(id=1, enabled=False, referrer_points=0, friend_points=0,
                              min_first_purchase=0, qualify_days=30)
        db.session.add(row)
        db.session.flush()
    return row


def snapshot() -> SimpleNamespace:
    """The settings as of at most SETTINGS_CACHE_SECONDS ago (read by every sale)."""
    global _snapshot
    ttl = current_app.config["SETTINGS_CACHE_SECONDS"]
    if _snapshot is None or time.monotonic() - _snapshot[0] >= ttl:
        row = db.session.get(ReferralProgram, 1)
        plain = SimpleNamespace(**{c.key: getattr(row, c.key) for c in
                                   ReferralProgram.__table__.columns}) if row else \
            SimpleNamespace(enabled=False)
        _snapshot = (time.monotonic(), plain)
    return _snapshot[1]


def forget() -> None:
    global _snapshot
    _snapshot = None


def update_program(data: dict[str, Any]) -> ReferralProgram:
    data = amounts_to_minor(data, settings.program().currency, "min_first_purchase")
    if data.get("friend_offer_id") is not None:
        coupons.get_offer(data["friend_offer_id"])
    forget()
    row = program()
    for field, value in data.items():
        setattr(row, field, value)
    db.session.flush()
    return row


def program_answer(row: ReferralProgram) -> dict[str, Any]:
    answer = {c.key: getattr(row, c.key) for c in ReferralProgram.__table__.columns}
    answer["min_first_purchase"] = to_amount(row.min_first_purchase, settings.program().currency)
    return answer


# --- codes and links ------------------------------------------------------------------

def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def code_for(customer_id: int) -> str:
    """The member's personal code, made on first request (random, never derived from the
    id; a clash with an existing code, about one in 10^11, draws again)."""
    customer = get_customer(customer_id)
    if customer.merged_into_id is not None or customer.erased_at is not None:
        raise NotFound(f"Customer {customer_id} has no referral code: the record was "
                       "merged or erased.")
    table = ReferralCode.__table__
    while True:
        found = db.session.scalar(select(ReferralCode.code)
                                  .where(ReferralCode.customer_id == customer_id))
        if found is not None:
            return found
        try:
            with db.session.begin_nested():
                db.session.execute(insert(table).values(
                    customer_id=customer_id, code=coupons.random_codes(1, CODE_LENGTH)[0],
                    created_at=utcnow()))
        except IntegrityError:
            continue  # the code was taken, or another request made this member's code


def share(customer_id: int) -> dict[str, str]:
    code = code_for(customer_id)
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return {"code": code, "url": f"{base}/r/{code}", "qr_svg_url": f"{base}/r/{code}/qr.svg"}


def owner_of(code: str) -> int | None:
    return db.session.scalar(select(ReferralCode.customer_id)
                             .where(ReferralCode.code == normalize_code(code)))


# --- attribution ----------------------------------------------------------------------

def _canonical(kind: str, value: str) -> str:
    """Identifiers compared as one person would hold them: a mailbox without its +tag
    (and without dots at Gmail)."""
    if kind != "email" or "@" not in value:
        return f"{kind}:{value}"
    local, domain = value.lower().rsplit("@", 1)
    local = local.split("+", 1)[0]
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return f"email:{local}@{domain}"


def _identities(customer_ids: list[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {i: set() for i in customer_ids}
    for identifier in db.session.scalars(
            select(CustomerIdentifier)
            .where(CustomerIdentifier.customer_id.in_(customer_ids),
                   CustomerIdentifier.kind.in_(("email", "phone", "card")))):
        found[identifier.customer_id].add(_canonical(identifier.kind, identifier.value))
    return found


def _fingerprint(identities: set[str]) -> str | None:
    """A keyed hash of the friend's mailbox: counts friends from one, shows no address."""
    mail = sorted(i for i in identities if i.startswith("email:"))
    if not mail:
        return None
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, mail[0].encode(), hashlib.sha256).hexdigest()


def _chain(customer_id: int) -> list[int]:
    """Who referred this customer, who referred them, ... (at most RING_DEPTH)."""
    chain: list[int] = []
    current = customer_id
    for _ in range(RING_DEPTH):
        parent = db.session.scalar(select(Referral.referrer_id).where(
            Referral.friend_id == current, Referral.status != "rejected"))
        if parent is None or parent in chain or parent == customer_id:
            break
        chain.append(parent)
        current = parent
    return chain


def _survivor(customer_id: int) -> int:
    """The record a customer lives on in (merges move points to the survivor)."""
    for _ in range(10):
        merged_into = db.session.scalar(select(Customer.merged_into_id)
                                        .where(Customer.id == customer_id))
        if merged_into is None:
            return customer_id
        customer_id = merged_into
    return customer_id


def attribute(friend: Customer, code: str, *, optional: bool, new: bool = True
              ) -> Referral | None:
    """Attribute ``friend`` to the owner of ``code``. A code that cannot be used (no
    program, unknown, the friend's own) is a 422, or ignored when ``optional``. A code
    that can be used but breaks a fraud rule is recorded as rejected with its reason."""
    referrer_id = owner_of(code)
    problem = None
    if not snapshot().enabled:
        problem = "The referral program is not running."
    elif referrer_id is None:
        problem = f"No member has the referral code {code!r}."
    elif referrer_id == friend.id:
        problem = "A member cannot use their own referral code."
    else:
        referrer_id = _survivor(referrer_id)
        if referrer_id == friend.id:
            problem = "A member cannot use their own referral code."
    if problem:
        if optional:
            return None
        raise Invalid(problem + " Send referral_optional: true to create the customer "
                      "without it.", errors={"referral_code": [problem]})
    assert referrer_id is not None
    if db.session.scalar(select(Referral.id).where(Referral.friend_id == friend.id)):
        return None  # referred before: the first referral stands
    chain = [referrer_id, *_chain(referrer_id)]
    identities = _identities([friend.id, *chain])
    mine = identities[friend.id]
    reason = None
    if not new:
        reason = "existing_customer"
    elif mine & identities[referrer_id]:
        reason = "shared_identifier"
    elif friend.id in chain or any(mine & identities[c] for c in chain[1:]):
        reason = "ring"
        raise_alert("referral_ring", f"referrer:{referrer_id}",
                    f"Customer {friend.id} was referred by {referrer_id}, whose own chain "
                    "of referrers includes the same person.")
    fingerprint = _fingerprint(mine)
    referral = Referral(referrer_id=referrer_id, friend_id=friend.id,
                        status="rejected" if reason else "attributed", reason=reason,
                        fingerprint=fingerprint, referrer_points=0, friend_points=0)
    db.session.add(referral)
    db.session.flush()
    if fingerprint is not None:
        same = db.session.scalar(select(func.count()).select_from(Referral)
                                 .where(Referral.fingerprint == fingerprint))
        if same >= SAME_ADDRESS_ALERT:
            raise_alert("referral_shared_address", f"referrer:{referrer_id}",
                        f"{same} referred friends sign up from one mailbox "
                        f"(the latest: customer {friend.id}).")
    offer_id = snapshot().friend_offer_id
    if referral.status == "attributed" and offer_id is not None:
        coupons.issue_personal(coupons.get_offer(offer_id), [friend.id])
    return referral


def on_customer_created(_sender: Any, customer: Customer, referral_code: str | None = None,
                        referral_optional: bool = False, **_: Any) -> None:
    if referral_code:
        attribute(customer, referral_code, optional=referral_optional)


# --- qualification, reward, reversal --------------------------------------------------

def _changed(event: str, referral: Referral) -> None:
    signals.referral_changed.send(
        current_app._get_current_object(), event=event, referral_id=referral.id,
        referrer_id=referral.referrer_id, friend_id=referral.friend_id,
        status=referral.status, reason=referral.reason,
        referrer_points=referral.referrer_points, friend_points=referral.friend_points)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _capped(prog: Any, referrer_id: int, now: datetime) -> str | None:
    """Why the referrer may earn no more (None: they may). Their code row is locked so
    that two friends qualifying at once are counted one after the other."""
    db.session.execute(select(ReferralCode.customer_id)
                       .where(ReferralCode.customer_id == referrer_id).with_for_update())
    counted = select(func.count()).select_from(Referral).where(
        Referral.referrer_id == referrer_id, Referral.status.in_(("qualified", "rewarded")))
    if prog.max_per_referrer is not None and \
            db.session.scalar(counted) >= prog.max_per_referrer:
        return "cap_total"
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if prog.max_per_referrer_per_month is not None and db.session.scalar(
            counted.where(Referral.qualified_at >= month)) >= prog.max_per_referrer_per_month:
        return "cap_month"
    return None


def on_purchase(_sender: Any, purchase: Any, **_: Any) -> None:
    """A sale: the friend's first qualifying purchase qualifies their referral. Costs
    nothing while the program is off; one indexed lookup per member sale while on."""
    if purchase.customer_id is None or not snapshot().enabled:
        return
    referral = db.session.scalar(select(Referral).where(
        Referral.friend_id == purchase.customer_id, Referral.status == "attributed")
        .with_for_update())
    if referral is not None:
        qualify(referral, purchase)


def qualify(referral: Referral, purchase: Any) -> None:
    prog, now = snapshot(), utcnow()
    occurred = _aware(purchase.occurred_at)
    if occurred > _aware(referral.created_at) + timedelta(days=prog.qualify_days) or \
            purchase.paid < prog.min_first_purchase:
        return
    capped = _capped(prog, referral.referrer_id, now)
    if capped:
        referral.status, referral.reason = "capped", capped
        db.session.flush()
        return
    hold = settings.program().pending_days
    referral.status, referral.purchase_id, referral.qualified_at = "qualified", purchase.id, now
    referral.reward_due_at = occurred + timedelta(days=hold)
    db.session.flush()
    _changed("qualified", referral)
    if not hold:
        reward(referral)


def reward(referral: Referral) -> bool:
    """Write both rewards, once: only the caller whose update moved the referral from
    qualified to rewarded writes them."""
    prog, now = snapshot(), utcnow()
    moved = db.session.execute(
        update(Referral).where(Referral.id == referral.id, Referral.status == "qualified")
        .values(status="rewarded", rewarded_at=now, updated_at=now,
                referrer_points=prog.referrer_points, friend_points=prog.friend_points)
        .execution_options(synchronize_session=False)).rowcount
    if not moved:
        return False
    db.session.refresh(referral)
    referral_points.give(_survivor(referral.referrer_id), referral.referrer_points,
                         referral.id)
    referral_points.give(_survivor(referral.friend_id), referral.friend_points, referral.id)
    _changed("rewarded", referral)
    return True


def reward_due(now: datetime | None = None, limit: int = 1000) -> dict[str, int]:
    """The job: reward qualified referrals whose hold has ended (safe to run twice)."""
    if not snapshot().enabled:
        return {"rewarded": 0}
    due = db.session.scalars(select(Referral).where(
        Referral.status == "qualified", Referral.reward_due_at <= (now or utcnow()))
        .order_by(Referral.reward_due_at, Referral.id).limit(limit)).all()
    return {"rewarded": sum(reward(referral) for referral in due)}


def reverse(referral: Referral, reason: str) -> None:
    """Cancel a referral; rewards already written are taken back."""
    if referral.status == "rewarded":
        referral_points.take_back(_survivor(referral.referrer_id), referral.referrer_points,
                                  referral.id)
        referral_points.take_back(_survivor(referral.friend_id), referral.friend_points,
                                  referral.id)
    referral.status, referral.reason, referral.reversed_at = "reversed", reason, utcnow()
    db.session.flush()
    _changed("reversed", referral)


def on_returned(_sender: Any, purchase: Any, purchase_return: Any, full: bool,
                **_: Any) -> None:
    """A return of the qualifying purchase (in full, or below the minimum) cancels the
    referral during the hold, and claws its rewards back after it."""
    referral = db.session.scalar(select(Referral).where(
        Referral.purchase_id == purchase.id,
        Referral.status.in_(("qualified", "rewarded"))).with_for_update())
    if referral is None:
        return
    kept = purchase.paid - purchase.returned_paid
    minimum = getattr(snapshot(), "min_first_purchase", 0)
    if full or kept < max(minimum, 1):
        reverse(referral, "returned")


def on_merged(_sender: Any, survivor_id: int, source_id: int, **_: Any) -> None:
    """Referrer and friend turn out to be one person: the referral is reversed."""
    pair = (Referral.referrer_id.in_((survivor_id, source_id))
            & Referral.friend_id.in_((survivor_id, source_id)))
    referral = db.session.scalar(select(Referral).where(
        pair, Referral.status.in_(("attributed", "qualified", "rewarded"))))
    if referral is not None:
        reverse(referral, "merged")


# --- lists and report -----------------------------------------------------------------

def list_referrals(filters: dict[str, Any]) -> Select[tuple[Referral]]:
    stmt = select(Referral).order_by(Referral.id.desc())
    for name in ("referrer_id", "status"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(Referral, name) == filters[name])
    return stmt


def report() -> dict[str, Any]:
    """Codes shared, friends attributed (not rejected at sign-up), qualified (ever),
    rewarded, rejected by reason, points given (net of reversals), the revenue of
    referred friends in their first 90 days, and the k-factor: qualified friends per
    member who shared a code."""
    statuses = Counter(dict(db.session.execute(
        select(Referral.status, func.count()).group_by(Referral.status)).all()))
    reasons = dict(db.session.execute(
        select(Referral.reason, func.count()).where(Referral.status.in_(("rejected", "capped")))
        .group_by(Referral.reason)).all())
    shared = db.session.scalar(select(func.count()).select_from(ReferralCode)) or 0
    points = db.session.scalar(select(func.coalesce(func.sum(
        Referral.referrer_points + Referral.friend_points), 0))
        .where(Referral.status == "rewarded")) or 0
    ever_qualified = db.session.scalar(select(func.count()).select_from(Referral).where(
        Referral.qualified_at.is_not(None))) or 0
    friends = select(Referral.friend_id, Referral.created_at).where(
        Referral.status != "rejected").subquery()
    revenue = db.session.scalar(
        select(func.coalesce(func.sum(Purchase.paid - Purchase.returned_paid), 0))
        .join(friends, friends.c.friend_id == Purchase.customer_id)
        .where(Purchase.occurred_at >= friends.c.created_at,
               Purchase.occurred_at < plus_days(friends.c.created_at, REVENUE_DAYS))) or 0
    attributed = sum(n for status, n in statuses.items() if status != "rejected")
    return {
        "codes_shared": shared, "attributed": attributed, "qualified": ever_qualified,
        "rewarded": statuses["rewarded"], "rejected": statuses["rejected"],
        "capped": statuses["capped"], "reversed": statuses["reversed"],
        "rejected_by_reason": reasons, "points_given": int(points),
        "revenue_first_90_days": to_amount(int(revenue), settings.program().currency),
        "currency": settings.program().currency,
        "k_factor": round(ever_qualified / shared, 3) if shared else 0.0,
    }


# --- the shop's member sync (bulk: no customer_created per member) ---------------------

def on_codes_check(_sender: Any, codes: set[str], **_: Any) -> dict[str, str | None]:
    """Before a sync writes: why each code cannot be used (None: it can)."""
    if not codes:
        return {}
    if not snapshot().enabled:
        return dict.fromkeys(codes, "The referral program is not running.")
    known = set(db.session.scalars(select(ReferralCode.code).where(
        ReferralCode.code.in_({normalize_code(c) for c in codes}))))
    return {c: None if normalize_code(c) in known else f"No member has the referral code {c!r}."
            for c in codes}


def on_codes_given(_sender: Any, given: list[tuple[int, str, bool]], **_: Any) -> None:
    """After a sync wrote its members: attribute those that gave a usable code."""
    friends = {c.id: c for c in db.session.scalars(
        select(Customer).where(Customer.id.in_([customer_id for customer_id, _, _ in given])))}
    for customer_id, code, is_new in given:
        attribute(friends[customer_id], code, optional=True, new=is_new)
