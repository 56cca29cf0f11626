"""Segments, campaigns, surveys and SMS messaging."""

from __future__ import annotations

import threading

from flask import Flask


def init_app(app: Flask) -> None:
    """Register campaigns' blueprints, commands, jobs and signal handlers."""
    from campaigns import (
        demo,
        history,
        hook_events,
        hook_models,  # noqa: F401  (tables known to migrations)
        models,  # noqa: F401  (tables known to migrations)
        surveys,
    )
    from campaigns.cli import messages_cli, scheduler_cli, surveys_cli, webhooks_cli
    from campaigns.hook_routes import hooks_blp
    from campaigns.planner import on_tier_changed
    from campaigns.routes import campaigns_blp, messages_blp, segments_blp, surveys_blp
    from campaigns.segments import member_condition
    from campaigns.survey_page import survey_page
    from campaigns.verification import verification_blp
    from campaigns.webhooks import webhooks
    from crm import signals
    from crm.api import api_of
    from crm.customers import customer_filters
    from crm.demo import demo_extensions
    from crm.privacy import export_sections
    from crm.timeline import timeline_sources, timeline_texts

    api = api_of(app)
    api.register_blueprint(messages_blp, url_prefix="/api/v1")
    api.register_blueprint(surveys_blp, url_prefix="/api/v1")
    api.register_blueprint(segments_blp, url_prefix="/api/v1")
    api.register_blueprint(campaigns_blp, url_prefix="/api/v1")
    api.register_blueprint(verification_blp, url_prefix="/api/v1")
    api.register_blueprint(hooks_blp, url_prefix="/api/v1")
    hook_events.connect()
    customer_filters["segment_id"] = member_condition
    app.register_blueprint(webhooks)
    app.register_blueprint(survey_page)
    for command in (scheduler_cli, messages_cli, surveys_cli, webhooks_cli):
        app.cli.add_command(command)
    signals.purchase_recorded.connect(surveys.on_purchase)
    signals.customer_erased.connect(history.on_erased)
    signals.customer_merged.connect(history.on_merged)
    signals.tier_changed.connect(on_tier_changed)
    for registry, part in ((demo_extensions, demo.load),
                           (timeline_sources, history.timeline_sources),
                           (export_sections, history.export_section)):
        if part not in registry:
            registry.append(part)
    timeline_texts.update(history.timeline_texts)
    if app.config["SCHEDULER_EMBEDDED"]:
        _embed_scheduler(app)


def _embed_scheduler(app: Flask) -> None:
    """SCHEDULER_EMBEDDED=1: the web process runs the scheduler too, from its first
    request on (under several workers, one of them is active)."""
    started = threading.Lock()

    @app.before_request
    def start_scheduler() -> None:
        if "scheduler_stop" in app.extensions:
            return
        with started:
            if "scheduler_stop" not in app.extensions:
                from campaigns.scheduler import start_embedded

                # set this event to stop the scheduler
                app.extensions["scheduler_stop"] = start_embedded(app)
