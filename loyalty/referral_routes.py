"""HTTP endpoints of the referral program, and its public share page ``/r/{code}``."""

from __future__ import annotations

import io
from typing import Any

import segno
from flask import Blueprint as FlaskBlueprint
from flask import Response, current_app, render_template_string
from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from crm.api import Blueprint
from crm.auth import require
from crm.db import db
from crm.pagination import paginate
from crm.schemas import Amount, PageArgs, page_of
from loyalty import referrals
from loyalty.referral_models import STATUSES, ReferralCode

referrals_blp = Blueprint("referrals", __name__, description="The referral program")
share_page = FlaskBlueprint("referral_share", __name__)

_ID = validate.Range(1, 2**63 - 1)


class ReferralProgramSchema(Schema):
    enabled = fields.Boolean(load_default=False)
    referrer_points = fields.Integer(strict=True, load_default=0,
                                     validate=validate.Range(0, 10_000_000))
    friend_points = fields.Integer(strict=True, load_default=0,
                                   validate=validate.Range(0, 10_000_000))
    friend_offer_id = fields.Integer(allow_none=True, load_default=None, validate=_ID,
                                     metadata={"description": "A personal coupon of this "
                                               "offer for the friend's first purchase."})
    min_first_purchase = Amount(load_default="0", metadata={
        "description": "In the program's currency."})
    qualify_days = fields.Integer(strict=True, load_default=30,
                                  validate=validate.Range(1, 3650))
    max_per_referrer_per_month = fields.Integer(strict=True, allow_none=True,
                                                load_default=None,
                                                validate=validate.Range(1, 100_000))
    max_per_referrer = fields.Integer(strict=True, allow_none=True, load_default=None,
                                      validate=validate.Range(1, 1_000_000))
    updated_at = fields.AwareDateTime(dump_only=True)


class ReferralShareSchema(Schema):
    code = fields.String()
    url = fields.String()
    qr_svg_url = fields.String()


class ReferralSchema(Schema):
    id = fields.Integer()
    referrer_id = fields.Integer()
    friend_id = fields.Integer()
    status = fields.String(metadata={"enum": list(STATUSES)})
    reason = fields.String(allow_none=True)
    purchase_id = fields.Integer(allow_none=True)
    referrer_points = fields.Integer()
    friend_points = fields.Integer()
    created_at = fields.AwareDateTime()
    qualified_at = fields.AwareDateTime(allow_none=True)
    reward_due_at = fields.AwareDateTime(allow_none=True)
    rewarded_at = fields.AwareDateTime(allow_none=True)
    reversed_at = fields.AwareDateTime(allow_none=True)


ReferralPageSchema = page_of(ReferralSchema, "ReferralPage")


class ReferralQuerySchema(PageArgs):
    referrer_id = fields.Integer(validate=_ID)
    status = fields.String(validate=validate.OneOf(STATUSES))


class ReferralReportSchema(Schema):
    codes_shared = fields.Integer()
    attributed = fields.Integer()
    qualified = fields.Integer()
    rewarded = fields.Integer()
    rejected = fields.Integer()
    capped = fields.Integer()
    reversed = fields.Integer()
    rejected_by_reason = fields.Dict(keys=fields.String(), values=fields.Integer())
    points_given = fields.Integer()
    revenue_first_90_days = fields.String()
    currency = fields.String()
    k_factor = fields.Float(metadata={"description": "Qualified friends per member who "
                                      "shared a code."})


@referrals_blp.route("/loyalty/referral-program")
class ProgramView(MethodView):
    @require("admin")
    @referrals_blp.response(200, ReferralProgramSchema)
    def get(self) -> Any:
        return referrals.program_answer(referrals.program())

    @require("admin")
    @referrals_blp.arguments(ReferralProgramSchema)
    @referrals_blp.response(200, ReferralProgramSchema)
    def put(self, data: dict[str, Any]) -> Any:
        row = referrals.update_program(data)
        db.session.commit()
        return referrals.program_answer(row)


@referrals_blp.route("/loyalty/referral-program/report")
class Report(MethodView):
    @require("marketing")
    @referrals_blp.response(200, ReferralReportSchema)
    def get(self) -> Any:
        return referrals.report()


@referrals_blp.route("/customers/<id:customer_id>/referral")
class Share(MethodView):
    @require("pos", "shop")
    @referrals_blp.response(200, ReferralShareSchema)
    def get(self, customer_id: int) -> Any:
        answer = referrals.share(customer_id)
        db.session.commit()
        return answer


@referrals_blp.route("/referrals")
class Referrals(MethodView):
    @require("marketing")
    @referrals_blp.arguments(ReferralQuerySchema, location="query")
    @referrals_blp.response(200, ReferralPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        page, size = args.pop("page"), args.pop("page_size")
        return paginate(referrals.list_referrals(args), page, size)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<meta name="description" content="{{ description }}">
<meta property="og:type" content="website">
<meta property="og:title" content="{{ title }}">
<meta property="og:description" content="{{ description }}">
<meta property="og:url" content="{{ url }}">
<meta property="og:image" content="{{ image }}">
<meta property="og:image:alt" content="A QR code for this invitation">
<meta name="twitter:card" content="summary">
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;
color:#1a1a1a}.code{font-size:2rem;letter-spacing:.2em;font-weight:700}
img{width:12rem;height:12rem}</style></head>
<body><main><h1>{{ title }}</h1><p>{{ description }}</p>
<p>Your code: <span class="code">{{ code }}</span></p>
<p>Show this at the till, or give the code when you sign up online.</p>
<img src="{{ svg }}" alt="QR code of the invitation link"></main></body></html>"""


def _known(code: str) -> str | None:
    code = referrals.normalize_code(code)
    return db.session.scalar(select(ReferralCode.code).where(ReferralCode.code == code))


def _link(code: str) -> str:
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + f"/r/{code}"


@share_page.get("/r/<code>")
def page(code: str) -> Any:
    known = _known(code)
    if known is None:
        return Response("This invitation link is not valid.", 404, mimetype="text/plain")
    base = _link(known)
    html = render_template_string(
        _PAGE, title="You are invited to join our loyalty program",
        description="Join with this invitation and earn points on your first purchase.",
        url=base, image=f"{base}/qr.png", svg=f"{base}/qr.svg", code=known)
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Content-Security-Policy"] = \
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
    return response


@share_page.get("/r/<code>/qr.<kind>")
def qr(code: str, kind: str) -> Any:
    known = _known(code)
    if known is None or kind not in ("svg", "png"):
        return Response("Not found.", 404, mimetype="text/plain")
    out = io.BytesIO()
    segno.make(_link(known), error="m").save(out, kind=kind, scale=10)
    response = Response(out.getvalue(), mimetype="image/svg+xml" if kind == "svg"
                        else "image/png")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
