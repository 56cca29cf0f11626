"""Loyalty program: tiers, earning rules, purchases and returns, points ledger, offers,
coupons and rewards."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register loyalty's blueprints, commands and profile fields."""
    from crm import signals
    from crm.api import api
    from crm.customers import profile_extensions
    from loyalty import models  # noqa: F401  (tables known to migrations)
    from loyalty.cli import loyalty_cli
    from loyalty.merging import on_merged, on_unmerged
    from loyalty.offer_routes import offers_blp, rewards_blp
    from loyalty.points import profile_extension
    from loyalty.routes import points_blp, program_blp, purchases_blp

    api.register_blueprint(program_blp, url_prefix="/api/v1/loyalty")
    api.register_blueprint(purchases_blp, url_prefix="/api/v1")
    api.register_blueprint(points_blp, url_prefix="/api/v1/customers")
    api.register_blueprint(offers_blp, url_prefix="/api/v1")
    api.register_blueprint(rewards_blp, url_prefix="/api/v1")
    app.cli.add_command(loyalty_cli)
    signals.customer_merged.connect(on_merged)
    signals.customer_unmerged.connect(on_unmerged)
    if profile_extension not in profile_extensions:
        profile_extensions.append(profile_extension)
