import os
import subprocess
import sys

import pytest
import torch
from clipper_deploy_pytorch import create_endpoint, deploy_pytorch_model

from clipper_deploy_core import ClipperException, deploy
from clipper_deploy_core.bundle import load_bundle, read_manifest, save_bundle
from clipper_deploy_core.bundle.check import run_check
from clipper_deploy_core.testing import ConformanceCase, PluginConformance, seed_signature, signature
from clipper_deploy_core.testing import predict as served

from .digits import make_data, predict, train


@pytest.fixture(scope="module")
def model():
    return train()


@pytest.fixture(scope="module")
def test_inputs():
    xs, ys = make_data(40, seed=1)
    return xs.tolist(), ys.tolist()


class TestConformance(PluginConformance):
    @staticmethod
    def case():
        m = train(epochs=5)
        xs, _ = make_data(6, seed=2)
        return ConformanceCase(framework="pytorch", model=m, func=predict, sample_inputs=xs.tolist(),
                               expected_outputs=predict(m, xs.tolist()))


def test_the_classifier_learned(model, test_inputs):
    xs, ys = test_inputs
    assert sum(int(p) == y for p, y in zip(predict(model, xs), ys, strict=True)) >= 36




def test_served_outputs_equal_in_process(conn, model, test_inputs):
    xs, _ = test_inputs
    expected = [int(p) for p in predict(model, xs)]
    create_endpoint(conn, "digits", "doubles", predict, model)
    singles = [served(conn, "digits", {"input": x}) for x in xs[:10]]
    assert [r["output"] for r in singles] == expected[:10] and not any(r["default"] for r in singles)
    batch = served(conn, "digits", {"input_batch": xs})["batch_predictions"]
    assert [r["output"] for r in batch] == expected


def test_second_version_and_rollback(conn, model, test_inputs):
    xs, _ = test_inputs

    def constant_predict(m, inputs):
        return ["7" for _ in inputs]

    create_endpoint(conn, "rollback", "doubles", predict, model)
    deploy_pytorch_model(conn, "rollback", 2, "doubles", constant_predict, model)
    assert served(conn, "rollback", {"input": xs[0]})["output"] == 7
    conn.set_model_version("rollback", 1)
    assert served(conn, "rollback", {"input": xs[1]})["output"] == int(predict(model, [xs[1]])[0])


def test_a_predict_function_that_raises_reaches_the_caller(conn, model, test_inputs):
    def broken(m, inputs):
        return m(torch.as_tensor(inputs, dtype=torch.float32).reshape(-1, 7))  # wrong shape

    create_endpoint(conn, "broken-torch", "doubles", broken, model)
    reply = served(conn, "broken-torch", {"input": test_inputs[0][0]})
    assert reply["default"] is True and "RuntimeError" in reply["default_explanation"]
    assert "shape" in reply["default_explanation"]


def test_deploy_picks_the_pytorch_plugin(conn, model, test_inputs):
    result = deploy(conn, model, predict, name="via-deploy", sample_inputs=test_inputs[0][:3])
    assert result.plugin == "pytorch" and result.sample_outputs == predict(model, test_inputs[0][:3])


def test_torchscript_modules_are_saved_natively(tmp_path, model, test_inputs):
    scripted = torch.jit.trace(model, torch.zeros(1, 64))
    bundle = save_bundle(tmp_path / "b", name="scripted", version=1, input_type="doubles", func=predict,
                         model=scripted, plugin="pytorch")
    assert read_manifest(bundle).model_metadata["form"] == "torchscript"
    assert run_check(bundle, "doubles", test_inputs[0][:5]) == predict(model, test_inputs[0][:5])


def test_manifest_records_torch_and_the_image_matches(tmp_path, model):
    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=predict, model=model,
                         plugin="pytorch")
    manifest = read_manifest(bundle)
    assert manifest.framework_versions == {"torch": "2.13.0+cpu"} or manifest.framework_versions["torch"].startswith(
        torch.__version__.split("+")[0])
    assert set(manifest.files) == {"func.pkl", "model/architecture.pkl", "model/weights.pt"}
    loaded = load_bundle(bundle)
    assert not loaded.model.training
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())


def test_model_class_from_a_script_not_on_the_replicas_path(tmp_path):
    """The training script defines the class; the replica never sees that file."""
    script = tmp_path / "train_here.py"
    script.write_text(
        "import torch\n"
        "class Doubler(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.w = torch.nn.Parameter(torch.tensor([2.0]))\n"
        "    def forward(self, x):\n"
        "        return x * self.w\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "import train_here\n"
        "from clipper_deploy_core.bundle import save_bundle\n"
        "from clipper_deploy_core.bundle.check import run_check\n"
        "import torch\n"
        "f = lambda m, xs: [str(float(m(torch.as_tensor(x)).sum())) for x in xs]\n"
        f"b = save_bundle({str(tmp_path / 'b')!r}, name='doubler', version=1, input_type='doubles', func=f,"
        " model=train_here.Doubler(), plugin='pytorch')\n"
        "print(run_check(b, 'doubles', [[1.0, 2.0]]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['6.0']"


def test_cuda_request_falls_back_to_cpu_without_a_gpu(tmp_path, model, test_inputs):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: test_cuda_placement covers it")
    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=predict, model=model,
                         plugin="pytorch", options={"device": "cuda"})
    with pytest.warns(UserWarning, match="no GPU"):
        loaded = load_bundle(bundle)
    assert loaded.predict(test_inputs[0][:3]) == predict(model, test_inputs[0][:3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_placement(tmp_path, model, test_inputs):
    def predict_cuda(m, inputs):
        x = torch.as_tensor(inputs, dtype=torch.float32, device=next(m.parameters()).device)
        return [str(int(i)) for i in m(x).argmax(dim=1)]

    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=predict_cuda, model=model,
                         plugin="pytorch", options={"device": "cuda"})
    loaded = load_bundle(bundle)
    assert next(loaded.model.parameters()).device.type == "cuda"
    assert loaded.predict(test_inputs[0]) == predict(model, test_inputs[0])


def test_bad_option_is_refused(tmp_path, model):
    with pytest.raises(ClipperException, match="device='cpu' or 'cuda'"):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=predict, model=model,
                    plugin="pytorch", options={"device": "tpu"})


def test_without_the_plugin_the_error_gives_the_pip_command():
    code = ("import torch\nfrom clipper_deploy_core.plugin import get_registry, select_plugin\n"
            "select_plugin(torch.nn.Linear(2, 2), get_registry())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "CLIPPER_DEPLOY_DISABLED_PLUGINS": "pytorch"})
    assert proc.returncode != 0
    assert "No clipper-deploy plugin claims model type torch.nn.modules.linear.Linear" in proc.stderr
    assert "pip install clipper-deploy-pytorch" in proc.stderr


def test_plugin_import_does_not_import_torch():
    code = ("import sys, clipper_deploy_pytorch, clipper_deploy_pytorch.plugin\n"
            "from clipper_deploy_core.plugin import get_registry\nget_registry()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("fn", ['deploy_pytorch_model', 'create_endpoint'])
def test_seed_signatures(fn):
    import clipper_deploy_pytorch

    documented = seed_signature(f"clipper_admin.deployers.pytorch.{fn}")
    if documented is None:
        pytest.skip("Clipper's model-deployers document is not beside this checkout")
    assert signature(getattr(clipper_deploy_pytorch, fn)) == documented
