"""The query port described as OpenAPI 3.1 (``GET /openapi.json``), generated from the registered apps so that each
app's body schema is exact for its input type, and a page that sends a query (``GET /docs``), served by the cluster.

Every status the query port can answer is described, with its body: the API's own errors (JSON ``error`` and
``cause``; V2's ``error``) and the HTTP layer's (413, 414, 431, 408, 503).
"""

from __future__ import annotations

from typing import Any

from ..inputs import NUMPY_DTYPES
from .assets import read_asset
from .http import Handler, Request, Response, json_response
from .state import ClusterState

INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
NUMBER = {"type": "number"}


def input_schema(input_type: str) -> dict[str, Any]:
    """One input of ``input_type``, as the frontend validates it."""
    if input_type in NUMPY_DTYPES:
        return {"type": "array", "minItems": 1, "items": INT32 if input_type == "integers" else NUMBER}
    if input_type == "bytes":
        return {"type": "string", "contentEncoding": "base64", "description": "the bytes, base64-encoded"}
    return {"type": "string"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


HTTP_ERRORS = {
    "408": "the request's head or body did not arrive in time",
    "413": "the body is larger than max_request_bytes, or holds more rows than max_batch_rows",
    "414": "the request line is too long",
    "431": "the request's headers are too large",
    "503": "the frontend is at its connection limit",
}


def _errors(*api: tuple[str, str], v2: bool = False) -> dict[str, Any]:
    # V2's errors carry "error" only; the HTTP layer's carry "error" and "cause", which V2Error also describes.
    schema = _ref("V2Error" if v2 else "Error")
    out = {status: _json(schema, why) for status, why in api}
    out.update({status: _json(schema, why) for status, why in HTTP_ERRORS.items()})
    out["405"] = _json(schema, "the path exists, not with this method")
    return out


def _predict(app: Any, max_rows: int) -> dict[str, Any]:
    x = input_schema(app.input_type)
    common = {"version": {"type": ["string", "integer"], "description": "a version of the first linked model"},
              "uid": {"type": ["string", "integer"], "description": "the user, for a selection policy"}}
    body = {"oneOf": [
        {"type": "object", "required": ["input"], "properties": {"input": x, **common},
         "not": {"required": ["input_batch"]}},
        {"type": "object", "required": ["input_batch"],
         "properties": {"input_batch": {"type": "array", "minItems": 1, "maxItems": max_rows, "items": x}, **common},
         "not": {"required": ["input"]}}]}
    return {"post": {
        "summary": f"Query app '{app.name}' ({app.input_type}, SLO {app.latency_slo_micros} µs)",
        "operationId": f"predict_{app.name}",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {"200": _json({"oneOf": [_ref("Prediction"), _ref("BatchPrediction")]},
                                   "the answer (the app's default output, with why, past the SLO)"),
                      **_errors(("400", "the body or an input is invalid, or the version is unknown"),
                                ("404", "no such app"))}}}


def _update(app: Any) -> dict[str, Any]:
    body = {"type": "object", "required": ["input", "label"],
            "properties": {"input": input_schema(app.input_type), "label": {"type": ["number", "string"]},
                           "uid": {"type": ["string", "integer"]}},
            "not": {"required": ["input_batch"]}}
    return {"post": {
        "summary": f"Feedback for app '{app.name}'", "operationId": f"update_{app.name}",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {"200": {"description": "Clipper's acknowledgement",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      **_errors(("400", "the body or the input is invalid, or no model is linked"),
                                ("404", "no such app"))}}}


def _v2(apps: list[Any]) -> dict[str, Any]:
    names = [a.name for a in apps]
    model: dict[str, Any] = {"name": "app", "in": "path", "required": True, "schema": {"type": "string", "enum": names}}
    tensor = {"type": "object", "required": ["name", "shape", "datatype"],
              "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                             "datatype": {"type": "string"}, "data": {}, "parameters": {"type": "object"}}}
    infer_body = {"type": "object", "required": ["inputs"],
                  "properties": {"inputs": {"type": "array", "items": tensor}, "outputs": {"type": "array"},
                                 "parameters": {"type": "object"}, "id": {"type": "string"}}}
    ok = _json({"type": "object"}, "the answer")
    v2_errors = _errors(("400", "the request is invalid"), ("404", "no such model or version"), v2=True)
    paths: dict[str, Any] = {
        "/v2": {"get": {"summary": "Server metadata", "responses": {"200": ok}}},
        "/v2/health/live": {"get": {"summary": "Liveness", "responses": {"200": ok}}},
        "/v2/health/ready": {"get": {"summary": "Readiness", "responses": {"200": ok}}},
    }
    if names:
        paths["/v2/models/{app}"] = {"get": {"summary": "Model metadata", "parameters": [model],
                                             "responses": {"200": ok, **v2_errors}}}
        paths["/v2/models/{app}/ready"] = {"get": {"summary": "Model readiness", "parameters": [model],
                                                   "responses": {"200": ok, **v2_errors}}}
        paths["/v2/models/{app}/infer"] = {"post": {
            "summary": "Inference (Open Inference Protocol V2; Triton's binary tensors also accepted)",
            "parameters": [model],
            "requestBody": {"required": True, "content": {"application/json": {"schema": infer_body}}},
            "responses": {"200": ok, **v2_errors}}}
    return paths


COMPONENTS = {"schemas": {
    "Error": {"type": "object", "required": ["error", "cause"],
              "properties": {"error": {"type": "string"}, "cause": {"type": "string"}}},
    "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Prediction": {"type": "object", "required": ["query_id", "output", "default"], "properties": {
        "query_id": {"type": "integer"}, "output": {"description": "the model's string, parsed as JSON when it is"},
        "default": {"type": "boolean"}, "default_explanation": {"type": "string"},
        "model": {"type": "string", "description": "name:version that answered, under a selection policy"},
        "partial_explanation": {"type": "string"}}},
    "BatchPrediction": {"type": "object", "required": ["batch_predictions"],
                        "properties": {"batch_predictions": {"type": "array", "items": _ref("Prediction")}}},
}}


def build(state: ClusterState, max_rows: int) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the query port for the apps registered now."""
    from importlib.metadata import version  # on first request: not a cost of every frontend's start

    apps = state.apps()
    paths: dict[str, Any] = {}
    for app in apps:
        paths[f"/{app.name}/predict"] = _predict(app, max_rows)
        paths[f"/{app.name}/update"] = _update(app)
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "responses": {
        "200": {"description": "the text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    paths.update(_v2(apps))
    return {"openapi": "3.1.0",
            "info": {"title": "clipper-deploy query API", "version": version("clipper-deploy-core"),
                     "description": "Clipper's REST query API and the Open Inference Protocol V2, for the apps "
                                    "registered on this cluster."},
            "paths": paths, "components": COMPONENTS}


class OpenAPIDocs:
    """``GET /openapi.json`` and ``GET /docs`` on the query port."""

    def __init__(self, state: ClusterState, max_rows: int) -> None:
        self.state, self.max_rows = state, max_rows

    def routes(self) -> list[tuple[str, str, Handler]]:
        """The description, the page, and the page's script."""
        return [("GET", "/openapi.json", self.openapi), ("GET", "/docs/?", self.docs),
                ("GET", "/docs/docs.js", self.script)]

    async def openapi(self, request: Request) -> Response:
        """The description, generated now."""
        return json_response(build(self.state, self.max_rows))

    async def docs(self, request: Request) -> Response:
        """A page that lists the apps and sends a query to one."""
        return Response(200, read_asset("docs.html"), "text/html; charset=utf-8")

    async def script(self, request: Request) -> Response:
        """The page's script."""
        return Response(200, read_asset("docs.js"), "text/javascript; charset=utf-8")
