"""The HTTP/1.1 server of the frontend's ports: httptools parses, uvloop (or asyncio) carries the bytes, and
:class:`~.http.App` answers.

Our own protocol, not an ASGI server's: a request is handed to the app whole (head and capped body), and its
response leaves in one write, with no per-request ASGI messages in between. It also keeps the server's imports
small: the cluster process starts faster without uvicorn (and click, which uvicorn imports).

Every connection is bounded (:class:`~.http.Limits`): the request line (414) and header block (431) are capped
before the parser buffers them, a body past ``max_body`` is answered 413 before it is read, a head or body that
does not arrive in time is answered 408, idle keep-alive connections close, and past the connection cap the oldest
connection that is only waiting (no request in progress) makes room, else the new one gets a 503. Pipelined
requests are answered in order, one at a time; a client that does not read its responses stops being read. A client
that half-closes after sending still gets the answers to what it sent before the connection closes.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sys
import traceback
import urllib.parse
from http import HTTPStatus

import httptools
import orjson

from .http import App, Limits, Request, Response

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# After refusing a request whose client may still be sending (413, 414, 431, 400), the connection reads and drops
# what still arrives, for up to this long and this much, before it closes: a client that sends its whole request
# before reading then reads the refusal instead of a connection reset (a "lingering close", as nginx does).
LINGER_S = 2.0
LINGER_BYTES = 64 * 1024 * 1024


def _status_line(status: int) -> bytes:
    return _STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode()


def _raw_error(status: int, reason: str, cause: str) -> bytes:
    body = orjson.dumps({"error": reason, "cause": cause})
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n").encode() + body


def encode_response(resp: Response, keep_alive: bool, head_only: bool = False) -> bytes:
    """The bytes of ``resp``: status line, headers and body, for one write."""
    parts = [_status_line(resp.status), b"content-type: ", resp.content_type.encode("latin-1"),
             b"\r\ncontent-length: ", str(len(resp.body)).encode(), b"\r\n"]
    for name, value in resp.headers.items():
        parts += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(resp.body)
    return b"".join(parts)


class _Refused(Exception):
    """Raised from a parser callback once the request was refused, to stop the parser."""


class _Pending:
    """A request whose head and body are whole, waiting for its turn on a pipelined connection."""

    __slots__ = ("keep_alive", "request")

    def __init__(self, request: Request, keep_alive: bool) -> None:
        self.request, self.keep_alive = request, keep_alive


class _Connections:
    """One server's connections, with those that are only waiting for a request (oldest first)."""

    def __init__(self, app: App, limits: Limits) -> None:
        self.app, self.limits = app, limits
        self.open: set[HttpProtocol] = set()
        self.waiting: dict[HttpProtocol, None] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False


class HttpProtocol(asyncio.Protocol):
    """One connection."""

    def __init__(self, conns: _Connections) -> None:
        self.conns, self.app, self.limits = conns, conns.app, conns.limits
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        try:
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # older httptools: data after a "connection: close" request is an error there
            pass
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client = ""
        self.in_head, self.head_bytes, self.url_bytes = True, 0, 0
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.expect_continue = False
        self.busy = False  # a request is being answered
        self.pipeline: collections.deque[_Pending] = collections.deque()
        self.write_paused = False
        self.lingering, self.lingered = False, 0
        self.client_done = False  # the client half-closed: answer what it sent, then close
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.idle_timer: asyncio.TimerHandle | None = None

    # --- connection -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) else ""
        conns = self.conns
        if conns.closing:
            transport.close()
            return
        conns.open.add(self)
        self.head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)
        if len(conns.open) > self.limits.max_connections:
            oldest = next(iter(conns.waiting), None)
            if oldest is None:
                self._reject(503, "Service unavailable", f"The server holds its maximum of "
                                                         f"{self.limits.max_connections} connections; retry shortly",
                             linger=False)
                return
            oldest._close_quietly()
        conns.waiting[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.open.discard(self)
        self.conns.waiting.pop(self, None)
        self.pipeline.clear()
        for timer in (self.head_timer, self.body_timer, self.idle_timer):
            if timer is not None:
                timer.cancel()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.busy:
            self._next()

    def _close_quietly(self) -> None:
        """Close without a word, as an idle keep-alive connection is closed."""
        self.conns.waiting.pop(self, None)
        self.conns.open.discard(self)  # counted out now: its connection_lost comes on a later turn of the loop
        self.transport.close()

    def _reject(self, status: int, reason: str, cause: str, linger: bool = True) -> None:
        self._refuse(_raw_error(status, reason, cause), linger)

    def _refuse(self, answer: bytes, linger: bool) -> None:
        """Send ``answer`` and end the connection: at once, or after a lingering close."""
        self.conns.waiting.pop(self, None)
        if self.transport.is_closing() or self.lingering:
            return
        self.transport.write(answer)
        if not linger or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the answer is whole: the client sees it end while we drain what it sends
        self.lingering, self.in_head = True, False
        self.pipeline.clear()
        self.idle_timer = self.loop.call_later(LINGER_S, self.transport.close)  # the idle slot: nothing else idles now

    def eof_received(self) -> bool:
        """The client is done sending. The requests it sent are still answered, as a client may half-close after
        its last request and then read; with none left (or while lingering), the connection closes."""
        if self.lingering or not (self.busy or self.pipeline):
            return False
        self.client_done = True
        return True  # keep our side open for the answers

    # --- bytes in ---------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self.lingered += len(data)
            if self.lingered > LINGER_BYTES:
                self.transport.close()
            return
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        # The parser buffers a head until it is whole (at a cost that grows with its square): feed it no more
        # than the cap allows, and answer 414/431 once a head outgrows it.
        while self.in_head and not self.transport.is_closing():
            room = self.limits.max_head - self.head_bytes
            part, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self.head_bytes += len(part)
            if part:
                self._feed(part)  # on_url answers 414 itself, as soon as the request target outgrows its cap
            if self.in_head and self.head_bytes >= self.limits.max_head:
                self._reject(431, "Request header fields too large",
                             f"The request line and headers exceed {self.limits.max_head} bytes")
                return
            if not data:
                return
        if data and not self.transport.is_closing():
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "Bad request", "Protocol upgrades (WebSocket, h2c) are not served here")
        except httptools.HttpParserError as e:
            # Our own refusals stop the parser by raising from a callback; anything else is malformed HTTP.
            self._reject(400, "Bad request", f"Invalid HTTP request: {e}")

    # --- parser callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        """A request begins."""
        self.url, self.headers, self.body, self.body_size = b"", {}, [], 0
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        """Part of the request target: 414 once it outgrows its cap."""
        self.url_bytes += len(url)
        if self.url_bytes > self.limits.max_url:
            self._reject(414, "URI too long", f"The request target exceeds {self.limits.max_url} bytes")
            raise _Refused
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """A header, its name lower-cased (the last of a repeated one wins)."""
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").rstrip(" \t")
        if key == "expect" and text.lower() == "100-continue":
            self.expect_continue = True
        self.headers[key] = text

    def on_headers_complete(self) -> None:
        """The head is whole: 413 for a declared body past the cap, else the body's clock starts."""
        self.in_head = False
        self.conns.waiting.pop(self, None)
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.app.max_body:
            self._too_large()
        self.body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)
        if self.expect_continue and not self.busy and not self.pipeline:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        """Part of the body: 413 as soon as it outgrows the cap."""
        self.body_size += len(body)
        if self.body_size > self.app.max_body:
            self._too_large()
        self.body.append(body)

    def _too_large(self) -> None:
        # Refused before the rest is read: the connection closes, as the rest of the body cannot be skipped safely.
        self._respond_now(self.app.error(413, f"The request body exceeds the limit of {self.app.max_body} bytes "
                                              f"(set max_request_bytes to change it)"))
        raise _Refused

    def _respond_now(self, resp: Response) -> None:
        self._refuse(encode_response(resp, keep_alive=False), linger=True)

    def on_message_complete(self) -> None:
        """The request is whole: answered now, or after those before it on this connection."""
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        self.in_head, self.head_bytes, self.url_bytes = True, 0, 0
        if self.parser.should_upgrade():
            return  # refused by _feed once the parser raises HttpParserUpgrade: never answered
        method = self.parser.get_method().decode("ascii", "replace")
        try:
            raw_path = httptools.parse_url(self.url).path or b"/"
            path = raw_path.decode("ascii")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            self._reject(400, "Bad request", "The request target is not a valid URL path")
            raise _Refused from None
        if "%" in path:
            path = urllib.parse.unquote(path)
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        pending = _Pending(Request(method, path, self.headers, self.client, body), self.parser.should_keep_alive())
        self.pipeline.append(pending)
        if self.busy or self.write_paused:
            self.transport.pause_reading()  # answered in order: read no further until this one's turn
        else:
            self._next()

    # --- answering --------------------------------------------------------------------------------
    def _next(self) -> None:
        if not self.pipeline or self.transport.is_closing():
            return
        pending = self.pipeline.popleft()
        self.busy = True
        task = self.loop.create_task(self._answer(pending))
        self.conns.tasks.add(task)
        task.add_done_callback(self.conns.tasks.discard)

    async def _answer(self, pending: _Pending) -> None:
        request = pending.request
        try:
            resp = await self.app.handle(request)
        except Exception:  # noqa: BLE001 - a bug in a handler: the client gets a 500, the log the traceback
            traceback.print_exc(file=sys.stderr)
            resp = self.app.error(500, f"Internal error answering {request.method} {request.path}")
        keep_alive = pending.keep_alive and not self.conns.closing
        self.busy = False
        if self.transport.is_closing() or self.lingering:
            return
        keep_alive = keep_alive and not (self.client_done and not self.pipeline)
        self.transport.write(encode_response(resp, keep_alive, head_only=request.method == "HEAD"))
        if not keep_alive:
            self.transport.close()
            return
        if self.pipeline:
            if not self.write_paused:
                self._next()
            return
        self.transport.resume_reading()
        if self.in_head and self.head_bytes == 0:
            self.conns.waiting[self] = None
            self.idle_timer = self.loop.call_later(self.limits.keep_alive, self._idle_timed_out)
        if self.head_timer is None and self.in_head:
            self.head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    # --- timers -----------------------------------------------------------------------------------
    def _idle_timed_out(self) -> None:
        self.idle_timer = None
        if self.in_head and self.head_bytes == 0 and not self.busy and not self.pipeline:
            self._close_quietly()

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.in_head and not self.busy and not self.pipeline:
            if self.head_bytes:
                self._reject(408, "Request timeout", f"The request's head did not arrive within "
                                                     f"{self.limits.head_timeout:g}s", linger=False)
            else:
                self._close_quietly()

    def _body_timed_out(self) -> None:
        self.body_timer = None
        if not self.in_head:
            self._reject(408, "Request timeout", f"The request's body did not arrive within "
                                                 f"{self.limits.body_timeout:g}s", linger=False)

    def shut(self) -> None:
        """Server stopping: close now if idle, else after the response in progress."""
        if not self.busy and not self.pipeline:
            self.transport.close()


class HttpServer:
    """``app`` served on a listening socket."""

    def __init__(self, app: App, limits: Limits | None = None) -> None:
        self.conns = _Connections(app, limits or Limits())
        self.server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        """Accept connections on ``sock`` (bound and listening)."""
        self.server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(self.conns), sock=sock,
                                                                     backlog=2048)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in progress be answered (up to ``grace`` seconds), close the rest."""
        self.conns.closing = True
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns.open):
            conn.shut()
        tasks = list(self.conns.tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
        for conn in list(self.conns.open):
            conn.transport.close()
