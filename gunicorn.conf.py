"""gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app`. Several workers share the
database; Prometheus samples from all of them are added up (multiprocess mode)."""

import os
import tempfile

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
accesslog = None  # the app writes its own structured request log
# Requests gunicorn refuses itself are answered as problem documents, logged without the
# request line. Its limits lie above the app's own (MAX_URL_BYTES 4096, MAX_HEADER_BYTES
# 8000: 414/431 problems with the request id), which answer first.
worker_class = "crm.gunicorn_worker.ProblemSyncWorker"
limit_request_line = 8190  # gunicorn's largest
limit_request_field_size = 16380
limit_request_fields = 200

# Must be set before the workers import prometheus_client.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="crm-metrics-")


def child_exit(server, worker):
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
