"""What the query path imports on first use, imported as a frontend starts, so that no query pays for it:
prometheus-client's metrics (every query is counted) and numpy (a batch's inputs become an array). Together
under 0.1 s with bytecode, 0.9 s without, longer on a busy machine.

The cluster process imports them in a thread once it listens, beside the first deploy, and a deploy does not return
before the thread is done (:func:`wait`): "ready" means the frontend is warm as well as the replica. Started any
earlier, the thread would share the GIL with the rest of the start, and so delay ``start_clipper()``, which waits
only for the cluster to listen.
"""

from __future__ import annotations

import asyncio
import threading

from . import prometheus_package

MODULES = ("prometheus_client.metrics", "numpy")

_thread: threading.Thread | None = None


def _import_all() -> None:
    prometheus_package.enter()
    for name in MODULES:
        __import__(name)  # not importlib.import_module: only this shows in ``python -X importtime``


def start() -> None:
    """Begin importing :data:`MODULES` in a thread (once per process)."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=_import_all, name="warm-imports", daemon=True)
        _thread.start()


def run() -> None:
    """Import :data:`MODULES` now (a query worker, before it listens)."""
    _import_all()


async def wait() -> None:
    """Return once the thread :func:`start` began is done (at once if it is, or was never started)."""
    if _thread is not None and _thread.is_alive():
        await asyncio.to_thread(_thread.join)
