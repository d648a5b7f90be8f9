"""Parsing of large request bodies in a helper process, so the event loop never holds one big request.

JSON parsing holds the GIL for its whole call (a 16 MiB body takes a few hundred milliseconds on a small
machine), so a thread would stall every other query just the same. Bodies up to ``LARGE_BODY`` bytes are
parsed in place: they cost less than a millisecond or two. The helper starts on the first large body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from . import warm_imports
from .rest_body import BodyError

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

LARGE_BODY = 128 * 1024
T = TypeVar("T")


class Offload:
    """Parses bodies over ``threshold`` bytes in a helper process (one at a time), smaller ones in place."""
    def __init__(self, threshold: int = LARGE_BODY) -> None:
        self.threshold = threshold
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, fn: Callable[..., T], body: bytes, *args: Any) -> T:
        """``fn(body, *args)``: in place for a small body, else in the helper process (one at a time)."""
        if len(body) <= self.threshold:
            await warm_imports.arrays()  # a parsed body may become an array: numpy, imported in a thread
            return fn(body, *args)
        # imported on the first large body, not at the cluster's start: multiprocessing is a tenth of its imports
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, body, *args)
        except BrokenProcessPool:  # the helper died (out of memory, say): a new one serves the next body
            self._pool = None
            raise BodyError(413, "Request too large", "The body could not be parsed within this cluster's "
                                                      "memory; send it in smaller requests") from None

    def close(self) -> None:
        """Stop the helper process, if one was started."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
