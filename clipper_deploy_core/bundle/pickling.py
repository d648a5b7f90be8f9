"""cloudpickle with user code carried by value, for the function and for plugins' model classes."""

from __future__ import annotations

import contextlib
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle

_INSTALLED = tuple(str(Path(sysconfig.get_paths()[k]).resolve())
                   for k in ("purelib", "platlib", "stdlib", "platstdlib"))


def is_user_module(module: ModuleType | None) -> bool:
    """A module from the user's own files (a script or project module) rather than an installed package."""
    path = getattr(module, "__file__", None)
    if module is None or path is None or module.__name__ == "__main__":
        return False  # __main__ is pickled by value already
    return not str(Path(path).resolve()).startswith(_INSTALLED)


@contextlib.contextmanager
def by_value(*objects: Any) -> Iterator[None]:
    """Pickle the user modules that define ``objects`` (functions, classes, instances) by value.

    cloudpickle pickles anything from an importable module by reference, which fails in a replica
    that lacks the user's script.
    """
    modules = []
    for obj in objects:
        owner = obj if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__module__")) else type(obj)
        module = sys.modules.get(getattr(owner, "__module__", "") or "")
        if is_user_module(module) and module not in modules:
            modules.append(module)
    for m in modules:
        cloudpickle.register_pickle_by_value(m)
    try:
        yield
    finally:
        for m in modules:
            cloudpickle.unregister_pickle_by_value(m)


def dumps_by_value(obj: Any, *also: Any) -> bytes:
    """``cloudpickle.dumps(obj)`` with the user modules of ``obj`` (and of ``also``) carried by value."""
    with by_value(obj, *also):
        return bytes(cloudpickle.dumps(obj))
