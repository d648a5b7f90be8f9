"""The container-manager interface (Clipper's ``ContainerManager``), shared by every manager."""

from __future__ import annotations

import abc
from typing import Any


class ContainerManager(abc.ABC):
    @abc.abstractmethod
    def start_clipper(self, **kwargs: Any) -> None: ...
    @abc.abstractmethod
    def connect(self) -> None: ...
    @abc.abstractmethod
    def build_model(self, name: str, version: str, model_data_path: str, base_image: str,
                    container_registry: str | None = None, pkgs_to_install: list[str] | None = None) -> str: ...
    @abc.abstractmethod
    def deploy_model(self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1) -> None: ...
    @abc.abstractmethod
    def get_num_replicas(self, name: str, version: str) -> int: ...
    @abc.abstractmethod
    def set_num_replicas(self, name: str, version: str, input_type: str, image: str, num_replicas: int) -> None: ...
    @abc.abstractmethod
    def get_logs(self, logging_dir: str) -> list[str]: ...
    @abc.abstractmethod
    def stop_models(self, models: dict[str, list[str]]) -> None: ...
    @abc.abstractmethod
    def stop_all_model_containers(self) -> None: ...
    @abc.abstractmethod
    def stop_all(self, graceful: bool = True) -> None: ...
    @abc.abstractmethod
    def get_admin_addr(self) -> str: ...
    @abc.abstractmethod
    def get_query_addr(self) -> str: ...
    @abc.abstractmethod
    def get_metric_addr(self) -> str: ...


class RemoteAddresses:
    """For managers whose cluster runs elsewhere: ``connect()`` fills ``addrs`` (``query``, ``admin``)."""

    addrs: dict[str, str] | None = None

    def connect(self) -> None:
        raise NotImplementedError

    def _need(self) -> dict[str, str]:
        if self.addrs is None:
            self.connect()
        assert self.addrs is not None
        return self.addrs

    def get_query_addr(self) -> str:
        return self._need()["query"]

    def get_admin_addr(self) -> str:
        return self._need()["admin"]

    def get_metric_addr(self) -> str:
        return self.get_query_addr()  # /metrics is served on the query port
