"""The Open Inference Protocol V2 (KServe / Triton / MLServer) on the query port.

A V2 model is a clipper app. The single input tensor's first dimension is the batch; each row
becomes one query of the app's input type. The output is a BYTES tensor ``output`` with the
model's strings, one per row. Triton's binary tensor extension is supported in both directions,
since ``tritonclient`` uses it by default. Where a row got the app's default output, the reply's
``parameters`` say how many and why (V2 has no notion of a default output).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from .http import Handler, Request, Response, json_response
from .query_api import QueryAPI, QueryRejected
from .rest_body import BodyError
from .v2_body import ADVERTISED, HEADER, parse_v2


class V2Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


class V2API:
    """The Open Inference Protocol V2 endpoints on the query port, over the REST API's queues."""
    def __init__(self, query: QueryAPI) -> None:
        self.query = query
        self.state = query.state

    def routes(self) -> list[tuple[str, str, Handler]]:
        """Every V2 route: health, server and model metadata, readiness, inference."""
        m = r"/v2/models/(?P<name>[^/]+)"
        v = m + r"/versions/(?P<version>[^/]+)"
        return [("GET", "/v2", self.server_metadata), ("GET", "/v2/health/live", self.live),
                ("GET", "/v2/health/ready", self.ready), ("GET", m, self.metadata), ("GET", v, self.metadata),
                ("GET", m + "/ready", self.model_ready), ("GET", v + "/ready", self.model_ready),
                ("POST", m + "/infer", self.infer), ("POST", v + "/infer", self.infer)]

    async def server_metadata(self, request: Request) -> Response:
        """``GET /v2``: name, version and extensions."""
        from importlib.metadata import version

        return json_response({"name": "clipper-deploy", "version": version("clipper-deploy-core"),
                                  "extensions": ["binary_tensor_data"]})

    async def live(self, request: Request) -> Response:
        """``GET /v2/health/live``."""
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        """``GET /v2/health/ready``."""
        return json_response({"ready": True})

    def _target(self, request: Request) -> tuple[Any, str, Any]:
        name, version = request.params["name"], request.params.get("version")
        app = self.state.get_app(name)
        if app is None:
            raise V2Error(404, f"Unknown model '{name}': no application with that name")
        try:
            served, model = self.query.resolve(app, version)
        except QueryRejected as e:
            raise V2Error(404, e.cause) from None
        return app, served, model

    async def metadata(self, request: Request) -> Response:
        """``GET /v2/models/<app>``: the app as a V2 model (one input, one BYTES output)."""
        try:
            app, _, _ = self._target(request)
        except V2Error as e:
            return _error(e.status, e.message)
        linked = self.state.linked_models(app.name)
        versions = [m.version for m in self.state.models(linked[0])] if linked else []
        return json_response({
            "name": app.name, "versions": versions, "platform": "clipper-deploy",
            "inputs": [{"name": "input", "datatype": ADVERTISED[app.input_type],
                        "shape": [-1] if app.input_type in ("strings", "bytes") else [-1, -1]}],
            "outputs": [{"name": "output", "datatype": "BYTES", "shape": [-1]}]})

    async def model_ready(self, request: Request) -> Response:
        """``GET /v2/models/<app>/ready``: 200 while a replica serves it."""
        try:
            app, served, model = self._target(request)
        except V2Error as e:
            return _error(e.status, e.message)
        live = model is not None and self.query.dispatcher.live_replicas((model.name, model.version)) > 0
        if not live:
            return _error(400, f"Model '{app.name}' is not ready: no live replica serves it")
        return json_response({"name": app.name, "version": served, "ready": True})

    async def infer(self, request: Request) -> Response:
        """``POST /v2/models/<app>/infer``: each row of the input tensor is one query of the app."""
        size = request.headers.get(HEADER.lower())
        try:
            app, served, _ = self._target(request)
            if size is not None and not size.isdigit():
                raise V2Error(400, f"Invalid inference request: {HEADER} must be a byte count, got {size!r}")
            parsed = await self.query.offload.parse(parse_v2, request.body, None if size is None else int(size),
                                                    app.input_type, self.query.max_batch_rows)
            served, outcomes = await self.query.run(app, parsed.rows, request.params.get("version"))
        except V2Error as e:
            return _error(e.status, e.message)
        except BodyError as e:
            return _error(e.status, f"{e.error}: {e.cause}")
        except QueryRejected as e:
            return _error(404 if e.unknown_version else 400, e.cause)
        strings = []
        defaults: list[str] = []
        for o in outcomes:
            if o.output is not None:
                strings.append(o.output)
            else:
                self.query.count_default(app, o)
                strings.append(app.default_output)
                defaults.append(o.explanation or "")
        reply: dict[str, Any] = {"model_name": app.name, "model_version": served}
        if parsed.id is not None:
            reply["id"] = parsed.id
        if defaults:
            reply["parameters"] = {"default_count": len(defaults), "default_explanations": json.dumps(defaults)}
        out: dict[str, Any] = {"name": "output", "datatype": "BYTES", "shape": [len(strings)]}
        if not parsed.binary_out:
            reply["outputs"] = [{**out, "data": strings}]
            return json_response(reply)
        payload = b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in strings))
        reply["outputs"] = [{**out, "parameters": {"binary_data_size": len(payload)}}]
        head = json.dumps(reply).encode()
        return Response(200, head + payload, "application/octet-stream", {HEADER: str(len(head))})
