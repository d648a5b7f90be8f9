"""A small ASGI layer for the frontend's HTTP ports, served by uvicorn (httptools, uvloop).

A raw ASGI app keeps the per-request cost of the query path small; routes are regular
expressions, bodies are capped before they are read, and every error is JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

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
    return Response(status, orjson.dumps(obj))


def text_response(text: str, status: int = 200) -> Response:
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
            body = await self._read_body(headers, receive)
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
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


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


class _HttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _CoalescingTransport(transport, self.loop)))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the cluster process handles its own signals and stops every server itself


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def make_server(app: App) -> uvicorn.Server:
    config = uvicorn.Config(app, http=_HttpProtocol, loop="none", lifespan="off", access_log=False,
                            log_level="warning", server_header=False, date_header=False, backlog=2048,
                            proxy_headers=False)
    return _Server(config)
