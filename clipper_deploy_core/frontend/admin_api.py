"""Clipper's management REST API (``/admin/*``), plus the replica endpoints a manager serves.

Paths, bodies and replies follow Clipper's management frontend: JSON POSTs, 200 with plain text
for mutations and JSON for getters. Errors are 4xx with JSON ``error`` and ``cause`` (Clipper's message).
Who may call it is :mod:`.admin_guard`'s business: every mutation needs the admin token.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from ..exceptions import ClipperException
from ..naming import validate_module_names
from ..selection.policy import PolicyError
from ..selection.registry import policy_class
from . import warm_imports
from .admin_guard import TOKEN_HEADER, AdminGuard, admin_error
from .http import Request, Response, json_response, text_response
from .state import ClusterState, Deployment

__all__ = ["TOKEN_HEADER", "AdminAPI", "ReplicaController"]
DIGEST = re.compile(r"[0-9a-f]{64}")


class ReplicaController(Protocol):
    """What the cluster process gives the admin API: running replicas for model versions."""

    async def deploy(self, deployment: Deployment) -> None:
        """Record ``deployment`` and start its replicas; return once they are linked, or raise with why not."""

    async def set_num_replicas(self, name: str, version: str, n: int) -> None:
        """Scale ``name:version`` to ``n`` replicas; a failed scale-up leaves the previous record as it was."""

    async def stop(self, name: str, version: str) -> None:
        """Stop every replica of ``name:version`` and forget its deployment."""

    def expected(self, name: str, version: str) -> int:
        """How many replicas ``name:version`` should have (queries wait for them while they start)."""

    def replicas(self) -> list[dict[str, Any]]:
        """Every replica, as ``get_all_containers(verbose=True)`` reports it."""

    def failure(self, name: str, version: str) -> str | None:
        """Why ``name:version`` has no live replica, when every replica keeps failing to start; else ``None``."""

    async def warm_template(self, modules: tuple[str, ...]) -> bool:
        """Start the replica template that imports ``modules``, for a coming deploy to fork from; ``False`` where
        replicas do not start from templates."""


BodyHandler = Callable[[dict[str, Any]], Awaitable[Any]]
# Runs a mutation against a state shared with other frontends (read, apply, write back, retry on conflict).
Transaction = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
Endpoint = Callable[[Request], Awaitable[Response]]


class AdminAPI:
    """Clipper's ``/admin/*`` endpoints over the cluster state and a replica controller."""
    def __init__(self, state: ClusterState, controller: ReplicaController, guard: AdminGuard,
                 transaction: Transaction | None = None) -> None:
        self.state, self.controller, self.guard = state, controller, guard
        self.transaction = transaction

    def routes(self) -> list[tuple[str, str, Endpoint]]:
        """``(method, path regex, endpoint)`` for every admin endpoint, each behind the guard."""
        mutations: dict[str, BodyHandler] = {
            "add_app": self._add_app, "delete_app": self._delete_app,
            "add_model_links": self._add_links, "delete_model_links": self._delete_links,
            "add_model": self._add_model, "delete_versioned_model": self._delete_model,
            "set_model_version": self._set_version, "set_selection_policy": self._set_policy,
            "deploy_replicas": self._deploy_replicas, "set_num_replicas": self._set_num_replicas,
            "warm_replica_template": self._warm_template,
        }
        getters: dict[str, BodyHandler] = {
            "get_all_applications": self._get_apps, "get_application": self._get_app,
            "get_linked_models": self._get_links, "get_all_models": self._get_models, "get_model": self._get_model,
            "get_all_containers": self._get_containers, "get_container": self._get_container,
            "get_state": self._get_state, "get_deployment": self._get_deployment,
        }
        routes: list[tuple[str, str, Endpoint]] = [("GET", "/admin/ping", self._guarded(self._ping, False))]
        routes += [("POST", f"/admin/{n}", self._wrap(h, mutating=True)) for n, h in mutations.items()]
        routes += [("POST", f"/admin/{n}", self._wrap(h, mutating=False)) for n, h in getters.items()]
        return routes

    async def _ping(self, request: Request) -> Response:
        # Answers anyone, as probes need; a token sent along is checked, so a client learns at connect() that the
        # cluster refuses it, not at its first mutation.
        if TOKEN_HEADER.lower() in request.headers and not self.guard.authorized(request):
            return admin_error(403, f"This cluster refuses the admin token in the {TOKEN_HEADER} header: it is not "
                                    f"the token the cluster was started with")
        return text_response("PONG")

    def _guarded(self, endpoint: Endpoint, mutating: bool) -> Endpoint:
        async def guarded(request: Request) -> Response:
            refused = self.guard.refuse(request, mutating)
            return refused if refused is not None else await endpoint(request)
        return guarded

    def _wrap(self, handler: BodyHandler, mutating: bool) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                body = orjson.loads(request.body or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
            except ValueError as e:
                return admin_error(400, f"Error parsing JSON: {e}. Expected JSON schema: a JSON object")
            try:
                if mutating and self.transaction is not None:
                    result = await self.transaction(lambda: handler(body))
                else:
                    result = await handler(body)
            except FieldError as e:
                return admin_error(400, f"{e}. Expected JSON schema: see the Clipper management API")
            except (ClipperException, PolicyError) as e:
                return admin_error(400, str(e))
            if isinstance(result, str):
                return text_response(result)
            return json_response(result)
        return self._guarded(endpoint, mutating)

    # --- applications -------------------------------------------------------------------------
    async def _add_app(self, b: dict[str, Any]) -> str:
        name = _str(b, "name")
        self.state.add_app(name, _str(b, "input_type"), _str(b, "default_output"), _int(b, "latency_slo_micros"))
        return f"Successfully added application with name '{name}'"

    async def _delete_app(self, b: dict[str, Any]) -> str:
        name = _str(b, "name")
        self.state.delete_app(name)
        return f"Successfully deleted application with name '{name}'"

    async def _get_apps(self, b: dict[str, Any]) -> list[Any]:
        apps = self.state.apps()
        return [self.state.app_dict(a) for a in apps] if _bool(b, "verbose") else [a.name for a in apps]

    async def _get_app(self, b: dict[str, Any]) -> dict[str, Any]:
        app = self.state.get_app(_str(b, "name"))
        if app is None:
            return {}
        info = self.state.app_dict(app)
        name, params, saved = self.state.policy(app.name)
        try:  # what the policy has learned (weights, shares), from the state it last saved
            info["selection_policy"].update(policy_class(name)(self.state.linked_models(app.name), params,
                                                                saved or None).describe())
        except PolicyError as e:
            info["selection_policy"]["error"] = str(e)
        return info

    async def _get_state(self, b: dict[str, Any]) -> str:
        name = _str(b, "app_name")
        app = self.state.get_app(name)
        if app is None:
            raise ClipperException(f"No application with name '{name}' exists.")
        return app.default_output

    # --- links --------------------------------------------------------------------------------
    async def _add_links(self, b: dict[str, Any]) -> str:
        app, models = _str(b, "app_name"), _str_list(b, "model_names")
        self.state.add_link(app, models)
        if len(models) == 1:
            return f"Successfully linked model with name '{models[0]}' to application '{app}'"
        return f"Successfully linked models {models} to application '{app}'"

    async def _delete_links(self, b: dict[str, Any]) -> str:
        app, models = _str(b, "app_name"), _str_list(b, "model_names")
        name, params, _ = self.state.policy(app)
        if name != "default" and self.state.get_app(app) is not None:
            remaining = [m for m in self.state.linked_models(app) if m not in models]
            try:
                policy_class(name)(remaining, params, None)
            except PolicyError as e:
                raise ClipperException(f"Unlinking {models} from '{app}' would break its '{name}' selection policy "
                                       f"({e}); set a policy without them first") from None
        self.state.delete_link(app, models)
        return f"Successfully deleted links between {models} and application '{app}'"

    async def _get_links(self, b: dict[str, Any]) -> list[str]:
        app = _str(b, "app_name")
        if self.state.get_app(app) is None:
            raise ClipperException(f"No application with name '{app}' exists.")
        return self.state.linked_models(app)

    # --- selection policies ---------------------------------------------------------------------
    async def _set_policy(self, b: dict[str, Any]) -> str:
        app, name = _str(b, "app_name"), _str(b, "policy")
        params = _get(b, "params", {})
        if not isinstance(params, dict):
            raise FieldError(f"params must be a JSON object, got {type(params).__name__}")
        if self.state.get_app(app) is None:
            raise ClipperException(f"No app with name '{app}' exists.")
        policy_class(name)(self.state.linked_models(app), params, None)  # PolicyError names a bad parameter
        self.state.set_policy(app, name, params)
        return f"Successfully set the selection policy of application '{app}' to '{name}'"

    # --- models -------------------------------------------------------------------------------
    async def _add_model(self, b: dict[str, Any]) -> str:
        name = _str(b, "model_name")
        self.state.add_model(name, _version(b), _str(b, "input_type"), _str_list(b, "labels", []),
                             _str(b, "container_name", "NO_CONTAINER"), _str(b, "model_data_path", "DEPRECATED"),
                             _int(b, "batch_size", -1))
        return f"Successfully added model with name '{name}'"

    async def _delete_model(self, b: dict[str, Any]) -> str:
        name, version = _str(b, "model_name"), _version(b)
        if self.state.get_model(name, version) is None:
            raise ClipperException(f"model {name}:{version} does not exist")
        await self.controller.stop(name, version)
        self.state.delete_model(name, version)
        return f"Successfully deleted model with name '{name}' and version '{version}'"

    async def _set_version(self, b: dict[str, Any]) -> str:
        name, version = _str(b, "model_name"), _version(b)
        self.state.set_model_version(name, version)
        return f"Successfully set version of model '{name}' to '{version}'"

    async def _get_models(self, b: dict[str, Any]) -> list[Any]:
        models = self.state.models()
        return [m.as_dict() for m in models] if _bool(b, "verbose") else [f"{m.name}:{m.version}" for m in models]

    async def _get_model(self, b: dict[str, Any]) -> dict[str, Any]:
        m = self.state.get_model(_str(b, "model_name"), _version(b))
        return {} if m is None else m.as_dict()

    # --- replicas -----------------------------------------------------------------------------
    async def _get_containers(self, b: dict[str, Any]) -> list[Any]:
        reps = self.controller.replicas()
        if _bool(b, "verbose"):
            return reps
        return [f"{r['model_name']}:{r['model_version']}:{r['model_replica_id']}" for r in reps]

    async def _get_container(self, b: dict[str, Any]) -> dict[str, Any]:
        wanted = (_str(b, "model_name"), _version(b), _int(b, "replica_id"))
        for r in self.controller.replicas():
            if (r["model_name"], r["model_version"], r["model_replica_id"]) == wanted:
                return r
        return {}

    async def _deploy_replicas(self, b: dict[str, Any]) -> str:
        from ..bundle.verify import validate_pkgs

        digest = _str(b, "digest")
        if not DIGEST.fullmatch(digest):
            raise ClipperException(f"digest must be the bundle's sha256 (64 lowercase hex digits), got {digest!r}")
        if ("bundle_dir" in b) == ("image" in b):
            raise FieldError("deploy_replicas takes exactly one of 'bundle_dir' (a bundle in the cluster's store) "
                             "and 'image' (a model image)")
        d = Deployment(_str(b, "model_name"), _version(b), digest, _count(b, "num_replicas"),
                       validate_pkgs(_str_list(b, "pkgs_to_install", [])),
                       bundle=_str(b, "bundle_dir") if "bundle_dir" in b else None,
                       image=_str(b, "image") if "image" in b else None)
        await self.controller.deploy(d)
        await warm_imports.wait()  # the first query after the deploy must not wait on the frontend's imports
        return f"Started {d.num_replicas} replica(s) of {d.name}:{d.version}"

    async def _set_num_replicas(self, b: dict[str, Any]) -> str:
        name, version, n = _str(b, "model_name"), _version(b), _count(b, "num_replicas")
        await self.controller.set_num_replicas(name, version, n)
        return f"Set {name}:{version} to {n} replica(s)"

    async def _warm_template(self, b: dict[str, Any]) -> str:
        modules = tuple(sorted(set(validate_module_names(_str_list(b, "modules"), "modules"))))
        if not modules:
            raise FieldError("modules must name at least one module to preload, like ['torch']")
        if not await self.controller.warm_template(modules):
            return "This cluster's replicas do not start from templates: nothing to warm"
        return f"Warming a replica template with {', '.join(modules)} imported"

    async def _get_deployment(self, b: dict[str, Any]) -> dict[str, Any]:
        d = self.state.get_deployment(_str(b, "model_name"), _version(b))
        return {} if d is None else {"model_name": d.name, "model_version": d.version, "bundle_dir": d.bundle,
                                     "image": d.image,
                                     "digest": d.digest, "num_replicas": d.num_replicas, "pkgs_to_install": d.pkgs}


# --- request fields: each checked where it enters, so a wrong type is a 400 naming it ----------
class FieldError(ClipperException):
    """A field of an admin request is missing or of the wrong type."""


_REQUIRED: Any = object()


def _get(b: dict[str, Any], key: str, default: Any) -> Any:
    if key in b:
        return b[key]
    if default is _REQUIRED:
        raise FieldError(f"Missing required field '{key}'")
    return default


def _str(b: dict[str, Any], key: str, default: Any = _REQUIRED) -> str:
    v = _get(b, key, default)
    if not isinstance(v, str):
        raise FieldError(f"Field '{key}' must be a string, got {type(v).__name__}")
    return v


def _int(b: dict[str, Any], key: str, default: Any = _REQUIRED) -> int:
    v = _get(b, key, default)
    if type(v) is not int:
        raise FieldError(f"Field '{key}' must be an integer, got {type(v).__name__}")
    return v


def _count(b: dict[str, Any], key: str) -> int:
    n = _int(b, key)
    if not 0 <= n <= 10_000:
        raise ClipperException(f"{key} must be an integer from 0 to 10000, got {n!r}")
    return n


def _bool(b: dict[str, Any], key: str) -> bool:
    v = _get(b, key, False)
    if not isinstance(v, bool):
        raise FieldError(f"Field '{key}' must be true or false, got {type(v).__name__}")
    return v


def _version(b: dict[str, Any]) -> str:
    v = _get(b, "model_version", _REQUIRED)
    if type(v) not in (str, int):
        raise FieldError(f"Field 'model_version' must be a string or an integer, got {type(v).__name__}")
    return str(v)


def _str_list(b: dict[str, Any], key: str, default: Any = _REQUIRED) -> list[str]:
    v = _get(b, key, default)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise FieldError(f"Field '{key}' must be a list of strings")
    return list(v)
