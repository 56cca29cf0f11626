"""Loyalty set-up: program settings, tiers, earning rules, offers and their coupon
batches, rewards. Each is a list, a create form and an edit form over the API's schema
and service functions; deactivating is an edit (``active``) or the service's delete."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from marshmallow import Schema

from console import forms
from console.web import bp, can, role
from crm.db import db
from crm.errors import DomainError
from loyalty import coupons, rewards, settings
from loyalty.schemas import (
    CouponRequestSchema,
    EarningRuleSchema,
    OfferSchema,
    ProgramSchema,
    RewardSchema,
    TierSchema,
)


@dataclass
class Resource:
    """One kind of thing on the set-up screens."""

    slug: str
    title: str  # plural, as the page heading
    one: str  # singular
    schema: Schema
    role: str  # who may change it
    rows: Callable[[], list[Any]]
    get: Callable[[int], Any]
    create: Callable[[dict[str, Any]], Any]
    update: Callable[[int, dict[str, Any]], Any]
    columns: list[str]
    deactivate: Callable[[int], Any] | None = None  # else: the "active" field


RESOURCES = {r.slug: r for r in [
    Resource("tiers", "Tiers", "tier", TierSchema(), "admin", settings.tiers,
             settings.get_tier, settings.create_tier, settings.update_tier,
             ["name", "threshold_points", "threshold_spend", "window_days", "multiplier",
              "benefits"], deactivate=settings.delete_tier),
    Resource("rules", "Earning rules", "earning rule", EarningRuleSchema(), "marketer",
             lambda: db.session.scalars(settings.rules()).all(), settings.get_rule,
             settings.create_rule, settings.update_rule,
             ["name", "kind", "value", "categories", "skus", "min_spend", "active"]),
    Resource("offers", "Offers", "offer", OfferSchema(), "marketer",
             lambda: db.session.scalars(coupons.list_offers()).all(), coupons.get_offer,
             coupons.create_offer, coupons.update_offer,
             ["name", "kind", "value", "min_spend", "valid_from", "valid_to", "uses",
              "active"]),
    Resource("rewards", "Rewards", "reward", RewardSchema(), "marketer",
             lambda: db.session.scalars(rewards.list_rewards(["marketing"])).all(),
             rewards.get_reward, rewards.create_reward, rewards.update_reward,
             ["name", "points_cost", "offer_id", "stock", "per_customer_limit", "active"]),
]}
PROGRAM = ProgramSchema()


def _resource(slug: str) -> Resource:
    if slug not in RESOURCES:
        abort(404)
    return RESOURCES[slug]


@bp.get("/setup")
def setup() -> Any:
    program = settings.program()
    return render_template("console/setup.html", program=forms.values_of(PROGRAM, program),
                           fields=forms.describe(PROGRAM), errors={}, message="",
                           resources=RESOURCES.values(),
                           counts={r.slug: len(r.rows()) for r in RESOURCES.values()})


@bp.post("/setup/program")
@role("admin")
def setup_program() -> Any:
    outcome = forms.submit(PROGRAM, request.form, settings.update_program)
    if outcome.ok:
        flash("Program settings saved.", "ok")
        return redirect(url_for("console.setup"))
    return render_template("console/setup.html", program=dict(request.form),
                           fields=forms.describe(PROGRAM), errors=outcome.errors,
                           message=outcome.message, resources=RESOURCES.values(),
                           counts={r.slug: len(r.rows()) for r in RESOURCES.values()}), 422


def _list(r: Resource, **extra: Any) -> str:
    rows = [(row, forms.values_of(r.schema, row)) for row in r.rows()]
    return render_template("console/setup_list.html", r=r, rows=rows,
                           fields=forms.describe(r.schema), **extra)


@bp.get("/setup/<slug>")
def setup_list(slug: str) -> Any:
    r = _resource(slug)
    return _list(r, values=forms.defaults(r.schema), errors={}, message="")


@bp.post("/setup/<slug>")
def setup_create(slug: str) -> Any:
    r = _resource(slug)
    if not can(r.role):
        abort(403)
    outcome = forms.submit(r.schema, request.form, r.create)
    if outcome.ok:
        flash(f"The {r.one} {outcome.result.name!r} was created.", "ok")
        return redirect(url_for("console.setup_list", slug=slug))
    return _list(r, values=dict(request.form), errors=outcome.errors,
                 message=outcome.message), 422


@bp.route("/setup/<slug>/<int:item_id>", methods=["GET", "POST"])
def setup_edit(slug: str, item_id: int) -> Any:
    r = _resource(slug)
    try:
        item = r.get(item_id)
    except DomainError:
        abort(404)
    fields = forms.describe(r.schema)
    if request.method == "GET":
        return render_template("console/setup_edit.html", r=r, item=item, fields=fields,
                               values=forms.values_of(r.schema, item), errors={}, message="",
                               **_offer_extras(r, item))
    if not can(r.role):
        abort(403)
    # An edit sends every field: the schema's partial form, as the API's PATCH.
    outcome = forms.submit(r.schema.__class__(partial=True), request.form,
                           lambda data: r.update(item_id, data), [f.name for f in fields])
    if outcome.ok:
        flash(f"The {r.one} {item.name!r} was saved.", "ok")
        return redirect(url_for("console.setup_list", slug=slug))
    db.session.expire_all()
    return render_template("console/setup_edit.html", r=r, item=r.get(item_id), fields=fields,
                           values=dict(request.form), errors=outcome.errors,
                           message=outcome.message, **_offer_extras(r, item)), 422


@bp.post("/setup/<slug>/<int:item_id>/deactivate")
def setup_deactivate(slug: str, item_id: int) -> Any:
    r = _resource(slug)
    if not can(r.role):
        abort(403)
    try:
        if r.deactivate is not None:
            r.deactivate(item_id)
        else:
            r.update(item_id, {"active": False})
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.detail, "error")
        return redirect(url_for("console.setup_edit", slug=slug, item_id=item_id))
    flash(f"The {r.one} was {'deleted' if r.deactivate else 'deactivated'}.", "ok")
    return redirect(url_for("console.setup_list", slug=slug))


# -- coupon batches of an offer ----------------------------------------------------------

BATCH = CouponRequestSchema()
BATCH_PART = 5000  # codes made per request: a larger batch grows while the page shows it
_GROWING = re.compile(r"^[0-9a-f]{16}\Z")  # a batch id (coupons.issue_codes)


def _offer_extras(r: Resource, item: Any, **extra: Any) -> dict[str, Any]:
    if r.slug != "offers":
        return {}
    return {"batches": coupons.batches_of(item.id),
            "batch_fields": forms.describe(BATCH, ["count", "prefix", "length"]),
            "batch_errors": {}, "batch_message": "", "batch_values": forms.defaults(BATCH),
            "growing": _growing(request.args), **extra}


def _growing(args: Mapping[str, str]) -> dict[str, Any] | None:
    """A batch still being made, as the page's address or the progress form gives it:
    its id, the codes wanted in all and made so far, and how they are drawn."""
    try:
        growing = {"batch": args["batch"], "total": int(args["total"]),
                   "made": int(args["made"]), "prefix": args.get("prefix", ""),
                   "length": int(args.get("length", 10))}
    except (KeyError, ValueError):
        return None
    ok = (_GROWING.match(growing["batch"]) and 0 < growing["made"] < growing["total"]
          <= 100_000)
    return growing if ok else None


@bp.post("/setup/offers/<int:item_id>/coupons")
@role("marketer")
def setup_coupons(item_id: int) -> Any:
    """Codes for printing: a batch of up to BATCH_PART is made at once; a larger one is
    begun here and grows a part at a time while the page shows its progress."""
    r = RESOURCES["offers"]
    item = r.get(item_id)
    outcome = forms.submit(BATCH, request.form, lambda d: {**coupons.issue(
        item_id, min(d["count"], BATCH_PART), prefix=d["prefix"], length=d["length"]),
        "total": d["count"], "prefix": d["prefix"], "length": d["length"]},
        ["count", "prefix", "length"])
    if outcome.ok:
        done = outcome.result
        if done["count"] < done["total"]:
            return redirect(url_for("console.setup_edit", slug="offers", item_id=item_id,
                                    batch=done["batch"], total=done["total"],
                                    made=done["count"], prefix=done["prefix"],
                                    length=done["length"]))
        flash(f"{done['count']:,} codes made in batch {done['batch']}.", "ok")
        return redirect(url_for("console.setup_edit", slug="offers", item_id=item_id))
    return render_template("console/setup_edit.html", r=r, item=item,
                           fields=forms.describe(r.schema),
                           values=forms.values_of(r.schema, item), errors={}, message="",
                           **_offer_extras(r, item, batch_errors=outcome.errors,
                                           batch_message=outcome.message,
                                           batch_values=dict(request.form))), 422


@bp.post("/setup/offers/<int:item_id>/coupons/more")
@role("marketer")
def setup_coupons_more(item_id: int) -> Any:
    """The next part of a growing batch: the progress region again (htmx), or the page."""
    RESOURCES["offers"].get(item_id)
    growing = _growing(request.form)
    if growing is None:
        abort(400)
    part = min(BATCH_PART, growing["total"] - growing["made"])
    try:
        coupons.issue(item_id, part, prefix=growing["prefix"], length=growing["length"],
                      batch=growing["batch"])
        db.session.commit()
    except DomainError:
        db.session.rollback()
        abort(400)
    growing["made"] += part
    htmx = request.headers.get("HX-Request") == "true"
    if growing["made"] >= growing["total"]:  # the page again, with every batch counted
        flash(f"{growing['total']:,} codes made in batch {growing['batch']}.", "ok")
        page = url_for("console.setup_edit", slug="offers", item_id=item_id)
        return Response(headers={"HX-Redirect": page}) if htmx else redirect(page)
    if htmx:
        return render_template("console/batch_progress.html", item_id=item_id, job=growing)
    return redirect(url_for("console.setup_edit", slug="offers", item_id=item_id,
                            **{k: growing[k] for k in ("batch", "total", "made", "prefix",
                                                       "length")}))


@bp.get("/setup/offers/<int:item_id>/coupons.csv")
def setup_coupons_csv(item_id: int) -> Any:
    batch = request.args.get("batch") or None
    name = f"offer-{item_id}-{batch or 'all'}-coupons.csv"
    return Response(coupons.coupons_csv(item_id, batch), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={name}"})
