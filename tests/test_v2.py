"""The Open Inference Protocol V2 on the query port, through a real V2 client (tritonclient)."""

import json
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from clipper_deploy_core import ClipperConnection, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint, deploy_python_closure


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    c = ClipperConnection(LocalContainerManager("v2-test", 0, 0, 0, home=tmp_path_factory.mktemp("home")))
    c.start_clipper()
    create_endpoint(c, "summer", "doubles", lambda xs: [repr(float(sum(x))) for x in xs])
    deploy_python_closure(c, "summer", 2, "doubles", lambda xs: [f"v2:{float(sum(x))!r}" for x in xs])
    create_endpoint(c, "shouty", "strings", lambda xs: [x.upper() for x in xs])
    create_endpoint(c, "byte-len", "bytes", lambda xs: [str(len(x)) for x in xs])
    create_endpoint(c, "int-sum", "integers", lambda xs: [str(int(sum(x))) for x in xs])
    c.register_application("unlinked", "doubles", "fallback", 1_000_000)
    yield c
    c.stop_all()


@pytest.fixture(scope="module")
def client(conn):
    return httpclient.InferenceServerClient(url=conn.get_query_addr())


def infer(client, model, array, dtype, binary=True, version="", outputs=None):
    inp = httpclient.InferInput("input", list(array.shape), dtype)
    inp.set_data_from_numpy(array, binary_data=binary)
    return client.infer(model, [inp], model_version=version, outputs=outputs)


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "clipper-deploy" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_readiness(client):
    meta = client.get_model_metadata("summer")
    assert meta["name"] == "summer" and meta["versions"] == ["1", "2"]
    assert meta["inputs"][0]["datatype"] == "FP64" and meta["outputs"][0]["datatype"] == "BYTES"
    assert client.get_model_metadata("summer", "1")["name"] == "summer"
    assert client.is_model_ready("summer") and client.is_model_ready("summer", "1")
    assert not client.is_model_ready("unlinked")


@pytest.mark.parametrize("binary", [True, False])
def test_infer_single_and_batched_doubles(client, binary):
    x = np.array([[1.5, 2.25, 3.0]], dtype=np.float64)
    out = infer(client, "summer", x, "FP64", binary).as_numpy("output")
    assert out.tolist() == [b"v2:6.75"]
    batch = np.arange(12, dtype=np.float32).reshape(4, 3)
    result = infer(client, "summer", batch, "FP32", binary, version="1")
    assert [v.decode() for v in result.as_numpy("output")] == [repr(float(r.sum())) for r in batch]
    assert result.get_response()["model_version"] == "1"


def test_integer_tensors_convert_to_doubles_and_integers(client):
    assert infer(client, "summer", np.array([[1, 2]], dtype=np.int64), "INT64").as_numpy("output").tolist() == \
        [b"v2:3.0"]
    assert infer(client, "int-sum", np.array([[1, 2], [3, 4]], dtype=np.int32), "INT32").as_numpy(
        "output").tolist() == [b"3", b"7"]


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_tensors_for_string_and_bytes_apps(client, binary):
    words = np.array([b"hello", b"v2 world"], dtype=np.object_)
    assert infer(client, "shouty", words, "BYTES", binary).as_numpy("output").tolist() == [b"HELLO", b"V2 WORLD"]
    blobs = np.array([b"\x00\x01\x02", b"abcd"], dtype=np.object_)
    assert infer(client, "byte-len", blobs, "BYTES", binary).as_numpy("output").tolist() == [b"3", b"4"]


def test_requested_json_output(client):
    out = [httpclient.InferRequestedOutput("output", binary_data=False)]
    result = infer(client, "summer", np.array([[1.0]]), "FP64", outputs=out)
    assert result.get_output("output")["data"] == ["v2:1.0"]


def test_default_outputs_are_reported_in_parameters(client):
    result = infer(client, "unlinked", np.array([[1.0], [2.0]]), "FP64")
    assert result.as_numpy("output").tolist() == [b"fallback", b"fallback"]
    params = result.get_response()["parameters"]
    assert params["default_count"] == 2
    assert "No connected models found" in json.loads(params["default_explanations"])[0]


@pytest.mark.parametrize("model,version,status", [("nope", "", 404), ("summer", "9", 404)])
def test_unknown_model_or_version_is_404(client, model, version, status):
    with pytest.raises(InferenceServerException) as e:
        infer(client, model, np.array([[1.0]]), "FP64", version=version)
    assert e.value.status() == str(status)
    with pytest.raises(InferenceServerException):
        client.get_model_metadata(model, version)


def test_wrong_datatype_is_400_with_the_reason(client):
    with pytest.raises(InferenceServerException) as e:
        infer(client, "int-sum", np.array([[1.5]], dtype=np.float64), "FP64")
    assert e.value.status() == "400" and "cannot be converted" in e.value.message()


def raw_post(conn, path, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{conn.get_query_addr()}{path}", data=data,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("body,msg", [
    (b"{oops", "Invalid inference request"),
    ({"inputs": []}, "exactly one input tensor"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 1], "data": [1]}] * 2}, "exactly one input tensor"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [2, 2], "data": [1, 2, 3]}]}, "needs 4 elements, got 3"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, -1], "data": [1]}]}, "shape must be"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [0, 2], "data": []}]}, "batch dimension is 0"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 1]}]}, "neither 'data' nor binary"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 2], "data": [1, "x"]}]}, "a[0][1] is str"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 1], "data": [1]}], "outputs": [{"name": "probs"}]},
     "Unknown output requested"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 1], "parameters": {"binary_data_size": 64}}]},
     "binary_data_size 64 does not match"),
])
def test_malformed_infer_requests_are_400(conn, body, msg):
    status, reply = raw_post(conn, "/v2/models/summer/infer", body)
    assert status == 400 and msg in reply["error"]


def test_bad_header_length_is_400(conn):
    status, reply = raw_post(conn, "/v2/models/summer/infer", b"{}", {"Inference-Header-Content-Length": "99"})
    assert status == 400 and "outside the body" in reply["error"]


def _t(**over):
    return {"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 2], "data": [1.0, 2.0], **over}]}


DEEP = b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 1], "data": ' + b"[" * 5000 + b"1" + \
    b"]" * 5000 + b"}]}"
# Each of these answered 500, or was silently accepted, before the V2 parser validated as REST does.
V2_FINDINGS = [
    ("summer", _t(datatype=["FP64"]), "datatype"),
    ("summer", _t(datatype={}), "datatype"),
    ("summer", DEEP, "JSON header does not parse"),
    ("summer", b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 1], "data": [1' + b"0" * 400 + b"]}]}",
     "JSON header does not parse"),
    ("summer", {**_t(), "parameters": [1]}, "'parameters' must be a JSON object"),
    ("summer", {**_t(), "parameters": "x"}, "'parameters' must be a JSON object"),
    ("summer", {**_t(), "outputs": [{"name": "output", "parameters": [1]}]}, "an output's 'parameters'"),
    ("summer", _t(parameters={"binary_data_size": -8}), "non-negative integer"),
    ("summer", _t(shape=[True, 2]), "shape must be"),
    ("shouty", {"inputs": [{"name": "a", "datatype": "BYTES", "shape": [2], "data": [1, 2]}]}, "list of strings"),
    ("summer", b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 1], "data": [NaN]}]}', "does not parse"),
    ("summer", b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 1], "data": [Infinity]}]}', "not parse"),
    ("summer", b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 1], "data": [1e400]}]}', "not parse"),
    ("summer", _t(data=[1.0, True]), "a[0][1] is bool"),
    ("int-sum", {"inputs": [{"name": "a", "datatype": "INT64", "shape": [1, 1], "data": [2 ** 40]}]}, "32-bit"),
    ("summer", _t(name=7), "string 'name'"),
]


@pytest.mark.parametrize("app,body,cause", V2_FINDINGS, ids=range(len(V2_FINDINGS)))
def test_v2_rejects_what_rest_rejects_with_a_400(conn, app, body, cause):
    status, reply = raw_post(conn, f"/v2/models/{app}/infer", body)
    assert status == 400 and cause in reply["error"], reply


def test_v2_binary_sizes_must_add_up_and_floats_be_finite(conn):
    import numpy as np

    head = json.dumps(_t(parameters={"binary_data_size": 16})).encode()
    for payload, cause in ((np.array([1.0, 2.0, 3.0]).tobytes(), "does not match"),
                           (np.array([1.0, np.nan]).tobytes(), "not a finite number")):
        status, reply = raw_post(conn, "/v2/models/summer/infer", head + payload,
                                 {"Inference-Header-Content-Length": str(len(head))})
        assert status == 400 and cause in reply["error"], reply
    ok = np.array([1.0, 2.5]).tobytes()
    status, reply = raw_post(conn, "/v2/models/summer/infer", head + ok,
                             {"Inference-Header-Content-Length": str(len(head))})
    assert status == 200 and reply["outputs"][0]["data"] == ["v2:3.5"]


def test_a_v2_batch_over_the_row_cap_is_413(conn):
    status, reply = raw_post(conn, "/v2/models/summer/infer", _t(shape=[10_001, 1], data=[1.0] * 10_001))
    assert status == 413 and "10001 rows" in reply["error"]


def test_v2_queries_follow_the_apps_selection_policy(conn, client):
    """An app under a policy routes V2 queries as it routes REST ones: here everything to its second model."""
    import numpy as np

    conn.register_application("routed", "doubles", "none", 3_000_000)
    deploy_python_closure(conn, "routed-old", "1", "doubles", lambda xs: [f"old:{sum(x)}" for x in xs])
    deploy_python_closure(conn, "routed-new", "1", "doubles", lambda xs: [f"new:{sum(x)}" for x in xs])
    conn.link_model_to_app("routed", "routed-old")
    conn.link_model_to_app("routed", "routed-new")
    assert infer(client, "routed", np.array([[1.0, 2.0]]), "FP64").as_numpy("output").tolist() == [b"old:3.0"]
    conn.set_selection_policy("routed", "weighted", weights={"routed-new": 100})
    result = infer(client, "routed", np.array([[1.0, 2.0], [3.0, 4.0]]), "FP64")
    assert result.as_numpy("output").tolist() == [b"new:3.0", b"new:7.0"]
