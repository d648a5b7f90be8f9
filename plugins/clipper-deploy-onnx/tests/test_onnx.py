import json

import numpy as np
import onnx
import pytest
import torch
from clipper_deploy_onnx import create_pytorch_endpoint, deploy_onnx_model, deploy_pytorch_model
from onnx import TensorProto, helper

from clipper_deploy_core import ClipperException, deploy
from clipper_deploy_core.bundle import read_manifest, save_bundle
from clipper_deploy_core.bundle.check import run_check
from clipper_deploy_core.testing import ConformanceCase, PluginConformance
from clipper_deploy_core.testing import predict as served


def linear_model(w, b) -> onnx.ModelProto:
    """y = x @ w + b, built with onnx.helper: an ONNX model that never saw torch."""
    w, b = np.asarray(w, np.float32), np.asarray(b, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", w.shape[1]])],
        [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.flatten()), helper.make_tensor("b", TensorProto.FLOAT,
                                                                                              b.shape, b)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_predict(session, inputs):
    out = session.run(None, {session.get_inputs()[0].name: np.asarray(inputs, dtype=np.float32)})[0]
    return [json.dumps([round(float(v), 4) for v in row]) for row in out]


W, B = [[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]], [0.25, -0.5]


def expected(inputs):
    out = np.asarray(inputs, np.float32) @ np.asarray(W, np.float32) + np.asarray(B, np.float32)
    return [json.dumps([round(float(v), 4) for v in row]) for row in out]


class TestConformance(PluginConformance):
    @staticmethod
    def case():
        xs = [[1.0, 2.0, 3.0], [0.0, -1.0, 4.0], [2.5, 0.5, -1.0]]
        return ConformanceCase(framework="onnx", model=linear_model(W, B), func=run_predict, sample_inputs=xs,
                               expected_outputs=expected(xs))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def ort_scores(session, inputs):
    out = session.run(None, {"input": np.asarray(inputs, dtype=np.float32)})[0]
    return [json.dumps(row.tolist()) for row in out]




def test_torch_model_exported_and_served_matches_torch(conn):
    model = MLP().eval()
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(12, 20)).round(3).tolist()
    with torch.no_grad():
        want = model(torch.tensor(xs, dtype=torch.float32)).numpy()
    create_pytorch_endpoint(conn, "mlp-onnx", "doubles", xs[0], ort_scores, model)
    single = served(conn, "mlp-onnx", {"input": xs[0]})
    assert single["default"] is False
    np.testing.assert_allclose(single["output"], want[0], rtol=1e-4, atol=1e-5)
    batch = served(conn, "mlp-onnx", {"input_batch": xs})["batch_predictions"]
    np.testing.assert_allclose([p["output"] for p in batch], want, rtol=1e-4, atol=1e-5)
    deploy_pytorch_model(conn, "mlp-onnx", 2, "doubles", xs[:2], ort_scores, model)  # a batch as the example
    np.testing.assert_allclose(served(conn, "mlp-onnx", {"input": xs[3]})["output"], want[3], rtol=1e-4, atol=1e-5)


def test_model_proto_and_onnx_file_deploy(conn, tmp_path):
    xs = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    result = deploy(conn, linear_model(W, B), run_predict, name="linear-proto")
    assert result.plugin == "onnx"
    assert [json.dumps(p["output"]) for p in served(conn, "linear-proto", {"input_batch": xs})["batch_predictions"]] \
        == expected(xs)
    path = tmp_path / "linear.onnx"
    onnx.save(linear_model(W, B), str(path))
    deploy(conn, str(path), run_predict, name="linear-file", framework="onnx")
    assert json.dumps(served(conn, "linear-file", {"input": xs[1]})["output"]) == expected(xs[1:])[0]
    deploy_onnx_model(conn, "linear-file", 2, "doubles", run_predict, path)
    assert conn.get_current_model_version("linear-file") == "2"


def test_manifest_records_versions(tmp_path):
    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=run_predict,
                         model=linear_model(W, B), plugin="onnx")
    m = read_manifest(bundle)
    assert set(m.framework_versions) == {"onnx", "onnxruntime"} and "model/model.onnx" in m.files


def test_unknown_backend_is_an_error(conn):
    with pytest.raises(ClipperException, match="Unknown onnx_backend 'caffe2'"):
        deploy_pytorch_model(conn, "x", 1, "doubles", [0.0] * 20, ort_scores, MLP(), onnx_backend="caffe2")


@pytest.mark.parametrize("model,msg", [("missing.onnx", "not an existing .onnx file"), ("model.txt", ".onnx file")])
def test_bad_paths_are_named(tmp_path, model, msg):
    with pytest.raises(ClipperException, match=msg):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=run_predict,
                    model=str(tmp_path / model), plugin="onnx")


def test_invalid_model_is_refused(tmp_path):
    broken = linear_model(W, B)
    broken.graph.node[0].input[1] = "nothing"
    with pytest.raises(ClipperException, match="ONNX model is invalid"):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=run_predict, model=broken,
                    plugin="onnx")


def test_export_needs_example_inputs(tmp_path):
    with pytest.raises(ClipperException, match="needs example inputs"):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=ort_scores, model=MLP(),
                    plugin="onnx")


def test_fresh_process_round_trip_of_exported_model(tmp_path):
    model = MLP().eval()
    xs = np.random.default_rng(1).normal(size=(4, 20)).tolist()
    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=ort_scores, model=model,
                         plugin="onnx", options={"example_inputs": xs[0]})
    with torch.no_grad():
        want = model(torch.tensor(xs, dtype=torch.float32)).numpy()
    got = [json.loads(o) for o in run_check(bundle, "doubles", xs)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_clipper_signature_with_onnxruntime_backend():
    import inspect

    sig = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                    for p in inspect.signature(deploy_pytorch_model).parameters.values())
    assert sig == ("clipper_conn, name, version, input_type, inputs, func, pytorch_model, base_image='default', "
                   "labels=None, registry=None, num_replicas=1, batch_size=-1, onnx_backend='onnxruntime', "
                   "pkgs_to_install=None")
