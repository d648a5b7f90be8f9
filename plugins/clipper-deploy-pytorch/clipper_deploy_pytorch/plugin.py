"""The clipper-deploy hooks for PyTorch. torch is imported only inside the hooks that need it.

Saved form, and why: torch 2.x's ``torch.load`` defaults to ``weights_only=True``, which refuses a
pickled ``nn.Module``, and a plain ``torch.save(model)`` only loads where the model's class is
importable. ``torch.export`` and TorchScript need example inputs and fail on many ordinary modules.
So a plain module is stored as two files: ``architecture.pkl``, the module cloudpickled with its
class carried by value and every tensor moved to the ``meta`` device (code, no weights), and
``weights.pt``, its tensors in torch's own format, loaded with ``weights_only=True``. A TorchScript
module is saved with ``torch.jit.save``, which needs no Python class at all.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import importlib_metadata

from clipper_deploy_core import ClipperException, hookimpl
from clipper_deploy_core.bundle.pickling import dumps_by_value

TORCHSCRIPT, MODULE = "torchscript", "module"
DEVICES = ("cpu", "cuda")


@hookimpl
def model_types() -> list[str]:
    return ["torch.nn.Module", "torch.jit.ScriptModule"]


@hookimpl
def preload_modules() -> list[str]:
    # torch starts its thread pools at the first op, not at import: a replica template can import it and fork.
    return ["torch"]


@hookimpl
def save_model(model: Any, model_dir: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    device = options.get("device", "cpu")
    if device not in DEVICES or set(options) - {"device"}:
        raise ClipperException(f"clipper-deploy-pytorch takes one option, device='cpu' or 'cuda'; got {dict(options)}")
    if not isinstance(model, torch.nn.Module):
        raise ClipperException(f"clipper-deploy-pytorch saves torch.nn.Module models, not {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        torch.jit.save(model, str(model_dir / "model.torchscript.pt"))
        form = TORCHSCRIPT
    else:
        tensors = {**dict(model.named_parameters(remove_duplicate=False)),
                   **dict(model.named_buffers(remove_duplicate=False))}
        torch.save({k: v.detach().cpu() for k, v in tensors.items()}, model_dir / "weights.pt")
        skeleton = copy.deepcopy(model).to("meta")
        (model_dir / "architecture.pkl").write_bytes(dumps_by_value(skeleton))
        form = MODULE
    return {"framework_versions": {"torch": importlib_metadata.version("torch")},
            "metadata": {"form": form, "device": device,
                         "class": f"{type(model).__module__}.{type(model).__qualname__}"}}


def _device(requested: str) -> str:
    import torch

    wanted = os.environ.get("CLIPPER_DEPLOY_TORCH_DEVICE", requested)
    if wanted == "cuda" and not torch.cuda.is_available():
        warnings.warn("the deploy asked for CUDA but this replica has no GPU; serving on CPU", stacklevel=2)
        return "cpu"
    return wanted


@hookimpl
def load_model(model_dir: Path, manifest: Any) -> Any:
    import cloudpickle
    import torch

    meta = manifest.model_metadata
    device = _device(meta.get("device", "cpu"))
    if meta["form"] == TORCHSCRIPT:
        model = torch.jit.load(str(model_dir / "model.torchscript.pt"), map_location=device)
    else:
        model = cloudpickle.loads((model_dir / "architecture.pkl").read_bytes())
        tensors = torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True)
        for name, value in tensors.items():
            _assign(model, name, value)
        left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:
            raise ClipperException(f"PyTorch model {meta['class']}: no saved weights for {left}")
        model = model.to(device)
    return model.eval()


def _assign(model: Any, dotted: str, value: Any) -> None:
    import torch

    owner_path, _, leaf = dotted.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    if leaf in owner._parameters:
        owner._parameters[leaf] = torch.nn.Parameter(value, requires_grad=owner._parameters[leaf].requires_grad)
    else:
        owner._buffers[leaf] = value


@hookimpl
def base_image(python_version: str) -> str:
    return f"clipper-deploy/pytorch:py{python_version}-torch{importlib_metadata.version('torch').split('+')[0]}"


@hookimpl
def predict_wrapper(func: Callable[..., Any], model: Any, manifest: Any) -> Callable[[Any], Any]:
    import torch

    def predict(inputs: Any) -> Any:
        with torch.no_grad():
            return func(model, inputs)

    return predict
