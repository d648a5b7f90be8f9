"""Extensions found by entry points, one group per kind (container managers, selection policies): the lookup and
the class check they share. Framework plugins go through pluggy instead (:mod:`.plugin`)."""

from __future__ import annotations

from typing import Any


def by_name(group: str) -> dict[str, Any]:
    """The group's entry points by name; the first distribution that claims a name keeps it."""
    import importlib_metadata  # on first lookup: it is 60 ms of a frontend's start without bytecode

    found: dict[str, Any] = {}
    for ep in importlib_metadata.entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


def load_subclass(group: str, name: str, base: type, kind: str, error: type[Exception]) -> Any:
    """The ``base`` subclass registered as ``name`` in ``group``; ``error`` naming the installed ones when there is
    none, or when what is registered is not such a class. ``kind`` names the extension in messages
    ("container manager")."""
    eps = by_name(group)
    if name not in eps:
        raise error(f"No {kind} named {name!r} is installed (installed: {', '.join(sorted(eps)) or 'none'}); a "
                    f"{kind.split()[-1]} registers itself under the '{group}' entry-point group")
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise error(f"{kind.capitalize()} {name!r} ({eps[name].value}) is not a {base.__name__} subclass")
    return cls
