"""Large requests never hold the event loop: a concurrent single query is not held up by a big batch, rows are
capped per request, and an over-cap body is refused without the frontend's memory growing with it."""

import json
import statistics
import threading
import time

import pytest

from clipper_deploy_core import ClipperConnection, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.http_client import request
from clipper_deploy_core.testing import predict


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    c = ClipperConnection(LocalContainerManager("large", 0, 0, 0, home=tmp_path_factory.mktemp("large")))
    c.start_clipper()
    create_endpoint(c, "big", "doubles", lambda xs: [str(len(x)) for x in xs], slo_micros=20_000_000)
    create_endpoint(c, "probe", "doubles", lambda xs: [str(len(x)) for x in xs], slo_micros=20_000_000)
    yield c
    c.stop_all()


def post_raw(conn, body, timeout=120):
    status, text = request("POST", f"http://{conn.get_query_addr()}/big/predict", body, timeout)
    return status, json.loads(text)


def probe_during(conn, send_big, app="probe"):
    """Latencies (ms) of single queries sent one after another: before, and while ``send_big`` runs. The probe
    goes to another app (its own replica) by default, so what it measures is the frontend's event loop, not
    the queue behind the big batch on a shared replica."""
    def single():
        t = time.perf_counter()
        assert predict(conn, app, {"input": [1.0, 2.0]})["output"] == 2
        return (time.perf_counter() - t) * 1e3

    before = [single() for _ in range(30)]
    during, done = [], threading.Event()

    def probe():
        while not done.is_set():
            during.append(single())

    t = threading.Thread(target=probe)
    t.start()
    try:
        result = send_big()
    finally:
        done.set()
        t.join()
    return statistics.median(before), max(during, default=0.0), result


def stall(conn, body, app="probe"):
    """The worst delay a concurrent single query saw while ``body`` was served, over the quietest of 3 tries
    (these machines are shared: one try can lose the CPU to a neighbour)."""
    best = None
    for _ in range(3):
        base, worst, (status, reply) = probe_during(conn, lambda: post_raw(conn, body), app)
        excess = worst - base
        best = (excess, status, reply) if best is None or excess < best[0] else best
        if excess < 50:
            break
    return best


def test_a_10000_row_batch_does_not_hold_up_a_concurrent_query(conn):
    body = json.dumps({"input_batch": [[float(i), 0.5] * 16 for i in range(10_000)]}).encode()
    excess, status, reply = stall(conn, body)
    assert status == 200 and len(reply["batch_predictions"]) == 10_000
    assert all(p["output"] == 32 for p in reply["batch_predictions"])
    same_app, *_ = stall(conn, body, app="big")  # reported, not asserted: it waits for the batch ahead of it
    print(f"10,000 rows ({len(body) / 1e6:.1f} MB): a query to another app delayed {excess:.1f} ms, "
          f"to the same app {same_app:.1f} ms")
    assert excess < 50


def test_a_1000000_row_batch_is_refused_with_413_without_holding_anything_up(conn):
    body = b'{"input_batch": [' + b",".join([b"[0.5]"] * 1_000_000) + b"]}"
    excess, status, reply = stall(conn, body)
    assert status == 413 and "1000000 rows" in reply["cause"] and "max_batch_rows" in reply["cause"]
    print(f"1,000,000 rows ({len(body) / 1e6:.1f} MB): concurrent query delayed {excess:.1f} ms")
    assert excess < 50
    rss_kib = int(next(line.split()[1] for line in open(f"/proc/{conn.cm.info['pid']}/status")
                       if line.startswith("VmHWM")))
    assert rss_kib < 400 * 1024, f"the frontend peaked at {rss_kib / 1024:.0f} MiB"


def test_the_row_cap_is_the_managers_to_set(tmp_path):
    c = ClipperConnection(LocalContainerManager("rows", 0, 0, 0, home=tmp_path, max_batch_rows=3))
    c.start_clipper()
    try:
        create_endpoint(c, "big", "doubles", lambda xs: [str(len(x)) for x in xs])
        assert post_raw(c, {"input_batch": [[1.0]] * 3})[0] == 200
        status, reply = post_raw(c, {"input_batch": [[1.0]] * 4})
        assert status == 413 and "at most 3" in reply["cause"]
    finally:
        c.stop_all()


def test_a_ragged_or_mixed_large_batch_gets_the_row_by_row_answer(conn):
    rows = [[1.0] * (1 + i % 3) for i in range(5000)]
    status, reply = post_raw(conn, {"input_batch": rows})
    assert status == 200 and [p["output"] for p in reply["batch_predictions"][:3]] == [1, 2, 3]
    bad = [[1.0, 2.0]] * 4999 + [[1.0, "x"]]
    status, reply = post_raw(conn, {"input_batch": bad})
    assert status == 400 and "input_batch[4999][1]" in reply["cause"]
