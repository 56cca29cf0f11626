"""Customer search and the customer 360 page, with its actions by role: profile and
consent (marketer), points adjustments, merges, export and erasure (admin)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for

from console import forms
from console.web import actor, bp, role
from crm import customers as records
from crm import duplicates, merging, privacy, timeline
from crm.consent import history as consent_history
from crm.db import db, utcnow
from crm.errors import DomainError
from crm.pagination import paginate
from crm.schemas import CustomerInSchema
from loyalty import coupons, points
from loyalty.history import purchase_count, purchases_of
from loyalty.schemas import AdjustmentInSchema

PAGE_SIZE = 25
PROFILE = CustomerInSchema(partial=True)
PROFILE_FIELDS = ["first_name", "last_name", "email", "phone", "card_number", "birthday",
                  "city"]
ADJUSTMENT = AdjustmentInSchema()


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return max(1, min(int(raw), 10**6)) if raw.isdigit() else 1


@bp.get("/customers")
def customers() -> Any:
    q = request.args.get("q", "").strip()[:200]
    try:
        body, _, headers = paginate(records.search_customers({"q": q}), _page_number(),
                                    PAGE_SIZE)
    except DomainError as e:
        body, headers, error = {"items": []}, {}, e.detail
    else:
        error = None
        records.with_profile_extras(body["items"])
    meta = json.loads(headers.get("X-Pagination", "{}")) if headers else {}
    template = ("console/customer_results.html" if request.headers.get("HX-Request")
                else "console/customers.html")
    return render_template(template, q=q, items=body["items"], meta=meta, error=error)






def _context(customer_id: int, **extra: Any) -> dict[str, Any]:
    customer = records.get_customer(customer_id)
    if customer.merged_into_id is not None:
        return {"customer": customer, "merged": True, **extra}
    ids = privacy.records_of(customer.id)
    ledger, _, ledger_headers = paginate(points.ledger_rows(customer.id), 1, 30)
    events, _, _ = timeline.page(ids, 1, 40)
    return {
        "customer": customer, "merged": False,
        "merged_records": ids[1:],
        "summary": points.summary(customer.id),
        "consent_events": db.session.scalars(consent_history(ids).limit(50)).all(),
        "ledger": ledger["items"],
        "ledger_total": json.loads(ledger_headers["X-Pagination"])["total"],
        "purchases": purchases_of(ids, 30),
        "coupons": coupons.customer_coupons(customer.id, utcnow().date()),
        "events": events["items"],
        "duplicates": [] if customer.erased_at else duplicates.find([customer.id])[customer.id],
        "profile_fields": forms.describe(PROFILE, PROFILE_FIELDS,
                                         {"card_number": "Card number"}),
        "profile_values": {f: getattr(customer, f) for f in PROFILE_FIELDS},
        "adjust_fields": forms.describe(ADJUSTMENT),
        "errors": {}, "message": "", "adjust_errors": {}, "adjust_message": "",
        "adjust_values": {},
        **extra,
    }


def _show(customer_id: int, status: int = 200, **extra: Any) -> Any:
    try:
        context = _context(customer_id, **extra)
    except DomainError:
        abort(404)
    return render_template("console/customer.html", **context), status


@bp.get("/customers/<int:customer_id>")
def customer(customer_id: int) -> Any:
    return _show(customer_id)


@bp.post("/customers/<int:customer_id>/profile")
@role("marketer")
def customer_profile(customer_id: int) -> Any:
    outcome = forms.submit(PROFILE, request.form, lambda data: records.update_customer(
        customer_id, data, actor()[:40]), PROFILE_FIELDS)
    if outcome.ok:
        flash("Profile saved.", "ok")
        return redirect(url_for("console.customer", customer_id=customer_id))
    return _show(customer_id, 422, errors=outcome.errors, message=outcome.message,
                 profile_values=dict(request.form))


@bp.post("/customers/<int:customer_id>/consent")
@role("marketer")
def customer_consent(customer_id: int) -> Any:
    choices = {ch: request.form.get(ch) == "on" for ch in ("sms", "email")}
    try:
        records.set_consent(customer_id, choices, actor()[:40])
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.detail, "error")
    else:
        flash("Consent recorded.", "ok")
    return redirect(url_for("console.customer", customer_id=customer_id))


@bp.post("/customers/<int:customer_id>/adjustments")
@role("admin")
def customer_adjust(customer_id: int) -> Any:
    outcome = forms.submit(ADJUSTMENT, request.form, lambda data: points.adjust(
        customer_id, data["points"], data["reason"], actor()))
    if outcome.ok:
        flash(f"Adjusted by {outcome.result['points']:+,} points; the balance is "
              f"{outcome.result['balance']:,}.", "ok")
        return redirect(url_for("console.customer", customer_id=customer_id))
    return _show(customer_id, 422, adjust_errors=outcome.errors,
                 adjust_message=outcome.message, adjust_values=dict(request.form))


@bp.get("/customers/<int:customer_id>/merge/<int:other_id>")
@role("admin")
def customer_merge_confirm(customer_id: int, other_id: int) -> Any:
    """What a merge of ``other_id`` into ``customer_id`` moves, before it is done."""
    try:
        survivor, source = (records.get_customer(customer_id),
                            records.get_customer(other_id))
        moving = {"identifiers": source.identifiers,
                  "points": points.summary(source.id),
                  "purchases": purchase_count(privacy.records_of(source.id)),
                  "coupons": len(coupons.customer_coupons(source.id, utcnow().date()))}
    except DomainError:
        abort(404)
    return render_template("console/merge.html", survivor=survivor, source=source,
                           moving=moving)


@bp.post("/customers/<int:customer_id>/merge/<int:other_id>")
@role("admin")
def customer_merge(customer_id: int, other_id: int) -> Any:
    try:
        merging.merge(customer_id, other_id, actor(), request.form.get("force") == "on")
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(f"Not merged: {e.detail}", "error")
        return redirect(url_for("console.customer_merge_confirm", customer_id=customer_id,
                                other_id=other_id))
    flash(f"Customer {other_id} was merged into this one.", "ok")
    return redirect(url_for("console.customer", customer_id=customer_id))


@bp.post("/customers/<int:customer_id>/unmerge/<int:source_id>")
@role("admin")
def customer_unmerge(customer_id: int, source_id: int) -> Any:
    try:
        merging.unmerge(customer_id, source_id, actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(f"Not unmerged: {e.detail}", "error")
    else:
        flash(f"Customer {source_id} is separate again.", "ok")
    return redirect(url_for("console.customer", customer_id=customer_id))


@bp.get("/customers/<int:customer_id>/export")
@role("admin")
def customer_export(customer_id: int) -> Any:
    try:
        data = privacy.export(customer_id, actor())
        db.session.commit()
    except DomainError:
        abort(404)
    body = json.dumps(data, default=str, indent=2)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f"attachment; filename=customer-{customer_id}-export.json"})


@bp.post("/customers/<int:customer_id>/erase")
@role("admin")
def customer_erase(customer_id: int) -> Any:
    if request.form.get("confirm", "").strip() != f"ERASE {customer_id}":
        flash(f"Type ERASE {customer_id} to confirm the erasure.", "error")
        return redirect(url_for("console.customer", customer_id=customer_id))
    try:
        privacy.erase(customer_id, actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.detail, "error")
    else:
        flash("The customer's personal data was erased.", "ok")
    return redirect(url_for("console.customer", customer_id=customer_id))


