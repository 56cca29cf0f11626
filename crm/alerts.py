"""Security alerts: fraud and intrusion signals raised by the rules that watch for them
(and by jobs that give up on something), listed and resolved by administrators.

``raise_alert`` writes in the caller's transaction, so an alert about a change that
rolls back is never seen. An alert still open for the same rule and subject is not
opened again: it counts the new occurrence and notes when it was last seen.
``security_alert_raised`` tells other packages (outgoing webhooks) about a new alert."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import Select, select

from crm import signals
from crm.db import db, insert_ignoring_conflicts, utcnow
from crm.errors import Conflict, get_or_404
from crm.models import SecurityAlert

STATUSES = ("open", "resolved")


def raise_alert(rule: str, subject: str, detail: str) -> SecurityAlert:
    """Open an alert for ``rule`` about ``subject`` (an id or an address, never a personal
    value), or count another occurrence on the one still open."""
    now, open_key = utcnow(), f"{rule}|{subject}"[:270]
    stmt = insert_ignoring_conflicts(SecurityAlert.__table__, "open_key").values(
        rule=rule[:64], subject=subject[:200], detail=detail[:1000], status="open", count=1,
        open_key=open_key, created_at=now, last_seen_at=now).returning(
        SecurityAlert.__table__.c.id)
    new_id = db.session.scalar(stmt)
    if new_id is not None:
        alert = db.session.get(SecurityAlert, new_id)
        signals.security_alert_raised.send(current_app._get_current_object(), alert=alert)
        return alert
    alert = db.session.scalar(select(SecurityAlert).where(SecurityAlert.open_key == open_key)
                              .with_for_update())
    alert.count += 1
    alert.last_seen_at, alert.detail = now, detail[:1000]
    db.session.flush()
    return alert


def list_alerts(status: str | None = None) -> Select[tuple[SecurityAlert]]:
    stmt = select(SecurityAlert).order_by(SecurityAlert.id.desc())
    return stmt if status is None else stmt.where(SecurityAlert.status == status)


def resolve_alert(alert_id: int, actor: str, resolution: str | None = None) -> SecurityAlert:
    alert = get_or_404(SecurityAlert, alert_id, "security alert")
    if alert.status == "resolved":
        raise Conflict(f"Alert {alert_id} was resolved already.")
    alert.status, alert.open_key = "resolved", None
    alert.resolved_at, alert.resolved_by, alert.resolution = utcnow(), actor, resolution
    db.session.flush()
    return alert
