"""A small ASGI layer for the frontend's HTTP ports, served by uvicorn (httptools, uvloop).

A raw ASGI app keeps the per-request cost of the query path small; routes are regular
expressions, bodies are capped before they are read, and every error is JSON.

Every connection is bounded (:class:`Limits`): the request line (414) and header block (431) are capped
before the parser buffers them, a head or body that does not arrive in time is answered 408, idle
keep-alive connections close, and past the connection cap the oldest connection that is only waiting
(no request in progress) makes room, else the new one gets a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        handler, params, path_matched = self._route(method, path)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if handler is None:
            status = 405 if path_matched else 404
            what = "Method not allowed" if path_matched else "Not found"
            resp = self.error(status, f"{what}: {method} {path}")
        else:
            try:
                body = await self._read_body(headers, receive)
            except _Disconnected:
                return  # the client went (or timed out) before its body was whole: never act on part of it
            if body is None:
                resp = self.error(413, f"The request body exceeds the limit of {self.max_body} bytes "
                                       f"(set max_request_bytes to change it)")
            else:
                client = scope.get("client") or ("", 0)
                resp = await handler(Request(method, path, headers, client[0], body, params))
        out_headers = [(b"content-type", resp.content_type.encode()), (b"content-length", str(len(resp.body)).encode())]
        out_headers += [(k.encode(), v.encode()) for k, v in resp.headers.items()]
        await send({"type": "http.response.start", "status": resp.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": resp.body})

    async def _read_body(self, headers: dict[str, str], receive: Any) -> bytes | None:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


class _Disconnected(Exception):
    pass


class _Refused(Exception):
    """Raised from a parser callback once the request was refused, to stop the parser."""


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


class _CoalescingTransport:
    """Writes made in one turn of the event loop leave in one send. uvicorn writes a response's head and
    body separately: on loopback each write is a syscall and a packet the kernel processes, which cost
    the frontend's single core about a third of its time per request (py-spy, mlp at c=32)."""

    __slots__ = ("_buf", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._buf: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._buf:
            self._loop.call_soon(self._flush)
        self._buf.append(data)

    def _flush(self) -> None:
        if self._buf:
            data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
            self._buf.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _raw_error(status: int, reason: str, cause: str) -> bytes:
    body = orjson.dumps({"error": reason, "cause": cause})
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n").encode() + body


class _HttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol with one send per response and the bounds of :class:`Limits`."""

    limits: ClassVar[Limits] = Limits()
    waiting: ClassVar[dict[_HttpProtocol, None]]  # this server's connections with no request in progress, oldest first

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _CoalescingTransport(transport, self.loop)))
        self._in_head, self._head_bytes, self._url_bytes = True, 0, 0
        self._body_timer: asyncio.TimerHandle | None = None
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.limits.head_timeout,
                                                                             self._head_timed_out)
        if len(self.connections) > self.limits.max_connections:
            oldest = next(iter(self.waiting), None)
            if oldest is None:
                self._reject(503, "Service unavailable", f"The server holds its maximum of "
                                                         f"{self.limits.max_connections} connections; retry shortly")
                return
            self._close_waiting(oldest)
        self.waiting[self] = None

    @staticmethod
    def _close_waiting(conn: _HttpProtocol) -> None:
        conn.waiting.pop(conn, None)
        conn.connections.discard(conn)  # counted out now: its connection_lost comes on a later turn of the loop
        conn.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.pop(self, None)
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def _reject(self, status: int, reason: str, cause: str) -> None:
        self.waiting.pop(self, None)
        if not self.transport.is_closing():
            self.transport.write(_raw_error(status, reason, cause))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        # The parser buffers a head until it is whole (at a cost that grows with its square): feed it no more
        # than the cap allows, and answer 414/431 once a head outgrows it.
        while self._in_head and not self.transport.is_closing():
            room = self.limits.max_head - self._head_bytes
            part, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self._head_bytes += len(part)
            if part:
                self._feed(part)  # on_url answers 414 itself, as soon as the request target outgrows its cap
            if self._in_head and self._head_bytes >= self.limits.max_head:
                self._reject(431, "Request header fields too large",
                             f"The request line and headers exceed {self.limits.max_head} bytes")
                return
            if not data:
                return
        if data and not self.transport.is_closing():
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            # Our own refusals stop the parser by raising from a callback; anything else is malformed HTTP.
            self._reject(400, "Bad request", f"Invalid HTTP request: {e}")
        except httptools.HttpParserUpgrade:
            self._reject(400, "Bad request", "Protocol upgrades (WebSocket, h2c) are not served here")

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.limits.max_url:
            self._reject(414, "URI too long", f"The request target exceeds {self.limits.max_url} bytes")
            raise _Refused
        super().on_url(url)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.waiting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_head, self._head_bytes, self._url_bytes = True, 0, 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._in_head:
            self.waiting[self] = None
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and (self.cycle is None or self.cycle.response_complete):
            if self._head_bytes:
                self._reject(408, "Request timeout", f"The request's head did not arrive within "
                                                     f"{self.limits.head_timeout:g}s")
            else:
                self._close_waiting(self)  # an idle connection: closed without a word, as keep-alive is

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if not self._in_head and self.cycle is not None and self.cycle.more_body:
            self._reject(408, "Request timeout", f"The request's body did not arrive within "
                                                 f"{self.limits.body_timeout:g}s")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the cluster process handles its own signals and stops every server itself


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


def make_server(app: App, limits: Limits | None = None) -> uvicorn.Server:
    """A uvicorn server for ``app`` on our bounded httptools protocol (``limits``)."""
    limits = limits or Limits()
    protocol = type("HttpProtocol", (_HttpProtocol,), {"limits": limits, "waiting": {}})
    config = uvicorn.Config(app, http=protocol, loop="none", lifespan="off", access_log=False,
                            log_level="warning", server_header=False, date_header=False, backlog=2048,
                            proxy_headers=False, timeout_keep_alive=max(1, round(limits.keep_alive)))
    return _Server(config)
