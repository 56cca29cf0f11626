"""Request ids, one structured (JSON) log line per request, and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
request_log = logging.getLogger("crm.request")


def describe_exception(error: BaseException) -> str:
    """An error for the log: its class and the frames it went through (file, line,
    function), never its message, which may quote a customer's values or SQL."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{type(error).__name__} at " + " <- ".join(
        f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames[-12:]))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[1] is not None:
            entry["exc"] = describe_exception(record.exc_info[1])
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # APScheduler says "Running job ... executed successfully" for every run of every
    # job (some run each second): its failures still show, as warnings and errors.
    logging.getLogger("apscheduler.executors").setLevel(
        max(logging.WARNING, root.getEffectiveLevel()))


def _start() -> None:
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    key = g.get("api_key")
    request_log.info(
        "%s %s %s", request.method, request.path, response.status_code,
        extra={"fields": {
            "request_id": g.get("request_id"),
            "method": request.method,
            "path": request.path,
            "endpoint": request.endpoint,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter()))
                                 * 1000, 2),
            "api_key_id": key.id if key is not None else None,
            "remote_addr": request.remote_addr,
        }},
    )
    return response


def init_observability(app: Flask) -> None:
    configure_logging(app.config["LOG_LEVEL"])
    app.before_request(_start)
    app.after_request(_finish)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several gunicorn workers (gunicorn.conf.py sets this): each writes its samples
        # to that folder and /metrics on any worker adds them all up.
        metrics: PrometheusMetrics = GunicornInternalPrometheusMetrics(
            app, group_by="endpoint", defaults_prefix="crm"
        )
    else:
        # A registry per app: several apps in one process (tests) must not collide.
        metrics = PrometheusMetrics(
            app,
            registry=CollectorRegistry(auto_describe=True),
            group_by="endpoint",
            defaults_prefix="crm",
        )
    app.extensions["metrics_multiprocess"] = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    metrics.info("crm_app_info", "CRM and loyalty service", version="0.1.0")
    app.extensions["metrics"] = metrics


def add_collector(app: Flask, collector: Collector) -> None:
    """Serve ``collector``'s metrics on /metrics too (a collector that reads its figures
    when scraped, from the database, say). Under gunicorn (PROMETHEUS_MULTIPROC_DIR) the
    exporter answers from the workers' sample files alone, so these are added to its
    answer, in the format it chose."""
    if not _multiprocess():
        app.extensions["metrics"].registry.register(collector)
        return
    extra = app.extensions.get("metrics_extra")
    if extra is None:
        extra = app.extensions["metrics_extra"] = CollectorRegistry(auto_describe=True)
        app.after_request(_add_extra_metrics)
    extra.register(collector)


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


_EOF = b"# EOF\n"  # OpenMetrics' last line


def _add_extra_metrics(response: Response) -> Response:
    if request.endpoint != "prometheus_metrics" or response.status_code != 200:
        return response
    encoder, _ = choose_encoder(request.headers.get("Accept", ""))
    more = encoder(current_app.extensions["metrics_extra"])
    body = response.get_data()
    if body.endswith(_EOF):
        body = body[:-len(_EOF)]
    elif more.endswith(_EOF):
        more = more[:-len(_EOF)]
    response.set_data(body + more)
    return response
def register_metrics(app: Flask, *collectors: Collector) -> None:
    """Serve module-level metrics on the app's /metrics. Under gunicorn (multiprocess
    mode) every process writes them to the shared folder and /metrics reads them there;
    otherwise the app has a registry of its own, and they are added to it."""
    if app.extensions.get("metrics_multiprocess"):
        return
    registry = app.extensions["metrics"].registry
    for collector in collectors:
        registry.register(collector)
