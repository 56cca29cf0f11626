"""Loyalty program: tiers, earning rules, purchases and returns, points ledger, offers,
coupons and rewards."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register loyalty's blueprints, commands, jobs and signal handlers."""
