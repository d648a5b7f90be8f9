"""What the query path imports on first use, imported ahead, so that no query pays for it: prometheus-client's
metrics (every query is counted) and numpy (a batch of arrays, ``input_batch`` or a V2 tensor, becomes one array;
a single ``{"input": ...}`` is forwarded unparsed and needs none). Under 0.1 s with bytecode, 0.9 s without, longer
on a busy machine.

The cluster process imports the metrics in a thread once it listens, beside the first deploy, and a deploy does not
return before the thread is done (:func:`wait`): "ready" means the frontend is warm as well as the replica. Started
any earlier, the thread would share the GIL with the rest of the start, and so delay ``start_clipper()``, which
waits only for the cluster to listen. numpy follows in a thread once a replica has answered a first query
(:func:`start_arrays`), off the path of a cold start, whose first query needs none; a body parsed before then waits
for that thread (:func:`arrays`), never blocking the event loop.
"""

from __future__ import annotations

import asyncio
import threading

from . import prometheus_package

MODULES = ("prometheus_client.metrics",)  # every query's
ARRAY_MODULES = ("numpy",)  # a batch of arrays'

_threads: dict[tuple[str, ...], threading.Thread] = {}


def _import(modules: tuple[str, ...]) -> None:
    prometheus_package.enter()
    for name in modules:
        __import__(name)  # not importlib.import_module: only this shows in ``python -X importtime``


def _start(modules: tuple[str, ...]) -> None:
    if modules not in _threads:
        _threads[modules] = threading.Thread(target=_import, args=(modules,), name="warm-imports", daemon=True)
        _threads[modules].start()


def start() -> None:
    """Begin importing :data:`MODULES` in a thread (once per process)."""
    _start(MODULES)


def start_arrays() -> None:
    """Begin importing :data:`ARRAY_MODULES` in a thread (once per process; called with every answer)."""
    _start(ARRAY_MODULES)


async def arrays() -> None:
    """Return once :data:`ARRAY_MODULES` are imported, starting their thread if nothing has."""
    start_arrays()
    await _done(ARRAY_MODULES)


def run() -> None:
    """Import :data:`MODULES` and :data:`ARRAY_MODULES` now (a query worker, before it listens)."""
    _import(MODULES + ARRAY_MODULES)


async def wait() -> None:
    """Return once the thread :func:`start` began is done (at once if it is, or was never started)."""
    await _done(MODULES)


async def _done(modules: tuple[str, ...]) -> None:
    thread = _threads.get(modules)
    if thread is not None and thread.is_alive():
        await asyncio.to_thread(thread.join)
