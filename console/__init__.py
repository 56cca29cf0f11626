"""The marketers' web console under /console/: server-rendered pages with htmx and
Chart.js (vendored, see console/vendor.json). Views call the same service functions as
the API; nothing imports this package."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from console import (
        campaign_views,  # noqa: F401
        customer_views,  # noqa: F401  (routes)
        message_views,  # noqa: F401
        models,  # noqa: F401  (tables known to migrations)
        segment_views,  # noqa: F401
        setup_views,  # noqa: F401
        signin,  # noqa: F401
        survey_views,  # noqa: F401
        views,  # noqa: F401
    )
    from console.cli import users_cli
    from console.demo import load as load_demo
    from console.web import bp, init_web
    from crm.demo import demo_extensions

    init_web(app)
    if "console" not in app.blueprints:
        app.register_blueprint(bp)
    app.cli.add_command(users_cli)
    if load_demo not in demo_extensions:
        demo_extensions.append(load_demo)
