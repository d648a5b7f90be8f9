"""An Open Inference Protocol V2 inference request, parsed and validated exactly as the REST API validates.

A pure function of the bytes (offloadable like :mod:`.rest_body`). The single input tensor's first dimension
is the batch; each row becomes one query of the app's input type. Numbers are checked as one array by
:func:`..inputs.numeric_rows`, so V2 accepts exactly the numbers REST accepts; binary sizes must be
non-negative and account for every byte sent; shapes are integers (``true`` is not one).
"""

from __future__ import annotations

import base64
import math
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from ..inputs import InputError, numeric_rows, validate_input
from .rest_body import BodyError, too_many_rows

HEADER = "Inference-Header-Content-Length"
NUMPY = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4", "INT16": "<i2", "INT8": "i1",
         "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2", "UINT8": "u1", "BOOL": "?"}
_NUMERIC = frozenset({"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"})
ACCEPTS = {"doubles": _NUMERIC, "floats": _NUMERIC,
           "integers": frozenset({"INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"}),
           "strings": frozenset({"BYTES"}), "bytes": frozenset({"BYTES"})}
ADVERTISED = {"doubles": "FP64", "floats": "FP32", "integers": "INT32", "strings": "BYTES", "bytes": "BYTES"}


def _bad(message: str) -> BodyError:
    return BodyError(400, "Invalid inference request", message)


@dataclass
class V2Query:
    rows: Any  # the inputs in wire form: a list, or a 2-D numpy array of rows
    binary_out: bool
    id: str | None


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _bytes_elements(buf: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(buf):
        if i + 4 > len(buf):
            raise _bad("BYTES binary data is truncated")
        (n,) = struct.unpack_from("<I", buf, i)
        if i + 4 + n > len(buf):
            raise _bad("BYTES binary data is truncated")
        out.append(buf[i + 4:i + 4 + n])
        i += 4 + n
    return out


def parse_v2(body: bytes, header_length: int | None, input_type: str, max_rows: int) -> V2Query:
    """Parse and validate a V2 request (JSON header plus optional binary tensors); ``BodyError`` if malformed."""
    n = len(body) if header_length is None else header_length
    if not 0 <= n <= len(body):
        raise _bad(f"{HEADER} {header_length} is outside the body of {len(body)} bytes")
    try:
        header = orjson.loads(body[:n])
    except orjson.JSONDecodeError as e:
        raise _bad(f"the JSON header does not parse: {e}") from None
    if not isinstance(header, dict):
        raise _bad("the body must be a JSON object")
    binary = body[n:]
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _bad("The request must have exactly one input tensor in 'inputs'")
    bools = b"true" in body[:n] or b"false" in body[:n]
    rows = _rows(input_type, inputs[0], binary, max_rows, bools)
    params = _dict(header.get("parameters"), "'parameters'")
    outputs = header.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or any(not isinstance(o, dict) or o.get("name") != "output"
                                                for o in outputs):
            raise _bad("Unknown output requested: this model has one output, 'output'")
        binary_out = any(bool(_dict(o.get("parameters"), "an output's 'parameters'").get("binary_data"))
                         for o in outputs)
    else:
        binary_out = bool(params.get("binary_data_output"))
    rid = header.get("id")
    return V2Query(rows, binary_out, rid if isinstance(rid, str) else None)


def _rows(input_type: str, t: dict[str, Any], binary: bytes, max_rows: int, bools: bool) -> Any:
    name, dtype, shape = t.get("name"), t.get("datatype"), t.get("shape")
    if not isinstance(name, str):
        raise _bad("The input tensor needs a string 'name'")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise _bad(f"Input '{name}': shape must be a non-empty list of non-negative integers, got {shape!r}")
    if shape[0] == 0:
        raise _bad(f"Input '{name}': the batch dimension is 0")
    if shape[0] > max_rows:
        raise too_many_rows(shape[0], max_rows)
    if not isinstance(dtype, str) or dtype not in ACCEPTS[input_type]:
        raise _bad(f"Input '{name}': datatype {dtype!r} cannot be converted to this model's input type "
                   f"{input_type} (accepted: {', '.join(sorted(ACCEPTS[input_type]))})")
    count = math.prod(shape)
    size = _dict(t.get("parameters"), f"Input '{name}': 'parameters'").get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise _bad(f"Input '{name}': binary_data_size must be a non-negative integer, got {size!r}")
        if size != len(binary):
            raise _bad(f"Input '{name}': binary_data_size {size} does not match the {len(binary)} bytes of binary "
                       f"data sent")
        return _binary_rows(input_type, dtype, binary, shape, count, name)
    if binary:
        raise _bad(f"{len(binary)} bytes of binary data follow the header, but no input declares binary_data_size")
    if "data" not in t:
        raise _bad(f"Input '{name}' has neither 'data' nor binary data")
    return _json_rows(input_type, dtype, t["data"], shape, count, name, bools)


def _binary_rows(input_type: str, dtype: str, raw: bytes, shape: list[int], count: int, name: str) -> Any:
    import numpy as np

    if dtype == "BYTES":
        return _text_rows(input_type, _bytes_elements(raw), shape, count, name)
    itemsize = np.dtype(NUMPY[dtype]).itemsize
    if len(raw) != count * itemsize:
        raise _bad(f"Input '{name}': shape {shape} needs {count * itemsize} bytes of {dtype}, got {len(raw)}")
    arr = np.frombuffer(raw, dtype=NUMPY[dtype]).reshape(shape[0], -1) if count else np.empty((shape[0], 0))
    return _checked(input_type, arr, name)


def _json_rows(input_type: str, dtype: str, data: Any, shape: list[int], count: int, name: str,
               bools: bool) -> Any:
    import numpy as np

    if dtype == "BYTES":
        flat = data if isinstance(data, list) and all(isinstance(x, str) for x in data) else None
        if flat is None:
            raise _bad(f"Input '{name}': BYTES data must be a flat list of strings")
        return _text_rows(input_type, flat, shape, count, name)
    try:
        arr = np.array(data)
    except (ValueError, OverflowError, TypeError) as e:
        _explain(input_type, data, shape, name)
        raise _bad(f"Input '{name}': data must be a (nested) list of numbers of one shape: {e}") from None
    if arr.dtype.kind not in "iuf" or bools:
        _explain(input_type, data, shape, name)
    if arr.dtype.kind not in "iuf":
        raise _bad(f"Input '{name}': data holds {arr.dtype} values, not numbers of datatype {dtype}")
    if arr.size != count:
        raise _bad(f"Input '{name}': shape {shape} needs {count} elements, got {arr.size}")
    return _checked(input_type, arr.reshape(shape[0], -1), name)


def _explain(input_type: str, data: Any, shape: list[int], name: str) -> None:
    """Check row by row, as REST does, so an error names the first offending element (``a[0][1] is str``)."""
    flat: list[Any] = []
    stack = [data]
    while stack:  # iterative: nesting as deep as the JSON parser allows must not exhaust Python's stack
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(reversed(x))
        else:
            flat.append(x)
    if len(flat) != math.prod(shape):
        raise _bad(f"Input '{name}': shape {shape} needs {math.prod(shape)} elements, got {len(flat)}")
    width = len(flat) // shape[0] if shape[0] else 0
    for i in range(shape[0]):
        try:
            validate_input(input_type, flat[i * width:(i + 1) * width], f"{name}[{i}]")
        except InputError as e:
            raise _bad(str(e)) from None


def _checked(input_type: str, arr: Any, name: str) -> Any:
    try:
        return numeric_rows(input_type, arr, name)
    except InputError as e:
        raise _bad(str(e)) from None


def _text_rows(input_type: str, elements: list[Any], shape: list[int], count: int, name: str) -> list[Any]:
    if len(elements) != count:
        raise _bad(f"Input '{name}': shape {shape} needs {count} elements, got {len(elements)}")
    if count != shape[0]:
        raise _bad(f"Input '{name}': BYTES inputs take shape [batch] or [batch, 1]")
    if input_type == "strings":
        try:
            return [e.decode() if isinstance(e, bytes) else e for e in elements]
        except UnicodeDecodeError:
            raise _bad(f"Input '{name}': BYTES elements must be UTF-8 for a strings model") from None
    return [base64.b64encode(e if isinstance(e, bytes) else e.encode()).decode() for e in elements]


