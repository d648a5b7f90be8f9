"""Warm a framework's replica template while the user's script imports the framework.

A local cluster forks replicas from templates that have already imported their framework. Without a warm template,
the first deploy's replica imports the framework only after the user's own import and model building are done: on
torch, seconds. With the default ``preload``, a ``LocalContainerManager`` watches this process's imports instead: the
first time it imports a module that an installed plugin names in ``preload_modules``, the cluster starts that
plugin's template, which imports the framework beside the user's own import.

One finder serves the whole process and stays on ``sys.meta_path`` once added: an import walks ``sys.meta_path``
while it runs, so removing a finder from it could make a concurrent import skip the next one.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

Warm = Callable[[tuple[str, ...]], None]


class Watch:
    """One manager's groups of modules (each plugin's ``preload_modules``), each warmed once: at the first import
    of any of its top-level modules."""

    def __init__(self, groups: Iterable[tuple[str, ...]], warm: Warm) -> None:
        self.warm = warm
        self.by_module: dict[str, list[tuple[str, ...]]] = {}
        for group in groups:
            for module in group:
                self.by_module.setdefault(module.partition(".")[0], []).append(group)
        self.warmed: set[tuple[str, ...]] = set()
        self.lock = threading.Lock()

    def imported(self, top_level: str) -> None:
        """``top_level`` is being imported: warm the groups it belongs to that are not warm yet."""
        with self.lock:
            groups = [g for g in self.by_module.pop(top_level, ()) if g not in self.warmed]
            self.warmed.update(groups)
        for group in groups:
            self.warm(group)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing: it only tells the watches that a top-level import has begun."""

    def __init__(self) -> None:
        self.watches: list[Watch] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if path is None:  # a top-level module
            for watch in list(self.watches):
                if fullname in watch.by_module:
                    watch.imported(fullname)
        return None


_FINDER = _Finder()
_LOCK = threading.Lock()


def watch_imports(groups: Iterable[tuple[str, ...]], warm: Warm) -> Watch:
    """Call ``warm(group)`` once for each group, as soon as this process imports one of its modules: at once for
    a module it has already imported (or begun to). ``warm`` runs inside that import, so it must import nothing
    new and return quickly."""
    watch = Watch(groups, warm)
    with _LOCK:
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
        _FINDER.watches.append(watch)
    for name in list(watch.by_module):
        if name in sys.modules:
            watch.imported(name)
    return watch


def unwatch(watch: Watch) -> None:
    """Stop calling ``watch``'s ``warm`` (the finder stays, and answers nothing)."""
    with _LOCK:
        if watch in _FINDER.watches:
            _FINDER.watches.remove(watch)
