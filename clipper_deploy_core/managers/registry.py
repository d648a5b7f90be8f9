"""Container managers found by entry points, like framework plugins: the group ``clipper_deploy.container_managers``
maps a name to a ``ContainerManager`` subclass. The built-ins (local, docker, kubernetes) are registered through
the same group, in this package's own metadata, so a third-party manager is installed exactly like them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..entry_points import by_name, load_subclass
from ..exceptions import ClipperException

GROUP = "clipper_deploy.container_managers"


@dataclass(frozen=True)
class ManagerInfo:
    """One installed container manager."""

    name: str
    target: str  # module:Class
    distribution: str
    version: str

    @property
    def builtin(self) -> bool:
        """Whether clipper-deploy-core itself registers this manager."""
        return self.distribution == "clipper-deploy-core"

    def as_dict(self) -> dict[str, Any]:
        """This manager as ``clipper-deploy managers --json`` prints it."""
        return {"name": self.name, "class": self.target, "distribution": self.distribution, "version": self.version,
                "builtin": self.builtin}


def managers() -> list[ManagerInfo]:
    """Every installed manager, built-ins first, then by name."""
    out = []
    for name, ep in by_name(GROUP).items():
        dist = ep.dist.name if ep.dist is not None else "?"
        out.append(ManagerInfo(name, ep.value, dist, ep.dist.version if ep.dist is not None else "?"))
    return sorted(out, key=lambda m: (not m.builtin, m.name))


def load_manager(name: str) -> type[Any]:
    """The manager class registered as ``name``; ``ClipperException`` naming the installed ones otherwise."""
    from .base import ContainerManager

    cls: type[ContainerManager] = load_subclass(GROUP, name, ContainerManager, "container manager", ClipperException)
    return cls
