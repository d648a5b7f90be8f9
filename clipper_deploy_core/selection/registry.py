"""Selection policies found by entry points: the group ``clipper_deploy.selection_policies`` maps a policy's name
to its :class:`~.policy.SelectionPolicy` subclass. The built-ins are registered in this package's own metadata."""

from __future__ import annotations

from typing import Any

import importlib_metadata

from .policy import PolicyError, SelectionPolicy

GROUP = "clipper_deploy.selection_policies"


def _entry_points() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in importlib_metadata.entry_points(group=GROUP):
        found.setdefault(ep.name, ep)  # the first distribution that claims a name keeps it
    return found


def policy_names() -> list[str]:
    """Every installed policy's name."""
    return sorted(_entry_points())


def policy_class(name: str) -> type[SelectionPolicy]:
    """The policy registered as ``name``; :class:`PolicyError` naming the installed ones otherwise."""
    eps = _entry_points()
    if name not in eps:
        raise PolicyError(f"No selection policy named {name!r} is installed (installed: "
                          f"{', '.join(sorted(eps)) or 'none'}); a policy registers itself under the '{GROUP}' "
                          f"entry-point group")
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, SelectionPolicy)):
        raise PolicyError(f"Selection policy {name!r} ({eps[name].value}) is not a SelectionPolicy subclass")
    return cls
