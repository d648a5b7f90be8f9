"""Property-based: generated REST, V2 and admin bodies, headers and raw bytes against a real cluster. Whatever
arrives, the answer is never a 5xx, never a hang, and a good query is answered right afterwards."""

import json
import socket
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipper_deploy_core import ClipperConnection, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.http_client import request

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TALLY: Counter = Counter()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    c = ClipperConnection(LocalContainerManager("fuzz", 0, 0, 0, home=tmp_path_factory.mktemp("fuzz")))
    c.start_clipper()
    create_endpoint(c, "num", "doubles", lambda xs: [str(len(x)) for x in xs])
    create_endpoint(c, "txt", "strings", lambda xs: [str(len(x)) for x in xs])
    create_endpoint(c, "ints", "integers", lambda xs: [str(len(x)) for x in xs])
    yield c
    print(f"\nfuzz tally (surface, status class): {dict(sorted(TALLY.items()))}")
    c.stop_all()


def post(conn, path, body, headers=None, admin=False):
    addr = conn.cm.get_admin_addr() if admin else conn.get_query_addr()
    status, _ = request("POST", f"http://{addr}{path}", body, timeout=30, headers=headers)
    return status


def healthy(conn):
    status, text = request("POST", f"http://{conn.get_query_addr()}/num/predict", {"input": [1.0, 2.0]}, timeout=30)
    assert status == 200 and json.loads(text)["output"] == 2


def check(conn, surface, status):
    TALLY[(surface, f"{status // 100}xx")] += 1
    assert status < 500, f"{surface} answered {status}"
    healthy(conn)


rest_bodies = st.one_of(
    json_values.map(lambda v: {"input": v}),
    json_values.map(lambda v: {"input_batch": v}),
    st.fixed_dictionaries({"input": json_values}, optional={"version": json_values, "x": json_values}),
    json_values,
)


@SETTINGS
@given(app=st.sampled_from(["num", "txt", "ints", "nope"]), body=rest_bodies)
def test_rest_bodies(conn, app, body):
    check(conn, "rest", post(conn, f"/{app}/predict", json.dumps(body).encode()))


@SETTINGS
@given(raw=st.binary(max_size=300))
def test_rest_raw_bytes_as_body(conn, raw):
    check(conn, "rest-bytes", post(conn, "/num/predict", raw))


tensor = st.fixed_dictionaries(
    {"name": st.one_of(st.just("a"), json_values), "datatype": st.one_of(
        st.sampled_from(["FP64", "FP32", "INT32", "INT64", "BYTES", "BOOL", "UINT8", "FP16"]), json_values),
     "shape": st.one_of(st.lists(st.integers(-2, 6), max_size=3), json_values)},
    optional={"data": json_values, "parameters": st.one_of(
        st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-10, 64), json_values)}), json_values)})
v2_bodies = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(tensor, min_size=1, max_size=2), json_values)},
    optional={"outputs": json_values, "parameters": json_values, "id": json_values})


@SETTINGS
@given(app=st.sampled_from(["num", "txt", "ints", "nope"]), body=v2_bodies, tail=st.binary(max_size=64),
       header_len=st.one_of(st.none(), st.integers(-5, 400),
                            st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=4)))
def test_v2_bodies(conn, app, body, tail, header_len):
    head = json.dumps(body).encode()
    headers = {} if header_len is None else {"Inference-Header-Content-Length": str(header_len)}
    check(conn, "v2", post(conn, f"/v2/models/{app}/infer", head + tail, headers))


@SETTINGS
@given(path=st.sampled_from(["add_app", "delete_app", "add_model", "add_model_links", "set_model_version",
                             "deploy_replicas", "set_num_replicas", "get_application", "get_model",
                             "get_container", "get_all_containers", "delete_versioned_model",
                             "warm_replica_template"]),
       body=st.one_of(json_values, st.dictionaries(st.sampled_from(
           ["name", "app_name", "model_name", "model_version", "model_names", "input_type", "default_output",
            "latency_slo_micros", "num_replicas", "bundle_dir", "digest", "replica_id", "verbose", "labels",
            "batch_size", "pkgs_to_install", "modules"]), json_values, max_size=6)))
def test_admin_bodies(conn, path, body):
    status = post(conn, f"/admin/{path}", json.dumps(body).encode(), {"X-Clipper-Admin-Token": conn.cm.admin_token},
                  admin=True)
    check(conn, "admin", status)


header_names = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1,
                       max_size=20)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200)


@SETTINGS
@given(headers=st.dictionaries(header_names, header_values, max_size=6))
def test_arbitrary_headers(conn, headers):
    check(conn, "headers", post(conn, "/num/predict", b'{"input": [1.0]}', headers))


@SETTINGS
@given(raw=st.binary(min_size=1, max_size=400))
def test_raw_bytes_on_the_socket(conn, raw):
    host, port = conn.get_query_addr().rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(15)  # the server answers, or closes within its head timeout: never a hang
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            data = b""
    status = int(data.split()[1]) if data.startswith(b"HTTP/1.") and len(data.split()) > 1 else 400
    check(conn, "raw", status)
