"""With every plugin installed together: all are discovered and no two claim the same type."""

import json
import subprocess
import sys
from pathlib import Path

from clipper_deploy_core.plugin import get_registry

ROOT = Path(__file__).resolve().parent.parent
ISOLATED = {"mxnet"}


def installed_plugin_dirs():
    return [p.name.removeprefix("clipper-deploy-") for p in sorted((ROOT / "plugins").glob("clipper-deploy-*"))
            if (p / "pyproject.toml").exists()]


def test_every_co_installable_plugin_is_discovered():
    listed = {p["name"]: p for p in json.loads(subprocess.run(
        [sys.executable, "-m", "clipper_deploy_core.cli", "plugins", "--json"],
        capture_output=True, text=True, check=True).stdout)}
    # Each monorepo plugin registers under its framework name; the isolated ones live in their own venv.
    expected = {p for p in installed_plugin_dirs() if p not in ISOLATED}
    missing = {p for p in expected if p not in listed and not any(v["distribution"] == f"clipper-deploy-{p}"
                                                                  for v in listed.values())}
    assert not missing, f"installed but not discovered: {missing}"


def test_no_two_plugins_declare_the_same_model_type():
    owners: dict[str, str] = {}
    for info in get_registry().infos():
        for t in info.model_types:
            assert t not in owners, f"{t} is claimed by both {owners[t]} and {info.name}"
            owners[t] = info.name


def test_torch_modules_go_to_pytorch_and_onnx_protos_to_onnx():
    import pytest

    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from clipper_deploy_core.plugin import select_plugin

    registry = get_registry()
    if not {"pytorch", "onnx"} <= {i.name for i in registry.infos()}:
        pytest.skip("needs both clipper-deploy-pytorch and clipper-deploy-onnx")
    assert select_plugin(torch.nn.Linear(2, 2), registry) == "pytorch"
    assert select_plugin(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), registry) == "pytorch"
    assert select_plugin(onnx.ModelProto(), registry) == "onnx"


def test_keras_models_go_to_keras_and_tf_modules_to_tensorflow():
    import os

    import pytest

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    from clipper_deploy_core.plugin import select_plugin

    registry = get_registry()
    if not {"keras", "tensorflow"} <= {i.name for i in registry.infos()}:
        pytest.skip("needs both clipper-deploy-keras and clipper-deploy-tensorflow")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert isinstance(model, tf.__internal__.tracking.AutoTrackable)  # a TensorFlow trackable, under TF
    assert select_plugin(model, registry) == "keras"
    assert select_plugin(tf.Module(), registry) == "tensorflow"
    assert select_plugin(tf.compat.v1.Session(graph=tf.Graph()), registry) == "tensorflow"
