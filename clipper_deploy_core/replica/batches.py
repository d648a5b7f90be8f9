"""What a replica does with the batch frames it receives: decode, validate, predict, reply.

Batches from several frontends that are waiting together run as one predict call: with N frontends each one's
batches are 1/N as large, and merging them gives the model the batch one frontend would have sent.
"""

from __future__ import annotations

from typing import Any

from .. import wire
from ..inputs import InputError, parse_single_input, to_batch, validate_input

Frame = tuple[dict[str, Any], bytearray]


def _parse_raw(input_type: str, items: list[Any], raw: list[int]) -> tuple[Any, dict[str, str]]:
    """Parse the bodies the frontend forwarded unparsed; return the batch of valid inputs and the errors."""
    invalid: dict[str, str] = {}
    for i in raw:
        try:
            items[i] = parse_single_input(input_type, items[i])
        except InputError as e:
            invalid[str(i)] = str(e)
    valid = [x for i, x in enumerate(items) if str(i) not in invalid]
    return (to_batch(input_type, valid) if valid else None), invalid


def _prepare(input_type: str, msg: dict[str, Any], payload: bytearray) -> tuple[Any, int, dict[str, str]]:
    """``(batch of the valid inputs or None, inputs in the frame, {position: why invalid})``."""
    batch, n, raw = wire.decode_batch(msg, payload)
    if input_type == "bytes":  # base64 on the wire
        batch = [validate_input(input_type, x) for x in batch]
    invalid: dict[str, str] = {}
    if raw:
        batch, invalid = _parse_raw(input_type, batch, raw)
    return batch, n, invalid


def _result(msg: dict[str, Any], outputs: list[str], n: int, invalid: dict[str, str]) -> dict[str, Any]:
    if invalid:  # put the answers back in place around the inputs that failed validation
        served = iter(outputs)
        outputs = [None if str(i) in invalid else next(served) for i in range(n)]  # type: ignore[misc]
    return {"type": "result", "id": msg["id"], "outputs": outputs, "invalid": invalid}


def _error(msg: dict[str, Any], e: Exception) -> dict[str, Any]:
    kind = "contract" if type(e).__name__ == "PredictContractError" else "error"
    return {"type": "error", "id": msg["id"], "kind": kind, "message": f"{type(e).__name__}: {e}"}


def handle(loaded: Any, msg: dict[str, Any], payload: bytearray) -> dict[str, Any] | None:
    """One frame from a frontend: a batch in, its reply out (None for a frame that wants none)."""
    return handle_together(loaded, [(msg, payload)])[0]


def _concat(input_type: str, batches: list[Any]) -> Any:
    """One batch of the inputs of several, in order, in the form a predict function receives."""
    first = batches[0]
    if all(getattr(b, "ndim", 0) == 2 and b.shape[1:] == first.shape[1:] and b.dtype == first.dtype
           for b in batches):
        import numpy as np

        return np.concatenate(batches)
    return to_batch(input_type, [x for b in batches for x in b])


def handle_together(loaded: Any, frames: list[Frame]) -> list[dict[str, Any] | None]:
    """Frames that arrived together (from different frontends): their batches run as one predict call, and each
    frame gets the reply for its own inputs. A model error fails every batch of the call, as it would one batch."""
    input_type = loaded.manifest.input_type
    replies: list[dict[str, Any] | None] = [None] * len(frames)
    runnable: list[tuple[int, Any, int, dict[str, str]]] = []
    for i, (msg, payload) in enumerate(frames):
        if msg.get("type") != "batch":
            continue
        try:
            batch, n, invalid = _prepare(input_type, msg, payload)
        except Exception as e:  # noqa: BLE001 - a bad batch is reported, never fatal
            replies[i] = _error(msg, e)
            continue
        if batch is None:
            replies[i] = _result(msg, [], n, invalid)
        else:
            runnable.append((i, batch, n, invalid))
    if not runnable:
        return replies
    sizes = [n - len(invalid) for _, _, n, invalid in runnable]
    try:
        merged = runnable[0][1] if len(runnable) == 1 else _concat(input_type, [b for _, b, _, _ in runnable])
        outputs = list(loaded.predict_batch(merged, sum(sizes)))
    except Exception as e:  # noqa: BLE001 - a model error is reported per batch, never fatal
        for i, *_ in runnable:
            replies[i] = _error(frames[i][0], e)
        return replies
    start = 0
    for (i, _, n, invalid), size in zip(runnable, sizes, strict=True):
        replies[i] = _result(frames[i][0], outputs[start:start + size], n, invalid)
        start += size
    return replies
