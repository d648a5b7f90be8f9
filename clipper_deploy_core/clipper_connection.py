"""``ClipperConnection``: Clipper's admin client, with its method names, signatures and messages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .deploy_args import validate_deploy_args, validate_labels
from .exceptions import ClipperException, UnconnectedException
from .http_client import admin_post, request
from .inputs import canonical_input_type, to_batch, validate_input
from .managers.base import ContainerManager
from .metrics_text import parse_metrics
from .naming import ModelVersionId, validate_name, validate_version

CONTAINERLESS_MODEL_IMAGE = "NO_CONTAINER"
logger = logging.getLogger(__name__)


class _ModelArgs(NamedTuple):
    """A model version's arguments, checked once where they enter."""

    name: str
    version: str
    input_type: str
    labels: list[str]
    num_replicas: int
    batch_size: int

    @classmethod
    def of(cls, name: str, version: Any, input_type: str, labels: list[str] | None, num_replicas: int,
           batch_size: int) -> _ModelArgs:
        model_id = ModelVersionId.checked(name, version, input_type)
        args = cls(model_id.name, model_id.version, model_id.input_type, validate_labels(labels), num_replicas,
                   batch_size)
        validate_deploy_args(num_replicas, batch_size)
        return args


class ClipperConnection:
    def __init__(self, container_manager: ContainerManager) -> None:
        self.connected = False
        self.cm = container_manager

    # --- cluster ------------------------------------------------------------------------------
    def start_clipper(self, *args: Any, **kwargs: Any) -> None:
        self.cm.start_clipper(*args, **kwargs)
        deadline = time.monotonic() + 60
        while request("GET", f"http://{self.cm.get_admin_addr()}/admin/ping")[0] != 200:
            if time.monotonic() > deadline:
                raise ClipperException("The admin API did not answer within 60s")
            time.sleep(0.05)
        self.connected = True

    def connect(self) -> None:
        self.cm.connect()
        self.connected = True

    def _check(self) -> None:
        if not self.connected:
            raise UnconnectedException()

    def _post(self, path: str, body: dict[str, Any], timeout: float = 30.0) -> Any:
        self._check()
        return admin_post(self.cm.get_admin_addr(), path, body, timeout, getattr(self.cm, "admin_token", None))

    def stop_all(self, graceful: bool = True) -> None:
        self.cm.stop_all(graceful=graceful)
        self.connected = False

    def get_query_addr(self) -> str:
        self._check()
        return self.cm.get_query_addr()

    def get_metric_addr(self) -> str:
        self._check()
        return self.cm.get_metric_addr()

    def inspect_instance(self) -> dict[str, Any]:
        self._check()
        status, text = request("GET", f"http://{self.cm.get_query_addr()}/metrics")
        if status != 200:
            raise ClipperException(f"Received error status code: {status} and message: {text}")
        return parse_metrics(text)

    def get_clipper_logs(self, logging_dir: str = "clipper_logs/") -> list[str]:
        self._check()
        return self.cm.get_logs(logging_dir)

    # --- applications -------------------------------------------------------------------------
    def register_application(self, name: str, input_type: str, default_output: str, slo_micros: int) -> None:
        self._check()
        validate_name(name, "application name")
        self._post("add_app", {"name": name, "input_type": canonical_input_type(input_type),
                               "default_output": default_output, "latency_slo_micros": slo_micros})

    def unregister_application(self, name: str) -> None:
        self._post("delete_app", {"name": name})

    def delete_application(self, name: str) -> None:
        """Deprecated alias of :meth:`unregister_application`."""
        self.unregister_application(name)

    def get_all_apps(self, verbose: bool = False) -> list[Any]:
        return list(self._post("get_all_applications", {"verbose": verbose}))

    def get_app_info(self, name: str) -> dict[str, Any] | None:
        info = self._post("get_application", {"name": name})
        return info or None

    # --- links --------------------------------------------------------------------------------
    def link_model_to_app(self, app_name: str, model_name: str) -> None:
        self._post("add_model_links", {"app_name": app_name, "model_names": [model_name]})

    def unlink_model_from_app(self, app_name: str, model_name: str) -> None:
        self._post("delete_model_links", {"app_name": app_name, "model_names": [model_name]})

    def get_linked_models(self, app_name: str) -> list[str]:
        return list(self._post("get_linked_models", {"app_name": app_name}))

    def set_selection_policy(self, app_name: str, policy: str, **params: Any) -> None:
        """Choose how ``app_name`` picks among its linked models: ``"default"`` (the first linked answers),
        ``"weighted"`` (``weights={model: number}``: a canary, a blue/green switch) or an installed policy.
        ``get_app_info(app_name)["selection_policy"]`` shows it."""
        self._post("set_selection_policy", {"app_name": app_name, "policy": policy, "params": params})

    # --- models -------------------------------------------------------------------------------
    # Each public method checks its arguments once, where they enter; the private steps trust them.
    def build_model(self, name: str, version: Any, model_data_path: str, base_image: str,
                    container_registry: str | None = None, pkgs_to_install: list[str] | None = None) -> str:
        return self.cm.build_model(validate_name(name), validate_version(version), model_data_path, base_image,
                                   container_registry, pkgs_to_install)

    def deploy_model(self, name: str, version: Any, input_type: str, image: str, labels: list[str] | None = None,
                     num_replicas: int = 1, batch_size: int = -1) -> None:
        self._check()
        self._deploy(_ModelArgs.of(name, version, input_type, labels, num_replicas, batch_size), image)

    def build_and_deploy_model(self, name: str, version: Any, input_type: str, model_data_path: str,
                               base_image: str, labels: Sequence[str] | None = None,
                               container_registry: str | None = None, num_replicas: int = 1, batch_size: int = -1,
                               pkgs_to_install: Sequence[str] | None = None) -> None:
        self._check()
        m = _ModelArgs.of(name, version, input_type, list(labels or []), num_replicas, batch_size)  # before building
        image = self.cm.build_model(m.name, m.version, model_data_path, base_image, container_registry,
                                    list(pkgs_to_install or []))
        self._deploy(m, image)

    def register_model(self, name: str, version: Any, input_type: str, image: str | None = None,
                       labels: list[str] | None = None, batch_size: int = -1) -> None:
        self._check()
        self._register(_ModelArgs.of(name, version, input_type, labels, 1, batch_size), image)

    def _deploy(self, m: _ModelArgs, image: str) -> None:
        if self.get_model_info(m.name, m.version) is not None:
            raise ClipperException(f"model with name '{m.name}' and version '{m.version}' already exists")
        self.cm.deploy_model(m.name, m.version, m.input_type, image, m.num_replicas)
        try:
            self._register(m, image)
        except ClipperException:
            self.cm.stop_models({m.name: [m.version]})  # Clipper left these running; we clean up
            raise

    def _register(self, m: _ModelArgs, image: str | None) -> None:
        self._post("add_model", {"model_name": m.name, "model_version": m.version, "labels": m.labels,
                                 "input_type": m.input_type, "container_name": image or CONTAINERLESS_MODEL_IMAGE,
                                 "model_data_path": "DEPRECATED", "batch_size": m.batch_size})

    def get_current_model_version(self, name: str) -> str:
        for m in self.get_all_models(verbose=True):
            if m["model_name"] == name and m["is_current_version"]:
                return str(m["model_version"])
        raise ClipperException(f"No versions of model {name} registered with Clipper")

    def set_model_version(self, name: str, version: Any, num_replicas: int | None = None) -> None:
        self._post("set_model_version", {"model_name": name, "model_version": str(version)})
        if num_replicas is not None:
            self.set_num_replicas(name, num_replicas, version)

    def get_all_models(self, verbose: bool = False) -> list[Any]:
        return list(self._post("get_all_models", {"verbose": verbose}))

    def get_model_info(self, name: str, version: Any) -> dict[str, Any] | None:
        return self._post("get_model", {"model_name": name, "model_version": str(version)}) or None

    # --- replicas -----------------------------------------------------------------------------
    def get_num_replicas(self, name: str, version: Any = None) -> int:
        self._check()
        version = self.get_current_model_version(name) if version is None else str(version)
        return self.cm.get_num_replicas(name, version)

    def set_num_replicas(self, name: str, num_replicas: int, version: Any = None) -> None:
        self._check()
        version = self.get_current_model_version(name) if version is None else str(version)
        info = self.get_model_info(name, version)
        if info is None:
            raise ClipperException(f"Cannot add container for non-registered model {name}:{version}")
        if info["container_name"] == CONTAINERLESS_MODEL_IMAGE:
            raise ClipperException(f"Cannot resize the replica set for containerless model {name}:{version}")
        self.cm.set_num_replicas(name, version, info["input_type"], info["container_name"], num_replicas)

    def get_all_model_replicas(self, verbose: bool = False) -> list[Any]:
        return list(self._post("get_all_containers", {"verbose": verbose}))

    def get_model_replica_info(self, name: str, version: Any, replica_id: int) -> dict[str, Any] | None:
        return self._post("get_container", {"model_name": name, "model_version": str(version),
                                            "replica_id": replica_id}) or None

    # --- stopping -----------------------------------------------------------------------------
    def stop_models(self, model_names: Sequence[str]) -> None:
        models = self.get_all_models(verbose=True)
        self.stop_versioned_models({n: [m["model_version"] for m in models if m["model_name"] == n]
                                    for n in model_names})

    def stop_versioned_models(self, model_versions_dict: dict[str, list[Any]]) -> None:
        self._check()
        self.cm.stop_models({n: [str(v) for v in vs] for n, vs in model_versions_dict.items()})
        for name, versions in model_versions_dict.items():
            for v in versions:
                self._post("delete_versioned_model", {"model_name": name, "model_version": str(v)})

    def stop_inactive_model_versions(self, model_names: Sequence[str]) -> None:
        models = self.get_all_models(verbose=True)
        self.stop_versioned_models({n: [m["model_version"] for m in models
                                        if m["model_name"] == n and not m["is_current_version"]]
                                    for n in model_names})

    def stop_all_model_containers(self) -> None:
        self._check()
        models = self.get_all_models(verbose=True)
        self.cm.stop_all_model_containers()
        for m in models:
            self._post("delete_versioned_model", {"model_name": m["model_name"], "model_version": m["model_version"]})

    # --- local check --------------------------------------------------------------------------
    def test_predict_function(self, query: dict[str, Any], func: Callable[..., Any], input_type: str) -> Any:
        """Run ``func`` locally on ``query`` exactly as a replica would see it (after a cloudpickle round trip)."""
        input_type = canonical_input_type(input_type)
        if "input" in query:
            raw = [query["input"]]
        elif "input_batch" in query:
            raw = list(query["input_batch"])
        else:
            raise ClipperException("query must have an 'input' or 'input_batch' key")
        inputs = [validate_input(input_type, x) for x in raw]
        import cloudpickle  # only here: a connection that never tests a function locally need not import it

        reloaded = cloudpickle.loads(cloudpickle.dumps(func))
        return reloaded(to_batch(input_type, inputs))
