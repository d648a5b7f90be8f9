"""Labels, names and container settings shared by the Docker manager (client side) and the container
runner (in the frontend)."""

from __future__ import annotations

import re
from typing import Any

CLUSTER = "ai.clipper-deploy.cluster"
ROLE = "ai.clipper-deploy.role"  # frontend | replica
MODEL = "ai.clipper-deploy.model"  # name:version
REPLICA = "ai.clipper-deploy.replica"
NETWORK = "ai.clipper-deploy.network"  # on the frontend: "host" or the bridge network's name


def container_name(*parts: str) -> str:
    """A valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*) from cluster, model and version parts."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", "-".join(parts))


def cluster_filter(cluster: str, role: str | None = None) -> dict[str, list[str]]:
    """The engine filter that selects this cluster's objects (of one ``role``, when given)."""
    labels = [f"{CLUSTER}={cluster}"] + ([f"{ROLE}={role}"] if role else [])
    return {"label": labels}


def with_extra(extra: dict[str, Any], environment: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    """``containers.run`` keyword arguments: the user's ``extra_container_kwargs``, with its environment and
    labels merged under ours (ours win), not replaced."""
    rest = dict(extra)
    return {"environment": {**rest.pop("environment", {}), **environment},
            "labels": {**rest.pop("labels", {}), **labels}, **rest}


def env_of(attrs: dict[str, Any]) -> dict[str, str]:
    """The ``Config.Env`` of an image's or a container's attributes, as a dict."""
    return dict(e.split("=", 1) for e in attrs["Config"].get("Env") or [])
