"""The Open Inference Protocol V2 (KServe / Triton / MLServer) on the query port.

A V2 model is a clipper app. The single input tensor's first dimension is the batch; each row
becomes one query of the app's input type. The output is a BYTES tensor ``output`` with the
model's strings, one per row. Triton's binary tensor extension is supported in both directions,
since ``tritonclient`` uses it by default. Where a row got the app's default output, the reply's
``parameters`` say how many and why (V2 has no notion of a default output).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import numpy as np

from ..inputs import InputError, validate_input
from .http import Handler, Request, Response, json_response
from .query_api import QueryAPI, QueryRejected

HEADER = "Inference-Header-Content-Length"
NUMPY = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4", "INT16": "<i2", "INT8": "i1",
         "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2", "UINT8": "u1", "BOOL": "?"}
ACCEPTS = {"doubles": {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"},
           "floats": {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"},
           "integers": {"INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"},
           "strings": {"BYTES"}, "bytes": {"BYTES"}}
ADVERTISED = {"doubles": "FP64", "floats": "FP32", "integers": "INT32", "strings": "BYTES", "bytes": "BYTES"}


class V2Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def _bytes_elements(buf: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(buf):
        if i + 4 > len(buf):
            raise V2Error(400, "BYTES binary data is truncated")
        (n,) = struct.unpack_from("<I", buf, i)
        if i + 4 + n > len(buf):
            raise V2Error(400, "BYTES binary data is truncated")
        out.append(buf[i + 4:i + 4 + n])
        i += 4 + n
    return out


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [y for x in data for y in _flatten(x)]
    return [data]


class V2API:
    def __init__(self, query: QueryAPI) -> None:
        self.query = query
        self.state = query.state

    def routes(self) -> list[tuple[str, str, Handler]]:
        m = r"/v2/models/(?P<name>[^/]+)"
        v = m + r"/versions/(?P<version>[^/]+)"
        return [("GET", "/v2", self.server_metadata), ("GET", "/v2/health/live", self.live),
                ("GET", "/v2/health/ready", self.ready), ("GET", m, self.metadata), ("GET", v, self.metadata),
                ("GET", m + "/ready", self.model_ready), ("GET", v + "/ready", self.model_ready),
                ("POST", m + "/infer", self.infer), ("POST", v + "/infer", self.infer)]

    async def server_metadata(self, request: Request) -> Response:
        from importlib.metadata import version

        return json_response({"name": "clipper-deploy", "version": version("clipper-deploy-core"),
                                  "extensions": ["binary_tensor_data"]})

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
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
        try:
            app, served, model = self._target(request)
        except V2Error as e:
            return _error(e.status, e.message)
        live = model is not None and self.query.dispatcher.live_replicas((model.name, model.version)) > 0
        if not live:
            return _error(400, f"Model '{app.name}' is not ready: no live replica serves it")
        return json_response({"name": app.name, "version": served, "ready": True})

    async def infer(self, request: Request) -> Response:
        try:
            app, served, _ = self._target(request)
            header, binary = self._split(request, request.body)
            rows, binary_out = self._rows(app.input_type, header, binary)
            version = request.params.get("version")
            served, outcomes = await self.query.run(app, rows, version)
        except V2Error as e:
            return _error(e.status, e.message)
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
        if isinstance(header.get("id"), str):
            reply["id"] = header["id"]
        if defaults:
            reply["parameters"] = {"default_count": len(defaults), "default_explanations": json.dumps(defaults)}
        out: dict[str, Any] = {"name": "output", "datatype": "BYTES", "shape": [len(strings)]}
        if not binary_out:
            reply["outputs"] = [{**out, "data": strings}]
            return json_response(reply)
        payload = b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in strings))
        reply["outputs"] = [{**out, "parameters": {"binary_data_size": len(payload)}}]
        head = json.dumps(reply).encode()
        return Response(200, head + payload, "application/octet-stream", {HEADER: str(len(head))})

    @staticmethod
    def _split(request: Request, body: bytes) -> tuple[dict[str, Any], bytes]:
        size = request.headers.get(HEADER.lower())
        try:
            n = int(size) if size is not None else len(body)
            if not 0 <= n <= len(body):
                raise ValueError(f"{HEADER} {size} is outside the body of {len(body)} bytes")
            header = json.loads(body[:n])
        except ValueError as e:
            raise V2Error(400, f"Invalid inference request: {e}") from None
        if not isinstance(header, dict):
            raise V2Error(400, "Invalid inference request: the body must be a JSON object")
        return header, body[n:]

    def _rows(self, input_type: str, header: dict[str, Any], binary: bytes) -> tuple[list[Any], bool]:
        inputs = header.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise V2Error(400, "The request must have exactly one input tensor in 'inputs'")
        t = inputs[0]
        name, dtype, shape = str(t.get("name")), t.get("datatype"), t.get("shape")
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise V2Error(400, f"Input '{name}': shape must be a non-empty list of non-negative integers, "
                               f"got {shape!r}")
        if shape[0] == 0:
            raise V2Error(400, f"Input '{name}': the batch dimension is 0")
        if dtype not in ACCEPTS[input_type]:
            raise V2Error(400, f"Input '{name}': datatype {dtype!r} cannot be converted to this model's input type "
                               f"{input_type} (accepted: {', '.join(sorted(ACCEPTS[input_type]))})")
        count = math.prod(shape)
        params = t.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if not isinstance(size, int) or size > len(binary):
                raise V2Error(400, f"Input '{name}': binary_data_size {size!r} exceeds the binary data sent")
            raw = binary[:size]
            if dtype == "BYTES":
                elements: list[Any] = _bytes_elements(raw)
            elif len(raw) % np.dtype(NUMPY[dtype]).itemsize:
                raise V2Error(400, f"Input '{name}': {len(raw)} bytes is not a whole number of {dtype} values")
            else:
                elements = np.frombuffer(raw, dtype=NUMPY[dtype]).tolist()
        elif "data" in t:
            elements = _flatten(t["data"])
        else:
            raise V2Error(400, f"Input '{name}' has neither 'data' nor binary data")
        if len(elements) != count:
            raise V2Error(400, f"Input '{name}': shape {shape} needs {count} elements, got {len(elements)}")
        rows = self._convert(input_type, dtype, elements, shape[0], name)
        outputs = header.get("outputs")
        if outputs is not None:
            if not isinstance(outputs, list) or any(not isinstance(o, dict) or o.get("name") != "output"
                                                    for o in outputs):
                raise V2Error(400, "Unknown output requested: this model has one output, 'output'")
            binary_out = any((o.get("parameters") or {}).get("binary_data") for o in outputs)
        else:
            binary_out = bool((header.get("parameters") or {}).get("binary_data_output"))
        return rows, binary_out

    @staticmethod
    def _convert(input_type: str, dtype: str, elements: list[Any], n: int, name: str) -> list[Any]:
        width = len(elements) // n
        try:
            if input_type in ("strings", "bytes"):
                if width != 1:
                    raise V2Error(400, f"Input '{name}': BYTES inputs take shape [batch] or [batch, 1]")
                raw = [e if isinstance(e, bytes) else str(e).encode() for e in elements]
                if input_type == "strings":
                    return [validate_input("strings", r.decode(), f"{name}[{i}]") for i, r in enumerate(raw)]
                return [base64.b64encode(r).decode() for r in raw]
            rows = [elements[i * width:(i + 1) * width] for i in range(n)]
            return [validate_input(input_type, r, f"{name}[{i}]") for i, r in enumerate(rows)]
        except InputError as e:
            raise V2Error(400, str(e)) from None
        except UnicodeDecodeError:
            raise V2Error(400, f"Input '{name}': BYTES elements must be UTF-8 for a strings model") from None
