"""The seed's MXNet deployer functions, as thin calls into the core's shared machinery."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from clipper_deploy_core.deployers.common import DeployResult, create_model_endpoint, deploy_model_bundle

PLUGIN = "mxnet"


def deploy_mxnet_model(clipper_conn: Any, name: str, version: Any, input_type: str, func: Callable[..., Any],
                       mxnet_model: Any, mxnet_data_shapes: Any, base_image: str = "default",
                       labels: Sequence[str] | None = None, registry: str | None = None, num_replicas: int = 1,
                       batch_size: int = -1, pkgs_to_install: Sequence[str] | None = None) -> DeployResult:
    """Deploy ``func(model, inputs)`` with a ``mx.mod.Module`` or Gluon ``HybridBlock``.

    ``mxnet_data_shapes``: ``DataDesc`` objects (``data_iter.provide_data``) or ``(name, shape)`` pairs.
    """
    return deploy_model_bundle(clipper_conn, name, version, input_type, func, model=mxnet_model, plugin=PLUGIN,
                               options={"mxnet_data_shapes": mxnet_data_shapes}, base_image=base_image,
                               labels=labels, registry=registry, num_replicas=num_replicas, batch_size=batch_size,
                               pkgs_to_install=pkgs_to_install)


def create_endpoint(clipper_conn: Any, name: str, input_type: str, func: Callable[..., Any], mxnet_model: Any,
                    mxnet_data_shapes: Any, default_output: str = "None", version: Any = 1,
                    slo_micros: int = 3000000, labels: Sequence[str] | None = None, registry: str | None = None,
                    base_image: str = "default", num_replicas: int = 1, batch_size: int = -1,
                    pkgs_to_install: Sequence[str] | None = None) -> DeployResult:
    """Register app ``name``, deploy the model under the same name and link them."""
    return create_model_endpoint(clipper_conn, name, input_type, func, model=mxnet_model, plugin=PLUGIN,
                                 options={"mxnet_data_shapes": mxnet_data_shapes}, default_output=default_output,
                                 version=version, slo_micros=slo_micros, labels=labels, registry=registry,
                                 base_image=base_image, num_replicas=num_replicas, batch_size=batch_size,
                                 pkgs_to_install=pkgs_to_install)
