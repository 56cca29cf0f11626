"""Segments, campaigns, surveys and SMS messaging."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register campaigns' blueprints, commands, jobs and signal handlers."""
