"""A local HTTP server that receives our webhooks, records each request and answers
with the statuses it is told (then 200), for tests and the delivery benchmark
(``python -m tests.webhook_receiver --port N``: GET /_stats counts what arrived)."""

from __future__ import annotations

import argparse
import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.answers: deque[int] = deque()
        self.first = self.last = 0.0  # when the first and the last request arrived
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.first = receiver.first or time.time()
                    receiver.last = time.time()
                    receiver.received.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()},
                        body.decode()))
                    status = receiver.answers.popleft() if receiver.answers else 200
                answer = b'{"ok": true}' if status < 300 else b"no thanks"
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                with receiver.lock:
                    ids = receiver.ids()
                answer = json.dumps({"requests": len(ids), "distinct": len(set(ids)),
                                     "first": receiver.first, "last": receiver.last}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # socketserver's 5 refuses bursts of connections

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks"

    def use_tls(self, context: ssl.SSLContext) -> None:
        """Answer https instead (before start)."""
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, *statuses: int) -> None:
        self.answers.extend(statuses)

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    Receiver(parser.parse_args().port).server.serve_forever()
