"""``deploy()``: one entry point for every framework, choosing the plugin by the model's type."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .connection import ConnectionInterface
from .deployers.common import DeployResult, create_model_endpoint, next_version
from .naming import name_from_function


def deploy(
    conn: ConnectionInterface, model: Any, fn: Callable[..., Any], *, name: str | None = None,
    version: str | int | None = None, input_type: str = "doubles", framework: str | None = None,
    sample_inputs: Sequence[Any] | None = None, default_output: str = "None", slo_micros: int = 3000000,
    labels: Sequence[str] | None = None, registry: str | None = None, base_image: str = "default",
    num_replicas: int = 1, batch_size: int = -1, pkgs_to_install: Sequence[str] | None = None,
    **framework_options: Any,
) -> DeployResult:
    """Deploy ``fn`` with ``model`` as a live endpoint named ``name`` and return what was deployed.

    ``model=None`` deploys a plain closure (``fn(inputs)``); otherwise the plugin that claims
    ``type(model)`` saves it and ``fn`` is called as that framework's deployer documents
    (``fn(model, inputs)`` for most). The app is created and linked on first deploy; a later
    deploy adds the next version and makes it current. ``sample_inputs`` (a batch) is run through
    the bundle in a fresh process first, and the deploy is refused if the outputs break the
    contract. ``framework_options`` go to the plugin's ``save_model`` (e.g. ``sc=`` for PySpark).
    """
    from .plugin import get_registry, select_plugin  # on the first deploy: see deployers.common

    plugin = select_plugin(model, get_registry(), framework)
    name = name or name_from_function(fn)
    version = version if version is not None else next_version(conn, name)
    return create_model_endpoint(
        conn, name, input_type, fn, model=model, plugin=plugin, options=framework_options,
        default_output=default_output, version=version, slo_micros=slo_micros, labels=labels, registry=registry,
        base_image=base_image, num_replicas=num_replicas, batch_size=batch_size, pkgs_to_install=pkgs_to_install,
        sample_inputs=sample_inputs,
    )
