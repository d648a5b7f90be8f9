"""Selection policies found by entry points: the group ``clipper_deploy.selection_policies`` maps a policy's name
to its :class:`~.policy.SelectionPolicy` subclass. The built-ins are registered in this package's own metadata."""

from __future__ import annotations

from ..entry_points import by_name, load_subclass
from .policy import PolicyError, SelectionPolicy

GROUP = "clipper_deploy.selection_policies"


def policy_names() -> list[str]:
    """Every installed policy's name."""
    return sorted(by_name(GROUP))


def policy_class(name: str) -> type[SelectionPolicy]:
    """The policy registered as ``name``; :class:`PolicyError` naming the installed ones otherwise."""
    cls: type[SelectionPolicy] = load_subclass(GROUP, name, SelectionPolicy, "selection policy", PolicyError)
    return cls
