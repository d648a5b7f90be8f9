"""Clipper's Python-closure deployer, with the seed's signatures: ``func(inputs) -> [str, ...]``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..connection import ConnectionInterface
from .common import DeployResult, create_model_endpoint, deploy_model_bundle

PLUGIN = "python"


def deploy_python_closure(clipper_conn: ConnectionInterface, name: str, version: Any, input_type: str,
                          func: Callable[..., Any], base_image: str = "default", labels: Sequence[str] | None = None,
                          registry: str | None = None, num_replicas: int = 1, batch_size: int = -1,
                          pkgs_to_install: Sequence[str] | None = None) -> DeployResult:
    """Deploy an arbitrary Python function. ``func`` takes a batch and returns one string per input."""
    return deploy_model_bundle(clipper_conn, name, version, input_type, func, plugin=PLUGIN, base_image=base_image,
                               labels=labels, registry=registry, num_replicas=num_replicas, batch_size=batch_size,
                               pkgs_to_install=pkgs_to_install)


def create_endpoint(clipper_conn: ConnectionInterface, name: str, input_type: str, func: Callable[..., Any],
                    default_output: str = "None", version: Any = 1, slo_micros: int = 3000000,
                    labels: Sequence[str] | None = None, registry: str | None = None, base_image: str = "default",
                    num_replicas: int = 1, batch_size: int = -1,
                    pkgs_to_install: Sequence[str] | None = None) -> DeployResult:
    """Register an app and deploy ``func`` as a model of the same name, linked to it."""
    return create_model_endpoint(clipper_conn, name, input_type, func, plugin=PLUGIN, default_output=default_output,
                                 version=version, slo_micros=slo_micros, labels=labels, registry=registry,
                                 base_image=base_image, num_replicas=num_replicas, batch_size=batch_size,
                                 pkgs_to_install=pkgs_to_install)
