"""Clipper's five input types: names, aliases, and how a batch is handed to a predict function.

A predict function always receives a whole batch:

* ``integers`` / ``floats`` / ``doubles``: a 2-D numpy array (int32 / float32 / float64) of shape
  ``(n, d)`` when every input has the same length, else a list of 1-D arrays (never padded).
* ``strings``: a list of ``str``.
* ``bytes``: a list of ``bytes``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from .exceptions import ClipperException

INPUT_TYPES: tuple[str, ...] = ("integers", "floats", "doubles", "bytes", "strings")

# The aliases Clipper's frontend and container accepted (datatypes.cpp parse_input_type).
_ALIASES: dict[str, str] = {
    **{a: "bytes" for a in ("bytes", "byte", "b")},
    **{a: "integers" for a in ("integers", "ints", "integer", "int", "i")},
    **{a: "floats" for a in ("floats", "float", "f")},
    **{a: "doubles" for a in ("doubles", "double", "d")},
    **{a: "strings" for a in ("strings", "string", "str", "strs", "s")},
}

NUMPY_DTYPES: dict[str, str] = {"integers": "int32", "floats": "float32", "doubles": "float64"}
_INT32 = (-(2**31), 2**31 - 1)


def canonical_input_type(input_type: object) -> str:
    """Return the canonical name for ``input_type`` (any of Clipper's aliases, any case)."""
    if isinstance(input_type, str) and input_type.strip().lower() in _ALIASES:
        return _ALIASES[input_type.strip().lower()]
    raise ClipperException(
        f"Invalid input_type {input_type!r}. Allowed: {', '.join(INPUT_TYPES)} "
        f"(aliases: {', '.join(sorted(a for a in _ALIASES if a not in INPUT_TYPES))})"
    )


class InputError(ClipperException):
    """One input does not fit the app's input type. ``cause`` says what is wrong."""


_INTS: frozenset[type] = frozenset({int})
_NUMBERS: frozenset[type] = frozenset({int, float})


def validate_input(input_type: str, x: Any, where: str = "input", may_hold_bools: bool = True) -> Any:
    """Check one JSON-decoded input against ``input_type`` and return it ready for a batch.

    Numbers: a non-empty list of numbers (an integer literal is fine for floats and doubles,
    unlike Clipper), returned as a 1-D numpy array of the type's dtype. Strings: a string.
    Bytes: a base64 string, returned decoded. ``may_hold_bools=False`` promises that ``x`` holds
    no ``True``/``False`` (the query frontend knows when the JSON body has no such literal), which
    lets numpy check the element types in one pass.
    """
    if input_type in NUMPY_DTYPES:
        import numpy as np

        if not isinstance(x, list) or not x:
            got = "an empty array" if isinstance(x, list) else type(x).__name__
            raise InputError(f"{where} must be a non-empty JSON array of numbers for input type {input_type}, "
                             f"got {got}")
        if not may_hold_bools:
            try:
                arr = np.array(x)
            except (ValueError, OverflowError):
                arr = None
            if arr is not None and arr.ndim == 1:
                try:
                    return numeric_rows(input_type, arr[None, :], where)[0]  # the batch check, on one row
                except InputError:
                    pass  # fall through: the checks below say precisely what is wrong
        kinds = set(map(type, x))  # one C-level pass; bools are their own type here, unlike isinstance
        allowed = _INTS if input_type == "integers" else _NUMBERS
        if not kinds <= allowed:
            i, v = next((i, v) for i, v in enumerate(x) if type(v) not in allowed)
            if input_type == "integers" and isinstance(v, float):
                raise InputError(f"{where}[{i}] = {v!r} is not a 32-bit integer (input type integers)")
            raise InputError(f"{where}[{i}] is {type(v).__name__} {v!r}; input type {input_type} needs numbers")
        if input_type == "integers":
            try:
                wide = np.array(x, dtype=np.int64)
            except OverflowError:
                wide = None
            if wide is None or wide.min() < _INT32[0] or wide.max() > _INT32[1]:
                i, v = next((i, v) for i, v in enumerate(x) if not _INT32[0] <= v <= _INT32[1])
                raise InputError(f"{where}[{i}] = {v!r} is not a 32-bit integer (input type integers)")
            return wide.astype(np.int32)
        return np.array(x, dtype=NUMPY_DTYPES[input_type])
    if input_type == "strings":
        if not isinstance(x, str):
            raise InputError(f"{where} must be a JSON string for input type strings, got {type(x).__name__}")
        return x
    if input_type == "bytes":
        if not isinstance(x, str):
            raise InputError(f"{where} must be a base64 string for input type bytes, got {type(x).__name__}")
        try:
            return base64.b64decode(x, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InputError(f"{where} is not valid base64: {e}") from None
    raise ClipperException(f"unknown input type {input_type!r}")


def numeric_rows(input_type: str, arr: Any, where: str = "input_batch") -> Any:
    """A 2-D numeric array whose rows are inputs of ``input_type``, checked in one vectorised pass and
    returned in the type's dtype: the same numbers :func:`validate_input` accepts (finite, and 32-bit
    integers for ``integers``). ``InputError`` names the first offending value."""
    import numpy as np

    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InputError(f"{where} must hold non-empty arrays of numbers for input type {input_type}")
    kind = arr.dtype.kind
    if kind == "b" or kind not in ("iu" if input_type == "integers" else "iuf"):
        if input_type == "integers" and kind == "f":
            raise InputError(f"{where} holds non-integer numbers; input type integers needs 32-bit integers")
        raise InputError(f"{where} holds {arr.dtype} values; input type {input_type} needs numbers")
    if kind == "f" and not np.isfinite(arr).all():
        i, j = (int(k[0]) for k in np.nonzero(~np.isfinite(arr)))
        raise InputError(f"{where}[{i}][{j}] = {arr[i, j]!r} is not a finite number")
    if input_type == "integers" and arr.size and (arr.min() < _INT32[0] or arr.max() > _INT32[1]):
        i, j = (int(k[0]) for k in np.nonzero((arr < _INT32[0]) | (arr > _INT32[1])))
        raise InputError(f"{where}[{i}][{j}] = {arr[i, j]!r} is not a 32-bit integer (input type integers)")
    out = arr.astype(NUMPY_DTYPES[input_type], copy=False)
    if input_type == "floats" and not np.isfinite(out).all():
        raise InputError(f"{where} holds numbers beyond float32's range (input type floats)")
    return out


def parse_single_input(input_type: str, body: bytes) -> Any:
    """Parse and validate a ``{"input": [numbers]}`` body the frontend forwarded unparsed."""
    import orjson

    try:
        obj = orjson.loads(body)
    except ValueError as e:
        raise InputError(f"Error parsing JSON: {e}") from None
    if not isinstance(obj, dict) or set(obj) != {"input"}:
        raise InputError("JSON object must have exactly one of the keys input or input_batch")
    return validate_input(input_type, obj["input"], "input", b"true" in body or b"false" in body)


def to_batch(input_type: str, inputs: Sequence[Any]) -> Any:
    """Turn validated wire-form inputs into the batch a predict function receives (see module doc)."""
    if input_type in NUMPY_DTYPES:
        import numpy as np

        dtype = NUMPY_DTYPES[input_type]
        if len(inputs) == 1:  # one query (the single-client case): a 1-row view, no copy of what was just parsed
            return np.asarray(inputs[0], dtype=dtype)[np.newaxis]
        if len({len(x) for x in inputs}) == 1:
            return np.stack([np.asarray(x, dtype=dtype) for x in inputs])
        return [np.asarray(x, dtype=dtype) for x in inputs]
    return list(inputs)
