"""Replica management through the cluster's admin API: the part every manager shares.

The cluster process (its supervisor) owns the replicas, whatever runs them, so scaling and
stopping are admin calls; a manager only says how to reach the admin port and with which token.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ClipperException
from ..http_client import admin_post
from .base import ContainerManager


def cache_size_args(cache_size: Any) -> list[str]:
    """``start_clipper(cache_size=...)`` (Clipper's: the prediction cache in bytes, 0 for none) as the cluster
    process's arguments; ``None`` leaves the cluster's default (32 MiB)."""
    if cache_size is None:
        return []
    if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
        raise ClipperException(f"cache_size must be a number of bytes (0 turns the prediction cache off), "
                               f"got {cache_size!r}")
    return ["--cache-size", str(cache_size)]


def check_frontends(frontends: Any) -> int:
    """The number of frontend processes to run (each serves the query port; replicas link to all), checked."""
    if isinstance(frontends, bool) or not isinstance(frontends, int) or frontends < 1:
        raise ClipperException(f"frontends must be a whole number of at least 1, got {frontends!r}")
    return frontends


class AdminBackedManager(ContainerManager):
    admin_token: str | None = None

    def _admin(self, path: str, body: dict[str, Any], timeout: float = 30.0) -> Any:
        return admin_post(self.get_admin_addr(), path, body, timeout, self.admin_token)

    def _containers(self) -> list[dict[str, Any]]:
        return list(self._admin("get_all_containers", {"verbose": True}))

    def _deploy(self, name: str, version: str, digest: str, num_replicas: int, *, bundle: str | None = None,
                image: str | None = None, pkgs: list[str] | None = None) -> None:
        """Ask the cluster to run ``num_replicas`` replicas of a ``bundle`` in its store or of a model ``image``."""
        runs = {"bundle_dir": bundle} if bundle is not None else {"image": image}
        self._admin("deploy_replicas", {"model_name": name, "model_version": str(version), **runs, "digest": digest,
                                        "num_replicas": num_replicas, "pkgs_to_install": pkgs or []}, timeout=3600)

    def get_num_replicas(self, name: str, version: str) -> int:
        return sum(1 for c in self._containers() if (c["model_name"], c["model_version"]) == (name, str(version)))

    def set_num_replicas(self, name: str, version: str, input_type: str, image: str, num_replicas: int) -> None:
        self._scale(name, version, num_replicas)

    def _scale(self, name: str, version: str, n: int) -> None:
        """The cluster's supervisor scales; Clipper's ``input_type`` and ``image`` are not needed for it."""
        self._admin("set_num_replicas", {"model_name": name, "model_version": str(version), "num_replicas": n},
                    timeout=3600)

    def stop_models(self, models: dict[str, list[str]]) -> None:
        for name, versions in models.items():
            for v in versions:
                if self._admin("get_deployment", {"model_name": name, "model_version": str(v)}):
                    self._scale(name, v, 0)

    def stop_all_model_containers(self) -> None:
        for c in self._containers():
            self._scale(c["model_name"], c["model_version"], 0)
