"""Adaptive batching (AIMD) and SLO expiry, through a real local cluster."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from clipper_deploy_core import ClipperConnection, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint, deploy_python_closure
from clipper_deploy_core.frontend.batching import AIMD, FixedCap

from .test_serving import post


def test_aimd_grows_additively_and_backs_off_multiplicatively():
    p = AIMD()
    for _ in range(9):
        p.observe(p.cap, 0.001, slo_s=0.1)
    assert p.cap == 10
    p.observe(3, 0.001, slo_s=0.1)  # a batch that was not full says nothing about a bigger one
    assert p.cap == 10
    p.observe(10, 0.06, slo_s=0.1)  # over the budget (half the SLO)
    assert p.cap == 5
    for _ in range(5):
        p.observe(p.cap, 0.2, slo_s=0.1)
    assert p.cap == 1
    fixed = FixedCap(9)
    fixed.observe(9, 10.0, 0.1)
    assert fixed.cap == 9


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    c = ClipperConnection(LocalContainerManager("batching-test", 0, 0, 0, home=tmp_path_factory.mktemp("home")))
    c.start_clipper()
    yield c
    c.stop_all()


def hammer(conn, app, n_clients, per_client, make_input):
    def client(k):
        return [post(conn, f"/{app}/predict", {"input": make_input(k, i)})[1] for i in range(per_client)]

    with ThreadPoolExecutor(n_clients) as pool:
        return [r for rs in pool.map(client, range(n_clients)) for r in rs]


def limits(conn, model):
    samples = conn.inspect_instance().get("clipper_model_batch_size_limit", [])
    return [s["value"] for s in samples if s["labels"]["model"] == model]


def test_batch_size_grows_under_concurrent_load(conn):
    def sizes(xs):
        time.sleep(0.002)
        return [str(len(xs)) for _ in xs]

    create_endpoint(conn, "grows", "doubles", sizes, slo_micros=5_000_000)
    replies = hammer(conn, "grows", 16, 40, lambda k, i: [float(k), float(i)])
    assert all(not r["default"] for r in replies)
    assert max(r["output"] for r in replies) > 1
    assert max(limits(conn, "grows")) > 1


def test_cap_comes_down_when_latency_grows_with_batch_size(conn):
    def slower_with_size(xs):
        time.sleep(0.010 + 0.004 * len(xs))  # a batch of 32 takes 138 ms: two of them miss a 200 ms SLO
        return [str(len(xs)) for _ in xs]

    # The budget is half the SLO, 100 ms, which a batch of about 22 fills; the cap must settle below that.
    create_endpoint(conn, "heavy", "doubles", slower_with_size, slo_micros=200_000)
    hammer(conn, "heavy", 32, 10, lambda k, i: [float(k), float(-i)])  # the ramp-up from a cap of 1: not judged
    replies = hammer(conn, "heavy", 32, 20, lambda k, i: [float(k), float(i)])
    served = [r for r in replies if not r["default"]]
    # Without AIMD the 32 clients' queries ride in batches of 32 (138 ms) and most queued ones miss the SLO.
    assert len(served) >= 0.6 * len(replies), [r["default_explanation"] for r in replies if r["default"]][:3]
    assert max(r["output"] for r in served) <= 25
    assert 1 <= max(limits(conn, "heavy")) <= 25


def test_expired_queries_get_the_default_and_never_reach_the_model(conn, tmp_path):
    seen = tmp_path / "seen.log"

    def counting_slow(xs):
        with open(seen, "a") as f:
            f.write(json.dumps([x.tolist() for x in xs]) + "\n")
        time.sleep(0.3)
        return ["done" for _ in xs]

    conn.register_application("tight", "doubles", "too-late", 100_000)
    conn.register_application("patient", "doubles", "too-late", 20_000_000)
    deploy_python_closure(conn, "counting", 1, "doubles", counting_slow, batch_size=1)
    conn.link_model_to_app("tight", "counting")
    conn.link_model_to_app("patient", "counting")
    with ThreadPoolExecutor(6) as pool:
        tight = list(pool.map(lambda i: post(conn, "/tight/predict", {"input": [float(i)]})[1], range(6)))
    assert all(r["default"] and r["output"] == "too-late" and "latency SLO" in r["default_explanation"]
               for r in tight)
    # A query with a long SLO queues behind whatever the model is running; once it is answered, every
    # earlier batch has finished, so the log is complete.
    assert post(conn, "/patient/predict", {"input": [99.0]})[1]["output"] == "done"
    calls = [json.loads(line) for line in seen.read_text().splitlines()]
    assert calls[0] == [[0.0]]  # the replica's warm-up on a made-up input, before it linked
    inputs = [x for call in calls[1:] for x in call]
    assert [99.0] in inputs
    assert len(inputs) <= 2, f"expired queries reached the model: {inputs}"


def test_input_batch_counts_inputs_not_requests(conn):
    def sizes(xs):
        return [str(len(xs)) for _ in xs]

    create_endpoint(conn, "counted", "doubles", sizes, batch_size=10)
    preds = post(conn, "/counted/predict", {"input_batch": [[float(i)] for i in range(50)]})[1]["batch_predictions"]
    assert len(preds) == 50 and max(p["output"] for p in preds) == 10


def test_concurrency_is_safe_while_versions_change(conn):
    create_endpoint(conn, "moving", "doubles", lambda xs: ["1" for _ in xs])
    stop = threading.Event()
    errors = []

    def load():
        i = 0
        while not stop.is_set() and i < 3000:
            status, body = post(conn, "/moving/predict", {"input": [float(i)]})
            if status != 200 or body["default"]:
                errors.append(body)
            i += 1

    t = threading.Thread(target=load)
    t.start()
    try:
        deploy_python_closure(conn, "moving", 2, "doubles", lambda xs: ["2" for _ in xs])
        conn.set_model_version("moving", 1)
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:2]
