"""The connection interface the deployers use: the subset of ``ClipperConnection`` they call.

Deployers accept any object with these methods, with Clipper's signatures and meaning, so a
deployer works against the embedded local cluster, Docker, Kubernetes or a test double alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ConnectionInterface(Protocol):
    def register_application(self, name: str, input_type: str, default_output: str, slo_micros: int) -> None:
        """Create app ``name``; raise ``ClipperException`` if it exists or an argument is invalid."""

    def get_app_info(self, name: str) -> dict[str, Any] | None:
        """``{name, input_type, default_output, latency_slo_micros, linked_models}``, or ``None``."""

    def get_linked_models(self, app_name: str) -> list[str]:
        """Names of the models linked to ``app_name``, in link order (the first answers under the default policy)."""

    def link_model_to_app(self, app_name: str, model_name: str) -> None:
        """Route ``app_name``'s queries to ``model_name``'s current version."""

    def get_all_models(self, verbose: bool = False) -> list[Any]:
        """``["name:version", ...]``, or with ``verbose`` dicts with ``model_name`` and ``model_version``."""

    def build_and_deploy_model(self, name: str, version: str, input_type: str, model_data_path: str,
                               base_image: str, labels: Sequence[str] | None = None,
                               container_registry: str | None = None, num_replicas: int = 1,
                               batch_size: int = -1, pkgs_to_install: Sequence[str] | None = None) -> None:
        """Package the bundle at ``model_data_path``, start ``num_replicas`` replicas, register the
        version (making it current) and return once they serve, or raise with the replica's error."""
