"""The clipper-deploy hooks for ONNX. onnx, onnxruntime and torch are imported inside the hooks only.

The model is stored as ``model.onnx``, ONNX's own format; a torch module is exported there first.
A path (``str`` or ``os.PathLike``) to a ``.onnx`` file is accepted when the deploy names this
plugin (``framework="onnx"`` or ``deploy_onnx_model``): claiming every string by type would be wrong.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import importlib_metadata

from clipper_deploy_core import ClipperException, hookimpl

MODEL_FILE = "model.onnx"


def _versions(*dists: str) -> dict[str, str]:
    return {d: importlib_metadata.version(d) for d in dists}


@hookimpl
def model_types() -> list[str]:
    return ["onnx.ModelProto", "onnx.onnx_ml_pb2.ModelProto"]


def _export_torch(model: Any, dest: Path, example: Any) -> None:
    import torch

    if example is None:
        raise ClipperException("Exporting a PyTorch model to ONNX needs example inputs (the `inputs` argument)")
    x = torch.as_tensor(example, dtype=torch.float32) if not isinstance(example, torch.Tensor) else example
    if x.dim() == 1:
        x = x.unsqueeze(0)  # Clipper's examples gave one input; the exported graph takes a batch
    # The TorchScript-based exporter needs no onnxscript and handles a dynamic batch axis on plain modules.
    torch.onnx.export(model.eval(), (x,), str(dest), dynamo=False, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


@hookimpl
def save_model(model: Any, model_dir: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    dest = model_dir / MODEL_FILE
    unknown = set(options) - {"example_inputs", "onnx_backend"}
    if unknown or options.get("onnx_backend", "onnxruntime") != "onnxruntime":
        raise ClipperException(f"clipper-deploy-onnx options are example_inputs and onnx_backend='onnxruntime'; "
                               f"got {dict(options)}")
    source = "onnx"
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if path.suffix != ".onnx" or not path.is_file():
            raise ClipperException(f"{path} is not an existing .onnx file")
        shutil.copyfile(path, dest)
    elif _is_torch_module(model):
        _export_torch(model, dest, options.get("example_inputs"))
        source = "torch"
    else:
        import onnx

        if not isinstance(model, onnx.ModelProto):
            raise ClipperException(f"clipper-deploy-onnx takes an onnx.ModelProto, a .onnx path or a torch module, "
                                   f"not {type(model).__name__}")
        onnx.save(model, str(dest))
    import onnx

    try:
        onnx.checker.check_model(str(dest))
    except onnx.checker.ValidationError as e:
        raise ClipperException(f"The ONNX model is invalid: {e}") from None
    versions = _versions("onnx", "onnxruntime") | (_versions("torch") if source == "torch" else {})
    return {"framework_versions": versions, "metadata": {"source": source}}


def _is_torch_module(model: Any) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" == "torch.nn.modules.module.Module" for c in type(model).__mro__)


@hookimpl
def load_model(model_dir: Path, manifest: Any) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    threads = os.environ.get("CLIPPER_DEPLOY_ORT_THREADS")
    if threads:
        options.intra_op_num_threads = int(threads)
    return onnxruntime.InferenceSession(str(model_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"])


@hookimpl
def base_image(python_version: str) -> str:
    return f"clipper-deploy/onnx:py{python_version}-ort{importlib_metadata.version('onnxruntime')}"


@hookimpl
def predict_wrapper(func: Callable[..., Any], model: Any, manifest: Any) -> Callable[[Any], Any]:
    return lambda inputs: func(model, inputs)
