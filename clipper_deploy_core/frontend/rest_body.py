"""A Clipper REST query body, parsed and validated in one pass: ``{"input": x}`` or ``{"input_batch": [...]}``.

A pure function of the bytes, so a large body can be parsed in a helper process (:mod:`.offload`). A batch
of numbers is checked as one array, never row by row in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..inputs import NUMPY_DTYPES, InputError, numeric_rows, parse_single_input, validate_input

SCHEMA_HINT = ('Expected JSON schema: {"input": <input>} or {"input_batch": [<input>, ...]}, optional "version" '
               'and "uid"')


class BodyError(Exception):
    """A body that cannot be served: the HTTP status, the error's title and its cause."""

    def __init__(self, status: int, error: str, cause: str) -> None:
        super().__init__(status, error, cause)
        self.status, self.error, self.cause = status, error, cause


def too_many_rows(n: int, max_rows: int) -> BodyError:
    """The 413 for a request over ``max_rows`` rows, saying how to raise the cap."""
    return BodyError(413, "Request too large", f"The request has {n} rows; this cluster takes at most {max_rows} "
                                               f"per request (max_batch_rows on the container manager, or "
                                               f"--max-batch-rows, raises it)")


@dataclass
class RestQuery:
    inputs: Any  # the inputs in wire form: a list, or a 2-D numpy array whose rows are the inputs
    version: str | None
    uid: str | None = None  # the user, for a selection policy that keeps each user on one model


def parse_rest(body: bytes, input_type: str, max_rows: int) -> RestQuery:
    """Parse and validate a REST body for ``input_type``; ``BodyError`` says what is wrong."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BodyError(400, "Json error", f"Error parsing JSON: {e}. {SCHEMA_HINT}") from None
    if not isinstance(obj, dict) or ("input" in obj) == ("input_batch" in obj):
        raise BodyError(400, "Json error", f"JSON object must have exactly one of the keys input or input_batch. "
                                           f"{SCHEMA_HINT}")
    version = obj.get("version")
    if version is not None and type(version) not in (str, int):
        raise BodyError(400, "Json error", f"version must be a string or an integer, got {type(version).__name__}")
    uid = obj.get("uid")
    if uid is not None and (type(uid) not in (str, int) or (isinstance(uid, str) and not uid)):
        raise BodyError(400, "Json error", f"uid must be a non-empty string or an integer, got {uid!r:.40}")
    uid = None if uid is None else str(uid)
    batch = "input_batch" in obj
    raw = obj["input_batch"] if batch else [obj["input"]]
    if batch and (not isinstance(raw, list) or not raw):
        raise BodyError(400, "Json error", f"input_batch must be a non-empty JSON array. {SCHEMA_HINT}")
    if len(raw) > max_rows:
        raise too_many_rows(len(raw), max_rows)
    bools = b"true" in body or b"false" in body
    try:
        if batch and input_type in NUMPY_DTYPES and not bools:
            rows = _numeric_batch(input_type, raw)
            if rows is not None:
                return RestQuery(rows, None if version is None else str(version), uid)
        inputs = [validate_input(input_type, x, f"input_batch[{i}]" if batch else "input", bools)
                  for i, x in enumerate(raw)]
    except InputError as e:
        raise BodyError(400, "Json error", f"{e}. {SCHEMA_HINT}") from None
    wire = raw if input_type == "bytes" else inputs  # bytes travel base64-encoded
    return RestQuery(wire, None if version is None else str(version), uid)


def check_single(body: bytes, input_type: str) -> None:
    """Why a ``{"input": [numbers]}`` body the frontend forwarded unparsed is invalid: ``InputError``, if it is."""
    parse_single_input(input_type, body)


def _numeric_batch(input_type: str, raw: list[Any]) -> Any:
    """Rows of equal length as one checked array, or ``None`` to let the row-by-row check say what is wrong."""
    import numpy as np

    try:
        arr = np.array(raw)
    except (ValueError, OverflowError):
        return None  # ragged, or numbers beyond 64 bits
    if arr.ndim != 2 or arr.dtype.kind not in "iuf":
        return None
    try:
        return numeric_rows(input_type, arr)
    except InputError:
        return None
