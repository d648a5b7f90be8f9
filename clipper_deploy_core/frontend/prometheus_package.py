"""prometheus-client's metrics, without the web servers its package ``__init__`` imports.

``import prometheus_client`` runs ``__init__``, which imports ``exposition``: http.server, wsgiref, urllib.request
and the email parser, 0.35 s of CPU without bytecode (about half of the package), on every frontend's start, for
servers the frontend never runs (``/metrics`` is a route of its own query port). The submodules the frontend uses
(``metrics``, ``registry``, ``values``, ``multiprocess``, ``metrics_core``) import only each other, so
:func:`enter` puts the package in ``sys.modules`` without running ``__init__``; ``exposition`` loads at the first
scrape. Anything else in the process still sees the whole package: the first lookup of a name only ``__init__``
defines (``prometheus_client.Counter``, ``from prometheus_client import *``) runs it then.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from typing import Any

NAME = "prometheus_client"
_lock = threading.Lock()


def enter() -> None:
    """Make ``prometheus_client.<submodule>`` importable without running the package's ``__init__`` (a no-op once
    the package is imported, either way)."""
    with _lock:
        if NAME in sys.modules:
            return
        spec = importlib.util.find_spec(NAME)
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"No module named {NAME!r}", name=NAME)
        package = importlib.util.module_from_spec(spec)  # __path__, __spec__, __file__: what submodule imports need
        loader = spec.loader
        init_lock = threading.Lock()

        def __getattr__(name: str) -> Any:
            # "from . import values" looks up its submodules here: import them, as the import system would
            if not name.startswith("__"):
                try:
                    return importlib.import_module(f"{NAME}.{name}")
                except ModuleNotFoundError as e:
                    if e.name != f"{NAME}.{name}":
                        raise
            with init_lock:  # a name __init__ defines: run it, once
                if package.__dict__.pop("__getattr__", None) is not None:
                    loader.exec_module(package)
            if name not in package.__dict__:
                raise AttributeError(f"module {NAME!r} has no attribute {name!r}")
            return package.__dict__[name]

        package.__dict__["__getattr__"] = __getattr__  # PEP 562: asked only for names the module lacks
        sys.modules[NAME] = package
