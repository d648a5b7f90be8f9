"""The machinery every deployer shares: validate, bundle, check in a fresh process, ship, link.

Each framework's ``deploy_<fw>_model`` / ``create_endpoint`` is a thin call into
:func:`deploy_model_bundle` and :func:`create_model_endpoint` with its plugin's name.

The bundle writer, the check and the plugin registry (with cloudpickle and pluggy) are imported on the first deploy,
not with a deployer: a script imports its deployer before ``start_clipper()``, and what it imports later overlaps
with the cluster process's start.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..connection import ConnectionInterface
from ..deploy_args import validate_deploy_args, validate_labels
from ..exceptions import ClipperException
from ..naming import ModelVersionId, validate_name


@dataclass(frozen=True)
class DeployResult:
    name: str
    version: str
    plugin: str
    input_type: str
    sample_outputs: list[str] | None = None


def resolve_base_image(plugin: str, base_image: str | None) -> str:
    if base_image in (None, "default"):
        from ..bundle.manifest import python_minor
        from ..plugin import get_registry

        return str(get_registry().call(plugin, "base_image", python_version=python_minor()))
    return base_image


@contextlib.contextmanager
def checked_bundle(model_id: ModelVersionId, func: Callable[..., Any], *, model: Any, plugin: str,
                   options: Mapping[str, Any] | None, pkgs_to_install: Sequence[str] | None,
                   sample_inputs: Sequence[Any] | None, check: bool = True) -> Iterator[tuple[Path, list[str] | None]]:
    """Write the bundle to a temporary directory and (with ``check``) load it in a fresh process before yielding it."""
    from ..bundle.check import run_check
    from ..bundle.writer import write_bundle
    from ..envs import ensure_env

    bundle = write_bundle(None, model_id, func, model=model, plugin=plugin, options=options,
                          pkgs_to_install=pkgs_to_install, sample_inputs=sample_inputs)
    try:
        outputs = None
        if check:
            python = ensure_env(pkgs_to_install) if pkgs_to_install else None
            outputs = run_check(bundle, model_id.input_type, sample_inputs, python=python)
        yield bundle, outputs
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def replica_load_is_the_check(clipper_conn: ConnectionInterface, sample_inputs: Sequence[Any] | None) -> bool:
    """Whether the first replica's own load can stand in for the fresh-process check: its manager runs replicas on
    this machine, in this Python, and fails the deploy with the replica's traceback. Sample inputs still get the
    check, whose outputs the deploy returns."""
    manager = getattr(clipper_conn, "cm", None)
    return sample_inputs is None and bool(getattr(manager, "loads_bundles_locally", False))


def deploy_model_bundle(
    clipper_conn: ConnectionInterface, name: str, version: Any, input_type: str, func: Callable[..., Any], *,
    model: Any = None, plugin: str = "python", options: Mapping[str, Any] | None = None,
    base_image: str | None = "default", labels: Sequence[str] | None = None, registry: str | None = None,
    num_replicas: int = 1, batch_size: int = -1, pkgs_to_install: Sequence[str] | None = None,
    sample_inputs: Sequence[Any] | None = None, before_ship: Callable[[], None] | None = None,
) -> DeployResult:
    """Deploy ``func`` (with ``model`` saved by ``plugin``) as model ``name:version``.

    ``before_ship`` runs once the bundle has passed its fresh-process check, so that a bundle that
    cannot load leaves nothing behind on the cluster. Where the first replica's load is that check (a local
    manager), it runs once the replicas serve instead: a failed deploy has then left nothing either.
    """
    return _deploy(clipper_conn, ModelVersionId.checked(name, version, input_type), func, model=model, plugin=plugin,
                   options=options, base_image=base_image, labels=labels, registry=registry,
                   num_replicas=num_replicas, batch_size=batch_size, pkgs_to_install=pkgs_to_install,
                   sample_inputs=sample_inputs, before_ship=before_ship)


def _deploy(
    clipper_conn: ConnectionInterface, model_id: ModelVersionId, func: Callable[..., Any], *, model: Any,
    plugin: str, options: Mapping[str, Any] | None, base_image: str | None, labels: Sequence[str] | None,
    registry: str | None, num_replicas: int, batch_size: int, pkgs_to_install: Sequence[str] | None,
    sample_inputs: Sequence[Any] | None, before_ship: Callable[[], None] | None,
) -> DeployResult:
    """:func:`deploy_model_bundle` for an identity checked where it entered."""
    name, version, input_type = model_id.name, model_id.version, model_id.input_type
    labels = validate_labels(labels)
    validate_deploy_args(num_replicas, batch_size)
    image = resolve_base_image(plugin, base_image)
    in_replica = replica_load_is_the_check(clipper_conn, sample_inputs)
    with checked_bundle(model_id, func, model=model, plugin=plugin, options=options,
                        pkgs_to_install=pkgs_to_install, sample_inputs=sample_inputs,
                        check=not in_replica) as (bundle, outputs):
        if before_ship is not None and not in_replica:
            before_ship()
        clipper_conn.build_and_deploy_model(name, version, input_type, str(bundle), image, labels, registry,
                                            num_replicas, batch_size, pkgs_to_install)
        if before_ship is not None and in_replica:
            before_ship()
    return DeployResult(name, version, plugin, input_type, outputs)


def create_model_endpoint(
    clipper_conn: ConnectionInterface, name: str, input_type: str, func: Callable[..., Any], *,
    model: Any = None, plugin: str = "python", options: Mapping[str, Any] | None = None,
    default_output: str = "None", version: Any = 1, slo_micros: int = 3000000, labels: Sequence[str] | None = None,
    registry: str | None = None, base_image: str | None = "default", num_replicas: int = 1, batch_size: int = -1,
    pkgs_to_install: Sequence[str] | None = None, sample_inputs: Sequence[Any] | None = None,
) -> DeployResult:
    """Register app ``name``, deploy the model under the same name, and link the two (Clipper's
    ``create_endpoint``). An existing app is reused when its input type matches."""
    validate_name(name, "application name")
    model_id = ModelVersionId.checked(name, version, input_type)  # the model is named after the app
    input_type = model_id.input_type
    app = clipper_conn.get_app_info(name)
    if app is not None and app.get("input_type") != input_type:
        raise ClipperException(f"Application {name!r} exists with input_type {app.get('input_type')!r}, "
                               f"not {input_type!r}")

    def register_app() -> None:
        if app is None:
            clipper_conn.register_application(name, input_type, default_output, slo_micros)

    result = _deploy(clipper_conn, model_id, func, model=model, plugin=plugin, options=options, base_image=base_image,
                     labels=labels, registry=registry, num_replicas=num_replicas, batch_size=batch_size,
                     pkgs_to_install=pkgs_to_install, sample_inputs=sample_inputs, before_ship=register_app)
    if name not in clipper_conn.get_linked_models(name):
        clipper_conn.link_model_to_app(name, name)
    return result


def next_version(clipper_conn: ConnectionInterface, name: str) -> str:
    """One more than the highest integer version of ``name`` already registered (``"1"`` if none)."""
    versions = [m.get("model_version") for m in clipper_conn.get_all_models(verbose=True)
                if isinstance(m, dict) and m.get("model_name") == name]
    numeric = [int(v) for v in versions if isinstance(v, str) and v.isdigit()]
    return str(max(numeric, default=0) + 1)
