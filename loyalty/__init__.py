"""Loyalty program: tiers, earning rules, purchases and returns, points ledger, offers,
coupons and rewards."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register loyalty's blueprints, commands and profile fields."""
    from crm import signals
    from crm.api import api_of
    from crm.customers import profile_extensions
    from crm.demo import demo_extensions
    from crm.privacy import export_sections
    from crm.timeline import timeline_sources
    from loyalty import (
        demo,
        fraud,
        held_returns,
        history,
        models,  # noqa: F401  (tables known to migrations)
        referral_models,  # noqa: F401  (tables known to migrations)
        referrals,
    )
    from loyalty.cli import loyalty_cli, recommendations_cli
    from loyalty.merging import on_merged, on_unmerged
    from loyalty.offer_routes import offers_blp, rewards_blp
    from loyalty.points import profile_extension
    from loyalty.product_routes import products_blp, recommendations_blp
    from loyalty.referral_routes import referrals_blp, share_page
    from loyalty.routes import points_blp, program_blp, purchases_blp

    api = api_of(app)
    api.register_blueprint(program_blp, url_prefix="/api/v1/loyalty")
    api.register_blueprint(purchases_blp, url_prefix="/api/v1")
    api.register_blueprint(points_blp, url_prefix="/api/v1/customers")
    api.register_blueprint(offers_blp, url_prefix="/api/v1")
    api.register_blueprint(rewards_blp, url_prefix="/api/v1")
    api.register_blueprint(referrals_blp, url_prefix="/api/v1")
    app.register_blueprint(share_page)
    app.cli.add_command(loyalty_cli)
    fraud.init_app(app)
    held_returns.init_app(app)
    api.register_blueprint(products_blp, url_prefix="/api/v1")
    api.register_blueprint(recommendations_blp, url_prefix="/api/v1/customers")
    app.cli.add_command(loyalty_cli)
    app.cli.add_command(recommendations_cli)
    signals.customer_merged.connect(on_merged)
    signals.customer_unmerged.connect(on_unmerged)
    # Referrals: after on_merged, so that a reversal finds the points on the survivor.
    signals.customer_created.connect(referrals.on_customer_created)
    signals.customer_merged.connect(referrals.on_merged)
    signals.purchase_recorded.connect(referrals.on_purchase)
    signals.purchase_returned.connect(referrals.on_returned)
    signals.referral_codes_check.connect(referrals.on_codes_check)
    signals.referral_codes_given.connect(referrals.on_codes_given)
    for registry, part in ((profile_extensions, profile_extension),
                           (demo_extensions, demo.load),
                           (timeline_sources, history.timeline_sources),
                           (export_sections, history.export_section)):
        if part not in registry:
            registry.append(part)
