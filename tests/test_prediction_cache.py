"""Clipper 0.4's prediction cache: outputs by model, version and input, bounded in bytes.

The rules on the cache itself (bound, eviction order, keys) are checked on the real class; the rest on a real
local cluster, whose models count their own calls, so a hit is one the model never saw."""

import numpy as np
import pytest

from clipper_deploy_core import ClipperConnection, ClipperException, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint, deploy_python_closure
from clipper_deploy_core.frontend.prediction_cache import ENTRY_OVERHEAD, PredictionCache, input_key
from clipper_deploy_core.testing import local_cluster, predict, wait_until
from clipper_deploy_core.wire import RawQuery

# --- the cache itself ---------------------------------------------------------------------------


def test_the_byte_bound_holds_and_the_least_recently_used_entry_goes_first():
    def key(i):
        return ("m", "1", b"j" + str(i).encode())

    entry = PredictionCache.size(key(0), "x" * 40)
    cache = PredictionCache(3 * entry)
    for i in range(3):
        cache.put(key(i), "x" * 40)
    assert cache.bytes == 3 * entry
    assert cache.get(key(0)) == "x" * 40  # 0 is now the most recently used: 1 is the oldest
    cache.put(key(3), "x" * 40)
    assert cache.get(key(1)) is None and [cache.get(key(i)) is not None for i in (0, 2, 3)] == [True] * 3
    assert cache.bytes <= cache.max_bytes
    cache.put(key(4), "y" * (3 * entry))  # larger than the whole cache: not stored, nothing evicted for it
    assert cache.get(key(4)) is None and len(cache.entries) == 3
    cache.put(key(0), "z" * (entry - ENTRY_OVERHEAD))  # replacing an entry counts its new size, not both
    assert cache.bytes == sum(PredictionCache.size(k, v) for k, v in cache.entries.items()) <= cache.max_bytes


def test_zero_turns_it_off_and_a_negative_size_is_refused():
    assert not PredictionCache(0).enabled
    with pytest.raises(ValueError, match="cache size must be 0"):
        PredictionCache(-1)


def test_inputs_are_keyed_by_their_bytes_and_their_type():
    row = np.array([1.0, 2.0], dtype=np.float64)
    assert input_key(row) == input_key(np.array([1.0, 2.0]))
    assert input_key(row) != input_key(row.astype(np.float32))
    assert input_key([1.0, 2.0]) != input_key([2.0, 1.0])
    assert input_key("ab") != input_key(b"ab")
    assert input_key(RawQuery(b'{"input": [1]}')) == input_key(RawQuery(b'{ "input":[1] }\n')) == b'r{"input":[1]}'


# --- on a cluster -------------------------------------------------------------------------------


def counting(tag="v1", slow_s=0.0, fail_on=None):
    """A model that answers ``tag:<its call number>:<input sum>``: every call it sees gives a new answer."""
    calls = [0]

    def f(xs):
        import time

        if slow_s:
            time.sleep(slow_s)
        out = []
        for x in xs:
            if fail_on is not None and list(x) == fail_on:
                raise ValueError("refused")
            calls[0] += 1
            out.append(f"{tag}:{calls[0]}:{sum(x)}")
        return out

    return f


def metric(conn, name, **labels):
    samples = conn.inspect_instance().get(name, [])
    return sum(s["value"] for s in samples if all(s["labels"].get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with local_cluster("cache", tmp_path_factory.mktemp("cache")) as c:
        yield c


def call_number(output):
    return int(output.split(":")[1])


def test_a_repeated_input_is_answered_from_the_cache(conn):
    create_endpoint(conn, "hits", "doubles", counting())
    first = predict(conn, "hits", {"input": [1.0, 2.0]})["output"]
    n = call_number(first)  # the replica's warm-up called the model before any query
    assert predict(conn, "hits", {"input": [1.0, 2.0]})["output"] == first  # the model would have said n + 1
    assert predict(conn, "hits", {"input": [5.0]})["output"] == f"v1:{n + 1}:5.0"
    assert predict(conn, "hits", {"input":[1.0,2.0]})["output"] == first  # whitespace is not part of the key
    # a batch: only the inputs not cached reach the model, each answer in its place
    batch = predict(conn, "hits", {"input_batch": [[1.0, 2.0], [7.0]]})["batch_predictions"]
    assert [b["output"] for b in batch] == [f"v1:{n + 2}:3.0", f"v1:{n + 3}:7.0"]  # rows are keyed apart from
    batch = predict(conn, "hits", {"input_batch": [[8.0], [7.0], [1.0, 2.0]]})["batch_predictions"]  # bodies
    assert [b["output"] for b in batch] == [f"v1:{n + 4}:8.0", f"v1:{n + 3}:7.0", f"v1:{n + 2}:3.0"]
    assert metric(conn, "clipper_model_predictions_total", model="hits") == 5
    assert metric(conn, "clipper_model_cache_lookups_total", model="hits") == 9
    assert metric(conn, "clipper_model_cache_hits_total", model="hits") == 4
    assert metric(conn, "clipper_model_cache_hit_ratio", model="hits", version="1") == pytest.approx(4 / 9)


def test_a_new_version_never_serves_the_old_versions_entries(conn):
    create_endpoint(conn, "versions", "doubles", counting("v1"))
    one = predict(conn, "versions", {"input": [3.0]})["output"]
    assert one.startswith("v1:")
    deploy_python_closure(conn, "versions", "2", "doubles", counting("v2"))
    assert predict(conn, "versions", {"input": [3.0]})["output"].startswith("v2:")
    conn.set_model_version("versions", "1")  # rolled back: version 1's entry is still right for version 1
    assert predict(conn, "versions", {"input": [3.0]})["output"] == one


def test_a_result_after_the_slo_still_fills_the_cache(conn):
    conn.register_application("late", "doubles", "too-late", 100_000)  # 100 ms; the model takes 600 ms
    deploy_python_closure(conn, "late", "1", "doubles", counting(slow_s=0.6))
    conn.link_model_to_app("late", "late")
    first = predict(conn, "late", {"input": [4.0]})
    assert first["default"] and first["output"] == "too-late"
    wait_until(lambda: metric(conn, "clipper_model_batch_latency_seconds_count", model="late") >= 1,
               "the late reply to arrive")
    again = predict(conn, "late", {"input": [4.0]})  # the model would take 600 ms: only the cache answers in time
    assert not again["default"] and again["output"].endswith(":4.0")


def test_errors_and_defaults_are_never_cached(conn):
    create_endpoint(conn, "errors", "doubles", counting(fail_on=[13.0]))
    for _ in range(2):
        reply = predict(conn, "errors", {"input": [13.0]})
        assert reply["default"] and "ValueError: refused" in reply["default_explanation"]
    assert metric(conn, "clipper_model_cache_hits_total", model="errors") == 0
    assert metric(conn, "clipper_model_predictions_total", model="errors") == 2  # both reached the model


def test_cache_size_zero_sends_every_query_to_the_model_and_a_bad_size_is_refused(tmp_path):
    conn = ClipperConnection(LocalContainerManager("nocache", 0, 0, 0, home=tmp_path))
    conn.start_clipper(cache_size=0)
    try:
        create_endpoint(conn, "nocache", "doubles", counting())
        a, b = (call_number(predict(conn, "nocache", {"input": [1.0]})["output"]) for _ in range(2))
        assert b == a + 1  # the second identical query reached the model too
        assert metric(conn, "clipper_model_cache_lookups_total", model="nocache") == 0
    finally:
        conn.stop_all()
    for bad in (-1, 1.5, True, "32MB"):
        with pytest.raises(ClipperException, match="cache_size must be a number of bytes"):
            ClipperConnection(LocalContainerManager("bad", 0, 0, 0, home=tmp_path)).start_clipper(cache_size=bad)
