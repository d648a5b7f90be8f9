"""What the frontend's HTTP ports answer with: requests, responses, routes (:class:`App`) and each connection's
bounds (:class:`Limits`). Routes are regular expressions and every error is JSON; :mod:`.http_server` serves an
``App``.
"""

from __future__ import annotations

import os
import re
import resource
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    client: str
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200) -> Response:
    """A JSON response of ``obj`` (orjson)."""
    return Response(status, orjson.dumps(obj))


def text_response(text: str, status: int = 200) -> Response:
    """A plain-text response."""
    return Response(status, text.encode(), "text/plain; charset=utf-8")


Handler = Callable[[Request], Awaitable[Response]]
ErrorFactory = Callable[[int, str], Response]


def _default_error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


class App:
    """Routes ``(method, regex, handler)``; named groups become ``request.params``."""

    def __init__(self, routes: list[tuple[str, str, Handler]], max_body: int,
                 error: ErrorFactory = _default_error) -> None:
        self.routes = [(m, re.compile(p + r"\Z"), h) for m, p, h in routes]
        self.max_body = max_body
        self.error = error

    def _route(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        path_matched = False
        for m, pattern, handler in self.routes:
            match = pattern.match(path)
            if match:
                path_matched = True
                if m == method:
                    return handler, match.groupdict(), True
        return None, {}, path_matched

    async def handle(self, request: Request) -> Response:
        """The response to ``request`` (its body already whole and within ``max_body``)."""
        handler, params, path_matched = self._route(request.method, request.path)
        if handler is None:
            status = 405 if path_matched else 404
            what = "Method not allowed" if path_matched else "Not found"
            return self.error(status, f"{what}: {request.method} {request.path}")
        request.params = params
        return await handler(request)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Limits:
    """What one HTTP port allows each connection (the README's Security section explains the defaults)."""

    max_head: int = 64 * 1024  # request line and headers together -> 431
    max_url: int = 8 * 1024  # the request target -> 414
    head_timeout: float = 10.0  # from a connection's (or request's) first byte to the end of its head -> 408
    body_timeout: float = 30.0  # from the end of the head to the end of the body -> 408
    keep_alive: float = 5.0  # an idle keep-alive connection closes after this
    max_connections: int = 1024  # open connections; past it the oldest only-waiting one is closed, else 503

    @classmethod
    def from_env(cls, max_connections: int) -> Limits:
        """Defaults, each overridable by a ``CLIPPER_DEPLOY_HTTP_*`` variable."""
        d = cls()
        return cls(int(_env_float("CLIPPER_DEPLOY_HTTP_MAX_HEAD", d.max_head)),
                   int(_env_float("CLIPPER_DEPLOY_HTTP_MAX_URL", d.max_url)),
                   _env_float("CLIPPER_DEPLOY_HTTP_HEAD_TIMEOUT", d.head_timeout),
                   _env_float("CLIPPER_DEPLOY_HTTP_BODY_TIMEOUT", d.body_timeout),
                   _env_float("CLIPPER_DEPLOY_HTTP_KEEP_ALIVE", d.keep_alive),
                   int(_env_float("CLIPPER_DEPLOY_HTTP_MAX_CONNECTIONS", max_connections)))


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (every connection is a descriptor); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return int(soft if soft != resource.RLIM_INFINITY else target)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return int(soft)
    return int(target)


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (port 0: a free one). With ``reuse_port``, other
    processes may listen on the same port and the kernel spreads connections among them (``SO_REUSEPORT``; Linux
    lets only processes of the same user join)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock
