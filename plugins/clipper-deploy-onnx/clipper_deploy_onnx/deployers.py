"""Clipper's ONNX deployer functions (onnxruntime instead of Caffe2), thin calls into the core."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from clipper_deploy_core import ClipperException
from clipper_deploy_core.deployers.common import DeployResult, create_model_endpoint, deploy_model_bundle

PLUGIN = "onnx"
BACKENDS = ("onnxruntime",)


def _options(inputs: Any, onnx_backend: str) -> dict[str, Any]:
    if onnx_backend not in BACKENDS:
        raise ClipperException(f"Unknown onnx_backend {onnx_backend!r}: supported backends are {', '.join(BACKENDS)} "
                               f"(Caffe2 no longer exists)")
    return {"example_inputs": inputs, "onnx_backend": onnx_backend}


def deploy_pytorch_model(clipper_conn: Any, name: str, version: Any, input_type: str, inputs: Any,
                         func: Callable[..., Any], pytorch_model: Any, base_image: str = "default",
                         labels: Sequence[str] | None = None, registry: str | None = None, num_replicas: int = 1,
                         batch_size: int = -1, onnx_backend: str = "onnxruntime",
                         pkgs_to_install: Sequence[str] | None = None) -> DeployResult:
    """Export ``pytorch_model`` to ONNX with the example ``inputs`` (dynamic batch dimension) and deploy
    ``func(session, inputs)``."""
    return deploy_model_bundle(clipper_conn, name, version, input_type, func, model=pytorch_model, plugin=PLUGIN,
                               options=_options(inputs, onnx_backend), base_image=base_image, labels=labels,
                               registry=registry, num_replicas=num_replicas, batch_size=batch_size,
                               pkgs_to_install=pkgs_to_install)


def create_pytorch_endpoint(clipper_conn: Any, name: str, input_type: str, inputs: Any, func: Callable[..., Any],
                            pytorch_model: Any, default_output: str = "None", version: Any = 1,
                            slo_micros: int = 3000000, labels: Sequence[str] | None = None,
                            registry: str | None = None, base_image: str = "default", num_replicas: int = 1,
                            batch_size: int = -1, onnx_backend: str = "onnxruntime",
                            pkgs_to_install: Sequence[str] | None = None) -> DeployResult:
    """Register app ``name``, export and deploy the model under the same name, and link them."""
    return create_model_endpoint(clipper_conn, name, input_type, func, model=pytorch_model, plugin=PLUGIN,
                                 options=_options(inputs, onnx_backend), default_output=default_output,
                                 version=version, slo_micros=slo_micros, labels=labels, registry=registry,
                                 base_image=base_image, num_replicas=num_replicas, batch_size=batch_size,
                                 pkgs_to_install=pkgs_to_install)


def deploy_onnx_model(clipper_conn: Any, name: str, version: Any, input_type: str, func: Callable[..., Any],
                      onnx_model: Any, base_image: str = "default", labels: Sequence[str] | None = None,
                      registry: str | None = None, num_replicas: int = 1, batch_size: int = -1,
                      pkgs_to_install: Sequence[str] | None = None) -> DeployResult:
    """Deploy a ready-made ONNX model: an ``onnx.ModelProto`` or the path of a ``.onnx`` file."""
    return deploy_model_bundle(clipper_conn, name, version, input_type, func, model=onnx_model, plugin=PLUGIN,
                               base_image=base_image, labels=labels, registry=registry, num_replicas=num_replicas,
                               batch_size=batch_size, pkgs_to_install=pkgs_to_install)
