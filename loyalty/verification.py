"""One-time codes for spending points from a till: above the program's
``verification_threshold`` (off while unset), a sale redeeming points or a reward claim
made with a till's key must carry the ``verification_code`` sent to the member by SMS
(``POST /customers/{id}/verification``), so that a stolen till key cannot drain accounts.

A code is six digits, kept as an HMAC (keyed with SECRET_KEY), expires after
VERIFICATION_TTL_SECONDS, is used once (a retried sale with the same receipt passes
again) and dies after VERIFICATION_ATTEMPTS wrong tries, which are counted in a
transaction of their own: the refused sale rolls back, the count stays."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from crm.after_response import defer
from crm.customers import find_customer
from crm.db import db, utcnow
from crm.errors import DomainError, Invalid
from crm.keys import Caller
from loyalty import fraud, settings
from loyalty.models import VerificationCode


class VerificationRequired(DomainError):
    status, slug, title = 403, "verification-required", "The member must confirm"


def _digest(code: str) -> str:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, code.encode(), hashlib.sha256).hexdigest()


def issue(customer_id: int, key: Caller) -> str:
    """A new code for the member (earlier open ones stop working); the caller sends it."""
    now = utcnow()
    db.session.execute(update(VerificationCode).where(
        VerificationCode.customer_id == customer_id, VerificationCode.used_at.is_(None),
        VerificationCode.expires_at > now).values(expires_at=now))
    code = f"{secrets.randbelow(10**6):06d}"
    db.session.add(VerificationCode(
        customer_id=customer_id, code_hash=_digest(code), api_key_id=key.id, created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["VERIFICATION_TTL_SECONDS"])))
    db.session.flush()
    return code


def check_spend(data: dict[str, Any], key: Caller, points: int | None = None,
                customer_id: int | None = None, use: str | None = None) -> None:
    """Before points are spent (a sale's ``redeem_points``, a reward claim's cost): a
    till spending above the threshold must show the member's code, and the fraud rules
    look at the member (no statement is added to the sale). Costs nothing when no points
    are spent."""
    points = data.get("redeem_points") or 0 if points is None else points
    if not points:
        return
    ref = data.get("customer")
    fraud.check_spend(ref, points, customer_id)
    threshold = settings.snapshot().program.verification_threshold
    if threshold is None or points <= threshold or key.store is None \
            or not {"shop", "marketing", "admin"}.isdisjoint(key.scope_list):
        return
    if customer_id is None:
        member = find_customer(ref) if ref else None
        if member is None:
            return  # the sale answers for a missing member itself
        customer_id = member.id
    _use(customer_id, data.get("verification_code"), points, threshold,
         use or f"receipt:{key.store.id}:{data.get('receipt_id', '')}")


def _use(customer_id: int, code: str | None, points: int, threshold: int, use: str) -> None:
    if not code:
        raise VerificationRequired(
            f"Spending more than {threshold} points from a till needs the code sent to the "
            "member: POST /customers/{id}/verification, then send it as verification_code.",
            threshold=threshold)
    now = utcnow()
    row = db.session.scalar(
        select(VerificationCode).where(VerificationCode.customer_id == customer_id)
        .order_by(VerificationCode.id.desc()).limit(1).with_for_update())
    attempts = current_app.config["VERIFICATION_ATTEMPTS"]
    if row is None or row.expires_at <= now or row.attempts >= attempts:
        raise VerificationRequired("The code has expired or was tried too often: send a "
                                   "new one.", reason="expired")
    if not hmac.compare_digest(row.code_hash, _digest(str(code))):
        row_id = row.id
        defer(lambda: _count_attempt(row_id))
        raise Invalid("The verification code is not right.",
                      errors={"verification_code": ["Not the code sent to the member."]})
    if row.used_at is not None and row.used_for != use:
        raise VerificationRequired("This code was used already: send a new one.",
                                   reason="used")
    row.used_at, row.used_for = row.used_at or now, use
    db.session.flush()


def _count_attempt(row_id: int) -> None:
    db.session.execute(update(VerificationCode).where(VerificationCode.id == row_id)
                       .values(attempts=VerificationCode.attempts + 1))
    db.session.commit()
