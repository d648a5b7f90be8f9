"""Clipper's management REST API (``/admin/*``), plus the replica endpoints a manager serves.

Paths, bodies and replies follow Clipper's management frontend: JSON POSTs, 200 with plain text
for mutations and JSON for getters, 400 with a plain-text message on error. Mutations from a
non-loopback address need the configured admin token in ``X-Clipper-Admin-Token``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..exceptions import ClipperException
from .http import Request, Response, json_response, text_response
from .state import ClusterState, Deployment

TOKEN_HEADER = "X-Clipper-Admin-Token"


class ReplicaController(Protocol):
    """What a container manager provides the admin API: running replicas for model versions."""

    async def deploy(self, deployment: Deployment) -> None: ...
    async def set_num_replicas(self, name: str, version: str, n: int) -> None: ...
    async def stop(self, name: str, version: str) -> None: ...
    def expected(self, name: str, version: str) -> int: ...
    def replicas(self) -> list[dict[str, Any]]: ...


BodyHandler = Callable[[dict[str, Any]], Awaitable[Any]]
# Runs a mutation against a state shared with other frontends (read, apply, write back, retry on conflict).
Transaction = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
Endpoint = Callable[[Request], Awaitable[Response]]


class AdminAPI:
    def __init__(self, state: ClusterState, controller: ReplicaController, token: str | None = None,
                 transaction: Transaction | None = None) -> None:
        self.state, self.controller, self.token = state, controller, token
        self.transaction = transaction

    def routes(self) -> list[tuple[str, str, Endpoint]]:
        mutations: dict[str, BodyHandler] = {
            "add_app": self._add_app, "delete_app": self._delete_app,
            "add_model_links": self._add_links, "delete_model_links": self._delete_links,
            "add_model": self._add_model, "delete_versioned_model": self._delete_model,
            "set_model_version": self._set_version,
            "deploy_replicas": self._deploy_replicas, "set_num_replicas": self._set_num_replicas,
        }
        getters: dict[str, BodyHandler] = {
            "get_all_applications": self._get_apps, "get_application": self._get_app,
            "get_linked_models": self._get_links, "get_all_models": self._get_models, "get_model": self._get_model,
            "get_all_containers": self._get_containers, "get_container": self._get_container,
            "get_state": self._get_state, "get_deployment": self._get_deployment,
        }
        routes: list[tuple[str, str, Endpoint]] = [("GET", "/admin/ping", self._ping)]
        routes += [("POST", f"/admin/{n}", self._wrap(h, mutating=True)) for n, h in mutations.items()]
        routes += [("POST", f"/admin/{n}", self._wrap(h, mutating=False)) for n, h in getters.items()]
        return routes

    async def _ping(self, request: Request) -> Response:
        return text_response("PONG")

    def _authorized(self, request: Request) -> bool:
        peer = request.client
        try:
            if ipaddress.ip_address(peer).is_loopback:
                return True
        except ValueError:
            if peer == "":
                return True  # a unix socket
        given = request.headers.get(TOKEN_HEADER.lower(), "")
        return bool(self.token) and hmac.compare_digest(given, self.token or "")

    def _wrap(self, handler: BodyHandler, mutating: bool) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            if mutating and not self._authorized(request):
                return text_response(status=403, text=f"Mutating admin requests from {request.client} need the "
                                                      f"cluster's admin token in the {TOKEN_HEADER} header")
            try:
                body = json.loads(request.body or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
            except ValueError as e:
                return text_response(status=400, text=f"Error parsing JSON: {e}. Expected JSON schema: a JSON object")
            try:
                if mutating and self.transaction is not None:
                    result = await self.transaction(lambda: handler(body))
                else:
                    result = await handler(body)
            except KeyError as e:
                return text_response(status=400, text=f"Missing required field {e}. Expected JSON schema: see the "
                                                     f"Clipper management API")
            except (ClipperException, TypeError, ValueError) as e:
                return text_response(status=400, text=str(e))
            if isinstance(result, str):
                return text_response(result)
            return json_response(result)
        return endpoint

    # --- applications -------------------------------------------------------------------------
    async def _add_app(self, b: dict[str, Any]) -> str:
        self.state.add_app(b["name"], b["input_type"], b["default_output"], b["latency_slo_micros"])
        return f"Successfully added application with name '{b['name']}'"

    async def _delete_app(self, b: dict[str, Any]) -> str:
        self.state.delete_app(b["name"])
        return f"Successfully deleted application with name '{b['name']}'"

    async def _get_apps(self, b: dict[str, Any]) -> list[Any]:
        apps = self.state.apps()
        return [self.state.app_dict(a) for a in apps] if b.get("verbose") else [a.name for a in apps]

    async def _get_app(self, b: dict[str, Any]) -> dict[str, Any]:
        app = self.state.get_app(b["name"])
        return {} if app is None else self.state.app_dict(app)

    async def _get_state(self, b: dict[str, Any]) -> str:
        app = self.state.get_app(b["app_name"])
        if app is None:
            raise ClipperException(f"No application with name '{b['app_name']}' exists.")
        return app.default_output

    # --- links --------------------------------------------------------------------------------
    async def _add_links(self, b: dict[str, Any]) -> str:
        self.state.add_link(b["app_name"], b["model_names"])
        return f"Successfully linked model with name '{b['model_names'][0]}' to application '{b['app_name']}'"

    async def _delete_links(self, b: dict[str, Any]) -> str:
        self.state.delete_link(b["app_name"], list(b["model_names"]))
        return f"Successfully deleted links between {b['model_names']} and application '{b['app_name']}'"

    async def _get_links(self, b: dict[str, Any]) -> list[str]:
        if self.state.get_app(b["app_name"]) is None:
            raise ClipperException(f"No application with name '{b['app_name']}' exists.")
        return self.state.linked_models(b["app_name"])

    # --- models -------------------------------------------------------------------------------
    async def _add_model(self, b: dict[str, Any]) -> str:
        self.state.add_model(b["model_name"], str(b["model_version"]), b["input_type"], list(b.get("labels") or []),
                             b.get("container_name", "NO_CONTAINER"), b.get("model_data_path", "DEPRECATED"),
                             b.get("batch_size", -1))
        return f"Successfully added model with name '{b['model_name']}'"

    async def _delete_model(self, b: dict[str, Any]) -> str:
        name, version = b["model_name"], str(b["model_version"])
        if self.state.get_model(name, version) is None:
            raise ClipperException(f"model {name}:{version} does not exist")
        await self.controller.stop(name, version)
        self.state.delete_model(name, version)
        return f"Successfully deleted model with name '{name}' and version '{version}'"

    async def _set_version(self, b: dict[str, Any]) -> str:
        self.state.set_model_version(b["model_name"], str(b["model_version"]))
        return f"Successfully set version of model '{b['model_name']}' to '{b['model_version']}'"

    async def _get_models(self, b: dict[str, Any]) -> list[Any]:
        models = self.state.models()
        return [m.as_dict() for m in models] if b.get("verbose") else [f"{m.name}:{m.version}" for m in models]

    async def _get_model(self, b: dict[str, Any]) -> dict[str, Any]:
        m = self.state.get_model(b["model_name"], str(b["model_version"]))
        return {} if m is None else m.as_dict()

    # --- replicas -----------------------------------------------------------------------------
    async def _get_containers(self, b: dict[str, Any]) -> list[Any]:
        reps = self.controller.replicas()
        if b.get("verbose"):
            return reps
        return [f"{r['model_name']}:{r['model_version']}:{r['model_replica_id']}" for r in reps]

    async def _get_container(self, b: dict[str, Any]) -> dict[str, Any]:
        for r in self.controller.replicas():
            if (r["model_name"], r["model_version"], r["model_replica_id"]) == (
                    b["model_name"], str(b["model_version"]), int(b["replica_id"])):
                return r
        return {}

    async def _deploy_replicas(self, b: dict[str, Any]) -> str:
        d = Deployment(b["model_name"], str(b["model_version"]), b["bundle_dir"], b["digest"],
                       int(b["num_replicas"]), list(b.get("pkgs_to_install") or []))
        await self.controller.deploy(d)
        return f"Started {d.num_replicas} replica(s) of {d.name}:{d.version}"

    async def _set_num_replicas(self, b: dict[str, Any]) -> str:
        n = b["num_replicas"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ClipperException(f"num_replicas must be an integer >= 0, got {n!r}")
        await self.controller.set_num_replicas(b["model_name"], str(b["model_version"]), n)
        return f"Set {b['model_name']}:{b['model_version']} to {n} replica(s)"

    async def _get_deployment(self, b: dict[str, Any]) -> dict[str, Any]:
        d = self.state.get_deployment(b["model_name"], str(b["model_version"]))
        return {} if d is None else {"model_name": d.name, "model_version": d.version, "bundle_dir": d.bundle_dir,
                                     "digest": d.digest, "num_replicas": d.num_replicas, "pkgs_to_install": d.pkgs}
