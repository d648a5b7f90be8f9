"""The container-manager contract (Clipper's ``ContainerManager``): what runs in the user's process to start,
reach, feed and stop a cluster. ``ClipperConnection`` is its only caller; ``docs/container-managers.md`` says how
to write one, and ``tests/test_docs.py`` checks that every method here is documented there.

A manager never imports the server-side program (``clipper_deploy_core.cluster``): it starts that program as a
process (or container, or Deployment) and talks to its admin API. Managers are found through the
``clipper_deploy.container_managers`` entry-point group (:mod:`.registry`).
"""

from __future__ import annotations

import abc
from typing import Any


class ContainerManager(abc.ABC):
    """Where a cluster runs. Names and arguments are Clipper's; each method says when it is called."""

    #: True when replicas run on this machine, in the user's Python environment, and ``deploy_model`` fails with
    #: the replica's own traceback when a bundle cannot load. ``deploy()`` then skips its separate fresh-process
    #: check (the first replica's load is the same check, one interpreter start and framework import sooner).
    #: Read: by ``deploy()``, before it writes the bundle.
    loads_bundles_locally: bool = False

    @abc.abstractmethod
    def start_clipper(self, **kwargs: Any) -> None:
        """Start a new cluster and wait until its admin API answers. ``kwargs`` are the manager's own options.
        Raises ``ClipperException`` if a cluster of this name already runs or the cluster does not come up.
        Called: by ``ClipperConnection.start_clipper``."""

    @abc.abstractmethod
    def connect(self) -> None:
        """Find the running cluster of this name (and its admin token). Raises ``ClipperException`` if none runs.
        Called: by ``ClipperConnection.connect``, and before the first call that needs an address."""

    @abc.abstractmethod
    def build_model(self, name: str, version: str, model_data_path: str, base_image: str,
                    container_registry: str | None = None, pkgs_to_install: list[str] | None = None) -> str:
        """Turn the verified bundle at ``model_data_path`` into what replicas run (a bundle in the cluster's store,
        a model image FROM ``base_image``, pushed to ``container_registry`` when given) and return its reference,
        which ``deploy_model`` gets as ``image``. Raises ``BundleError`` for a bundle that does not verify.
        Called: by ``ClipperConnection.build_model`` (``build_and_deploy_model``, ``deploy()``)."""

    @abc.abstractmethod
    def deploy_model(self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1) -> None:
        """Run ``num_replicas`` replicas of ``image`` and return once each is linked (and warm). Raises
        ``ClipperException`` with the replica's own traceback when one cannot load its model.
        Called: by ``ClipperConnection.deploy_model``, before the model is registered."""

    @abc.abstractmethod
    def get_num_replicas(self, name: str, version: str) -> int:
        """How many replicas of ``name:version`` run now. Called: by ``ClipperConnection.get_num_replicas``."""

    @abc.abstractmethod
    def set_num_replicas(self, name: str, version: str, input_type: str, image: str, num_replicas: int) -> None:
        """Scale ``name:version`` to ``num_replicas`` (``input_type`` and ``image`` are the registered model's, as
        Clipper passes them). A failed scale-up leaves the previous replicas and record as they were and raises
        ``ClipperException``. Called: by ``ClipperConnection.set_num_replicas`` and ``set_model_version``."""

    @abc.abstractmethod
    def get_logs(self, logging_dir: str) -> list[str]:
        """Copy the cluster's and every replica's logs into ``logging_dir``; return the files written.
        Called: by ``ClipperConnection.get_clipper_logs`` and ``clipper-deploy logs``."""

    @abc.abstractmethod
    def stop_models(self, models: dict[str, list[str]]) -> None:
        """Stop every replica of each ``{name: [version, ...]}``; versions without replicas are skipped. Returns
        once the replicas have stopped (not merely been asked to), so none is listed or routed to afterwards.
        Called: by ``ClipperConnection.stop_versioned_models`` (``stop_models``, ``stop_inactive_model_versions``),
        before the versions are unregistered."""

    @abc.abstractmethod
    def stop_all_model_containers(self) -> None:
        """Stop every replica of every model, returning once they have stopped.
        Called: by ``ClipperConnection.stop_all_model_containers``."""

    @abc.abstractmethod
    def stop_all(self, graceful: bool = True) -> None:
        """Stop the cluster and everything it runs, and delete its state (``graceful=False``: kill at once).
        Called: by ``ClipperConnection.stop_all`` and ``clipper-deploy stop``."""

    @abc.abstractmethod
    def get_admin_addr(self) -> str:
        """``host:port`` of the admin API. Called: by ``ClipperConnection`` for every admin call."""

    @abc.abstractmethod
    def get_query_addr(self) -> str:
        """``host:port`` of the query API. Called: by ``ClipperConnection.get_query_addr``."""

    @abc.abstractmethod
    def get_metric_addr(self) -> str:
        """``host:port`` where ``/metrics`` is served (the query port). Called: by
        ``ClipperConnection.get_metric_addr`` and ``inspect_instance``."""


class RemoteAddresses:
    """For managers whose cluster runs elsewhere: ``connect()`` fills ``addrs`` (``query``, ``admin``)."""

    addrs: dict[str, str] | None = None

    def connect(self) -> None:
        """Fill ``addrs``; the manager that mixes this in implements it."""
        raise NotImplementedError

    def _need(self) -> dict[str, str]:
        if self.addrs is None:
            self.connect()
        assert self.addrs is not None
        return self.addrs

    def get_query_addr(self) -> str:
        """``host:port`` of the query API (connecting first if needed)."""
        return self._need()["query"]

    def get_admin_addr(self) -> str:
        """``host:port`` of the admin API (connecting first if needed)."""
        return self._need()["admin"]

    def get_metric_addr(self) -> str:
        """``host:port`` of ``/metrics``: the query port."""
        return self.get_query_addr()  # /metrics is served on the query port
