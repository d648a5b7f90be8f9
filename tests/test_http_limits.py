"""The query port's bounds against a real cluster, over raw sockets: header and request-line caps, each timeout,
the connection cap. The cluster runs with 1 s timeouts and a cap of 40 connections, so each test is quick."""

import json
import os
import socket
import time

import pytest

from clipper_deploy_core import ClipperConnection, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.http_client import request
from clipper_deploy_core.testing import predict

LIMITS = {"CLIPPER_DEPLOY_HTTP_HEAD_TIMEOUT": "1", "CLIPPER_DEPLOY_HTTP_BODY_TIMEOUT": "1",
          "CLIPPER_DEPLOY_HTTP_KEEP_ALIVE": "1", "CLIPPER_DEPLOY_HTTP_MAX_CONNECTIONS": "40"}


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    saved = {k: os.environ.get(k) for k in LIMITS}
    os.environ.update(LIMITS)  # read by the cluster process it starts
    try:
        c = ClipperConnection(LocalContainerManager("limits", 0, 0, 0, home=tmp_path_factory.mktemp("limits")))
        c.start_clipper()
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    create_endpoint(c, "lim", "doubles", lambda xs: [str(len(x)) for x in xs], slo_micros=5_000_000)
    yield c
    c.stop_all()


def connect(conn):
    host, port = conn.get_query_addr().rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def response(sock, timeout=10.0):
    """``(status, json body)`` of the one response the server sends before it closes, or ``(None, None)`` when it
    closes without a word. Raises ``TimeoutError`` if it neither answers nor closes in ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    if not data:
        return None, None
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def still_serves(conn):
    assert predict(conn, "lim", {"input": [1.0, 2.0]})["output"] == 2


def test_a_1_mib_header_is_refused_with_431_before_it_is_parsed(conn):
    sock = connect(conn)
    started = time.monotonic()
    sock.sendall(b"POST /lim/predict HTTP/1.1\r\nHost: x\r\nX-Big: ")
    try:
        for _ in range(16):
            sock.sendall(b"a" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed early: what this test wants
    status, body = response(sock)
    assert status == 431 and "65536" in body["cause"]
    assert time.monotonic() - started < 5
    still_serves(conn)


def test_a_long_request_line_is_refused_with_414(conn):
    sock = connect(conn)
    sock.sendall(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body = response(sock)
    assert status == 414 and "request target" in body["cause"]
    still_serves(conn)


def test_a_connection_that_sends_nothing_is_closed(conn):
    sock = connect(conn)
    started = time.monotonic()
    assert response(sock) == (None, None)
    assert time.monotonic() - started < 5


def test_incomplete_headers_time_out_with_408(conn):
    sock = connect(conn)
    sock.sendall(b"POST /lim/predict HTTP/1.1\r\nHost: x\r\n")
    status, body = response(sock)
    assert status == 408 and "head" in body["cause"]


def test_an_incomplete_body_times_out_with_408_and_is_never_acted_on(conn):
    sock = connect(conn)
    sock.sendall(b"POST /lim/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n" + b'{"input": [1.0, 2.0]')
    status, body = response(sock)
    assert status == 408 and "body" in body["cause"]


def test_an_idle_keep_alive_connection_is_closed(conn):
    sock = connect(conn)
    body = b'{"input": [1.0]}'
    sock.sendall(b"POST /lim/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    sock.settimeout(10)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert sock.recv(65536) == b""  # closed by the server after its keep-alive timeout
    assert time.monotonic() - started < 5


def test_past_the_cap_idle_connections_make_room_for_new_ones(conn):
    idle = [connect(conn) for _ in range(60)]
    try:
        still_serves(conn)  # its new connection pushed out the oldest idle one
        closed = sum(1 for s in idle[:25] if response(s, timeout=5) == (None, None))
        assert closed >= 20
    finally:
        for s in idle:
            s.close()


def test_past_the_cap_with_every_connection_busy_a_new_one_gets_503(conn):
    busy = []
    try:
        for _ in range(40):  # each mid-request (head sent, body pending): nothing to push out
            s = connect(conn)
            s.sendall(b"POST /lim/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
            busy.append(s)
        # One round trip through the same event loop (the admin port): the heads sent before it have been read.
        assert request("GET", f"http://{conn.cm.get_admin_addr()}/admin/ping")[0] == 200
        s = connect(conn)
        status, body = response(s)
        assert status == 503 and "maximum of 40 connections" in body["cause"]
    finally:
        for s in busy:
            s.close()
    still_serves(conn)
