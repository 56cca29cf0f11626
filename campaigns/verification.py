"""``POST /customers/{id}/verification``: send a member the one-time code a till needs to
spend their points above the program's threshold (loyalty/verification.py makes and
checks it; here it goes out through the outbox as a transactional SMS)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from campaigns import outbox
from crm.api import Blueprint
from crm.auth import current_key, require
from crm.customers import get_customer
from crm.db import db
from crm.errors import Conflict, Invalid
from loyalty import verification

verification_blp = Blueprint("verification", __name__,
                             description="One-time codes for spending points")


class VerificationSentSchema(Schema):
    customer_id = fields.Integer()
    expires_in = fields.Integer(metadata={"description": "Seconds the code is valid."})
    sent_to = fields.String(metadata={"description": "The phone's last four digits."})


@verification_blp.route("/customers/<id:customer_id>/verification")
class Verification(MethodView):
    @require("pos", "shop")
    @verification_blp.response(202, VerificationSentSchema)
    def post(self, customer_id: int) -> Any:
        """Send the member a one-time code by SMS (the code is not in the answer)."""
        from flask import current_app

        customer = get_customer(customer_id)
        if customer.merged_into_id is not None:
            raise Conflict(f"This record was merged into customer {customer.merged_into_id}.",
                           merged_into=customer.merged_into_id)
        if not customer.phone or not customer.consent_sms:
            raise Invalid("The member has no phone that takes our SMS: spend their points "
                          "at or under the program's verification threshold.")
        key = current_key()
        code = verification.issue(customer.id, key)
        outbox.queue(customer, f"Your code to spend points: {code}. It expires in "
                     f"{current_app.config['VERIFICATION_TTL_SECONDS'] // 60} minutes. "
                     "Never share it.", "transactional",
                     store_id=key.store.id if key.store else None)
        db.session.commit()
        return {"customer_id": customer.id,
                "expires_in": current_app.config["VERIFICATION_TTL_SECONDS"],
                "sent_to": f"***{customer.phone[-4:]}"}
