"""HTTP/1.1 as the query port speaks it (frontend/http_server.py), over raw sockets against a real cluster:
keep-alive, pipelining, Expect: 100-continue, HTTP/1.0, HEAD, chunked bodies, and the body cap before the body."""

import json
import socket

import pytest

from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.testing import local_cluster

MAX_BODY = 1024


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with local_cluster("proto", tmp_path_factory.mktemp("proto"), max_request_bytes=MAX_BODY) as c:
        create_endpoint(c, "n", "doubles", lambda xs: [str(len(x)) for x in xs], slo_micros=5_000_000)
        yield c


def connect(conn):
    host, port = conn.get_query_addr().rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=20)
    s.settimeout(20)
    return s


def post(n, version=b"HTTP/1.1", extra=b""):
    body = json.dumps({"input": [1.0] * n}).encode()
    return (b"POST /n/predict " + version + b"\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


class Reader:
    """Reads whole responses (content-length framed) off one socket."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), headers

    def response(self, head_only=False):
        status, headers = self.head()
        n = 0 if head_only else int(headers["content-length"])
        while len(self.buf) < n:
            self._more()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, (json.loads(body) if body else None)

    def closed(self):
        try:
            self._more()
        except (EOFError, ConnectionResetError):
            return True
        return False


def test_one_connection_carries_many_requests(conn):
    with connect(conn) as s:
        r = Reader(s)
        for n in range(1, 51):
            s.sendall(post(n))
            status, headers, body = r.response()
            assert status == 200 and body["output"] == n and "connection" not in headers


def test_pipelined_requests_are_answered_in_order_on_one_connection(conn):
    with connect(conn) as s:
        s.sendall(b"".join(post(n) for n in range(1, 21)))  # one send: twenty requests back to back
        r = Reader(s)
        assert [r.response()[2]["output"] for _ in range(20)] == list(range(1, 21))


def test_expect_100_continue_is_answered_before_the_body_is_sent(conn):
    with connect(conn) as s:
        body = json.dumps({"input": [1.0, 2.0, 3.0]}).encode()
        s.sendall(b"POST /n/predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                  % len(body))
        r = Reader(s)
        assert r.head()[0] == 100  # the server asks for the body: nothing else has been sent yet
        s.sendall(body)
        assert r.response()[2]["output"] == 3


def test_a_declared_body_over_the_cap_gets_413_without_the_body_being_sent(conn):
    with connect(conn) as s:
        s.sendall(b"POST /n/predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        r = Reader(s)
        status, headers, body = r.response()
        assert status == 413 and f"limit of {MAX_BODY} bytes" in json.dumps(body) and headers["connection"] == "close"
        assert r.closed()


def test_a_chunked_body_is_read_and_one_past_the_cap_gets_413(conn):
    with connect(conn) as s:
        body = json.dumps({"input": [1.0, 2.0]}).encode()
        s.sendall(b"POST /n/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                  b"%x\r\n%s\r\n" % (5, body[:5]) + b"%x\r\n%s\r\n" % (len(body) - 5, body[5:]) + b"0\r\n\r\n")
        assert Reader(s).response()[2]["output"] == 2
    with connect(conn) as s:
        s.sendall(b"POST /n/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):  # 4 x 400 bytes, never declared: refused once past the cap
            try:
                s.sendall(b"190\r\n" + b" " * 400 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        status, _, reply = Reader(s).response()
        assert status == 413 and f"limit of {MAX_BODY} bytes" in json.dumps(reply)


def test_http_1_0_gets_its_answer_and_the_connection_closes(conn):
    with connect(conn) as s:
        s.sendall(post(4, b"HTTP/1.0"))
        r = Reader(s)
        status, headers, body = r.response()
        assert status == 200 and body["output"] == 4 and headers["connection"] == "close"
        assert r.closed()


def test_connection_close_from_the_client_is_honoured(conn):
    with connect(conn) as s:
        s.sendall(post(2, extra=b"Connection: close\r\n"))
        r = Reader(s)
        assert r.response()[2]["output"] == 2
        assert r.closed()


def test_head_gets_the_head_of_the_answer_and_no_body(conn):
    with connect(conn) as s:
        s.sendall(b"HEAD /n/predict HTTP/1.1\r\nHost: x\r\n\r\n")
        r = Reader(s)
        status, headers, body = r.response(head_only=True)
        assert status == 405 and int(headers["content-length"]) > 0 and body is None
        s.sendall(post(3))  # nothing was left over on the connection: the next answer parses
        assert r.response()[2]["output"] == 3


def test_a_path_that_is_not_ascii_gets_a_400_in_json(conn):
    with connect(conn) as s:
        s.sendall(b"GET /\xff\xfe/predict HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = Reader(s).response()
        assert status == 400 and "error" in body


def test_a_percent_encoded_path_is_decoded_before_routing(conn):
    with connect(conn) as s:
        body = json.dumps({"input": [1.0]}).encode()
        s.sendall(b"POST /%6E/predict HTTP/1.1\r\nHost: x\r\n" + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert Reader(s).response()[2]["output"] == 1


def _requests_counted(conn):
    from clipper_deploy_core.http_client import request

    status, text = request("GET", f"http://{conn.get_query_addr()}/metrics")
    assert status == 200
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('clipper_app_requests_total{app="n"}'))


def test_an_upgrade_request_gets_a_400_and_is_never_answered_by_the_model(conn):
    before = _requests_counted(conn)
    with connect(conn) as s:
        s.sendall(post(2, extra=b"Connection: Upgrade\r\nUpgrade: websocket\r\n"))
        r = Reader(s)
        status, _, body = r.response()
        assert status == 400 and "upgrades" in body["cause"]
        assert r.closed()
    assert _requests_counted(conn) == before
    with connect(conn) as s:  # the counter moves for a request that is answered
        s.sendall(post(2))
        assert Reader(s).response()[2]["output"] == 2
    assert _requests_counted(conn) == before + 1


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_client_that_sends_a_whole_oversized_body_before_reading_gets_the_413(conn, framing):
    # 4 MiB, more than the socket buffers hold: had the server closed at once, the rest of the send would meet a
    # connection reset and the client would never read the 413.
    payload = b" " * (4 * 1024 * 1024)
    with connect(conn) as s:
        if framing == "chunked":
            head = b"POST /n/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            s.sendall(head + b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n")
        else:
            s.sendall(b"POST /n/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
        r = Reader(s)
        status, headers, body = r.response()
        assert status == 413 and f"limit of {MAX_BODY} bytes" in json.dumps(body)
        assert headers["connection"] == "close" and r.closed()


def test_a_request_line_over_the_cap_sent_whole_before_reading_gets_the_414(conn):
    with connect(conn) as s:
        s.sendall(b"GET /" + b"a" * (2 * 1024 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = Reader(s).response()
        assert status == 414 and "request target" in body["cause"]


def test_a_client_that_half_closes_after_its_requests_still_gets_every_answer(conn):
    # Some clients (nc -N, scripted ones) shut their sending side once the request is out, then read.
    with connect(conn) as s:
        s.sendall(post(3) + post(4))
        s.shutdown(socket.SHUT_WR)
        r = Reader(s)
        first, second = r.response(), r.response()
        assert (first[0], first[2]["output"]) == (200, 3)
        assert (second[0], second[2]["output"]) == (200, 4)
        assert r.closed()
    with connect(conn) as s:
        s.sendall(post(5))
        s.shutdown(socket.SHUT_WR)
        r = Reader(s)
        status, _, body = r.response()
        assert (status, body["output"]) == (200, 5) and r.closed()


def test_a_client_that_half_closes_before_its_request_is_whole_is_closed(conn):
    with connect(conn) as s:
        s.sendall(post(3)[:-5])
        s.shutdown(socket.SHUT_WR)
        assert Reader(s).closed()
