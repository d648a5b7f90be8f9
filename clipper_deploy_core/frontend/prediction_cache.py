"""Clipper's prediction cache: a model version's output for an input, bounded in bytes, least recently used first out.

Entries are keyed by model name, version and the input's bytes, so a new version never serves an old version's
entries. A single ``{"input": [numbers]}`` query, which the frontend forwards unparsed, is keyed by its body
without whitespace (parsing it for a key would cost the frontend what forwarding it unparsed saves); an input in
an ``input_batch`` by its parsed value. The same input sent the same way hits; sent once each way, it is two
entries. Only outputs are stored (never an error or a default); a reply that arrives after its query's SLO still
fills the cache, so a retry gets the answer.
"""

from __future__ import annotations

import collections
from typing import Any

import orjson

from ..wire import RawQuery

ENTRY_OVERHEAD = 160  # bytes per entry beyond its key and output (dict slot, tuple, str headers): a fair bound
DEFAULT_CACHE_BYTES = 32 * 1024 * 1024  # Clipper's default
WHITESPACE = b" \t\r\n"  # JSON's; an unparsed body holds no string in which it could matter


def input_key(x: Any) -> bytes | None:
    """An input's bytes, as the cache keys it: the raw body of an unparsed query, a numeric row's dtype and buffer,
    or the JSON of anything else. ``None`` for what cannot be keyed."""
    if isinstance(x, RawQuery):
        return b"r" + x.body.translate(None, WHITESPACE)
    if hasattr(x, "tobytes") and hasattr(x, "dtype"):
        return b"n" + str(x.dtype.str).encode() + b":" + bytes(x.tobytes())
    if isinstance(x, bytes | bytearray):
        return b"b" + bytes(x)
    try:
        return b"j" + orjson.dumps(x)
    except TypeError:
        return None


class PredictionCache:
    """Outputs by ``(model, version, input key)``, at most ``max_bytes`` in all (0: off)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache size must be 0 (off) or more bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: collections.OrderedDict[tuple[str, str, bytes], str] = collections.OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether anything is ever cached."""
        return self.max_bytes > 0

    @staticmethod
    def size(key: tuple[str, str, bytes], output: str) -> int:
        """The bytes an entry counts for."""
        return len(key[0]) + len(key[1]) + len(key[2]) + len(output) + ENTRY_OVERHEAD

    def get(self, key: tuple[str, str, bytes]) -> str | None:
        """The cached output, now the most recently used; ``None`` on a miss."""
        output = self.entries.get(key)
        if output is not None:
            self.entries.move_to_end(key)
        return output

    def put(self, key: tuple[str, str, bytes], output: str) -> None:
        """Store an output, evicting the least recently used entries past the bound. An entry larger than the
        whole cache is not stored."""
        size = self.size(key, output)
        if size > self.max_bytes:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= self.size(key, old)
        self.entries[key] = output
        self.bytes += size
        while self.bytes > self.max_bytes:
            evicted, out = self.entries.popitem(last=False)
            self.bytes -= self.size(evicted, out)
