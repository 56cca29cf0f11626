"""Who may call each route of the OpenAPI document: the expected answers of
tests/security/test_authorization.py, in one place. A route missing here fails the test;
add a row for every route you add ("METHOD /path" as in /api/openapi.json, less /api/v1).

Each row names the kinds of key that get past authorization (any answer but 401/403):
  till      the pos key of the store the object belongs to (this store)
  tills     any store's pos key (this store's and another's)
  shop, marketing, admin
Every other valid key gets 403; a revoked key, an expired key and no key get 401.
Routes are called with an empty JSON body unless BODIES gives one (needed where the
object's store is checked after the body: a valid body, so that only the key decides)."""

ACCESS: dict[str, str] = {
    # Outgoing webhooks (admin only).
    "GET /webhook-endpoints": "admin",
    "POST /webhook-endpoints": "admin",
    "GET /webhook-endpoints/{endpoint_id}": "admin",
    "PATCH /webhook-endpoints/{endpoint_id}": "admin",
    "DELETE /webhook-endpoints/{endpoint_id}": "admin",
    "POST /webhook-endpoints/{endpoint_id}/rotate-secret": "admin",
    "POST /webhook-endpoints/{endpoint_id}/test": "admin",
    "GET /webhook-endpoints/{endpoint_id}/deliveries": "admin",
    "POST /webhook-endpoints/{endpoint_id}/recover": "admin",
    "POST /webhook-deliveries/{delivery_id}/resend": "admin",
    # Referrals.
    "GET /loyalty/referral-program": "admin",
    "PUT /loyalty/referral-program": "admin",
    "GET /loyalty/referral-program/report": "marketing admin",
    "GET /customers/{customer_id}/referral": "tills shop admin",
    "GET /referrals": "marketing admin",
    # Products and recommendations.
    "POST /products/sync": "shop admin",
    "GET /products": "tills shop marketing admin",
    "GET /products/{sku}": "tills shop marketing admin",
    "GET /products/{sku}/related": "tills shop admin",
    "GET /customers/{customer_id}/recommendations": "tills shop admin",
    "GET /stores": "tills shop marketing admin",
    "POST /stores": "admin",
    "GET /stores/{code}": "tills shop marketing admin",
    "PATCH /stores/{code}": "admin",
    "GET /api-keys": "admin",
    "POST /api-keys": "admin",
    "POST /api-keys/{key_id}/rotate": "admin",
    "DELETE /api-keys/{key_id}": "admin",
    # A till: only with an exact ?phone=, ?email= or ?card=, masked (test_least_privilege).
    "GET /customers": "shop marketing admin",
    "POST /customers": "tills shop admin",
    "GET /customers/{customer_id}": "tills shop marketing admin",
    "PATCH /customers/{customer_id}": "shop admin",
    "DELETE /customers/{customer_id}": "admin",
    "POST /customers/sync": "shop admin",
    "PUT /customers/{customer_id}/consent": "tills shop admin",
    "POST /customers/{customer_id}/merge": "admin",
    "POST /customers/{customer_id}/unmerge": "admin",
    "GET /customers/{customer_id}/export": "admin",
    "GET /customers/{customer_id}/timeline": "shop marketing admin",
    "GET /customers/{customer_id}/duplicates": "marketing admin",
    "POST /customers/{customer_id}/verification": "tills shop admin",
    "GET /security/alerts": "admin",
    "POST /security/alerts/{alert_id}/resolve": "admin",
    "GET /audit": "admin",
    "GET /loyalty/program": "admin",
    "PUT /loyalty/program": "admin",
    "GET /loyalty/tiers": "admin",
    "POST /loyalty/tiers": "admin",
    "PATCH /loyalty/tiers/{tier_id}": "admin",
    "DELETE /loyalty/tiers/{tier_id}": "admin",
    "GET /loyalty/earning-rules": "marketing admin",
    "POST /loyalty/earning-rules": "marketing admin",
    "PATCH /loyalty/earning-rules/{rule_id}": "marketing admin",
    "DELETE /loyalty/earning-rules/{rule_id}": "marketing admin",
    "GET /loyalty/expiring-points": "marketing admin",
    "POST /purchases": "tills shop admin",  # a till for its own store (the body names it)
    "POST /purchases/{purchase_id}/claim": "till shop admin",
    # A return may be taken at any store's till (the program's returns_anywhere).
    "POST /purchases/{purchase_id}/returns": "tills shop admin",
    "POST /returns": "tills shop admin",
    "GET /returns": "tills shop marketing admin",  # a till: its store's; the shop: online
    "GET /purchases/{purchase_id}": "tills shop marketing admin",
    "GET /customers/{customer_id}/purchases": "tills shop marketing admin",
    "GET /customers/{customer_id}/points": "tills shop admin",
    "GET /customers/{customer_id}/points/ledger": "tills shop admin",
    "POST /customers/{customer_id}/points/adjustments": "admin",
    "GET /customers/{customer_id}/coupons": "tills shop admin",
    "GET /offers": "marketing admin",
    "POST /offers": "marketing admin",
    "GET /offers/{offer_id}": "marketing admin",
    "PATCH /offers/{offer_id}": "marketing admin",
    "GET /offers/{offer_id}/coupons": "marketing admin",
    "POST /offers/{offer_id}/coupons": "marketing admin",
    "POST /coupons/validate": "tills shop admin",
    "GET /coupons/expiring": "marketing admin",
    "GET /rewards": "tills shop marketing admin",
    "POST /rewards": "marketing admin",
    "PATCH /rewards/{reward_id}": "marketing admin",
    "POST /rewards/{reward_id}/claims": "tills shop admin",
    "GET /messages": "marketing admin",
    "GET /messages/{message_id}": "marketing admin",
    "GET /surveys": "marketing admin",
    "POST /surveys": "marketing admin",
    "GET /surveys/{survey_id}": "marketing admin",
    "PATCH /surveys/{survey_id}": "marketing admin",
    "GET /surveys/{survey_id}/results": "marketing admin",
    "GET /surveys/{survey_id}/trend": "marketing admin",
    "GET /surveys/{survey_id}/comments": "marketing admin",
    "GET /segments": "marketing admin",
    "POST /segments": "marketing admin",
    "POST /segments/preview": "marketing admin",
    "GET /segments/{segment_id}": "marketing admin",
    "PATCH /segments/{segment_id}": "marketing admin",
    "GET /segments/{segment_id}/preview": "marketing admin",
    "GET /campaigns": "marketing admin",
    "POST /campaigns": "marketing admin",
    "GET /campaigns/{campaign_id}": "marketing admin",
    "PATCH /campaigns/{campaign_id}": "marketing admin",
    "POST /campaigns/{campaign_id}/activate": "marketing admin",
    "POST /campaigns/{campaign_id}/pause": "marketing admin",
    "GET /campaigns/{campaign_id}/report": "marketing admin",
}


BODIES: dict[str, dict] = {
    "POST /purchases/{purchase_id}/claim": {"customer": {"id": "{customer_id}"}},
    "POST /purchases/{purchase_id}/returns": {"return_id": "AUTHZ-RETURN"},
}
