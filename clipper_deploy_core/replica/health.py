"""The replica's health endpoint, for Docker health checks and Kubernetes probes.

``GET /health/live`` answers 200 while the process runs (also while the model loads);
``GET /health/ready`` answers 200 only once the model is loaded and the replica is linked to its
frontend, else 503. It runs in a thread of its own, so it answers while the model computes.
``CLIPPER_HEALTH_PORT`` turns it on, bound to ``CLIPPER_HEALTH_HOST`` (loopback unless the manager
says otherwise: Kubernetes probes come from the kubelet, Docker's health check runs inside the
container); port 0 picks a free port and writes it to ``CLIPPER_HEALTH_PORT_FILE``, for probes inside
the container (several replicas may share the host's network).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # http.server is imported only when the health port is asked for
    from http.server import ThreadingHTTPServer

DEFAULT_PORT_FILE = "/tmp/clipper-health-port"


class ReplicaHealth:
    def __init__(self) -> None:
        self.status = "loading"  # loading | ready | disconnected
        self.server: ThreadingHTTPServer | None = None

    def start(self, port: int, port_file: str | None, host: str = "127.0.0.1") -> int:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health/live":
                    code = 200
                elif self.path == "/health/ready":
                    code = 200 if health.status == "ready" else 503
                else:
                    code = 404
                body = json.dumps({"status": health.status}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every second would drown the replica's own log

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        actual = int(self.server.server_address[1])
        if port_file:
            tmp = Path(port_file + ".tmp")
            tmp.write_text(str(actual))
            tmp.replace(port_file)
        threading.Thread(target=self.server.serve_forever, name="health", daemon=True).start()
        return actual


def start_from_env() -> ReplicaHealth:
    health = ReplicaHealth()
    port = os.environ.get("CLIPPER_HEALTH_PORT")
    if port is not None:
        health.start(int(port), os.environ.get("CLIPPER_HEALTH_PORT_FILE", DEFAULT_PORT_FILE),
                     os.environ.get("CLIPPER_HEALTH_HOST", "127.0.0.1"))
    return health
