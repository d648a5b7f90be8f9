"""Labels and names shared by the Docker manager (client side) and the container runner (in the frontend)."""

from __future__ import annotations

import re

CLUSTER = "ai.clipper-deploy.cluster"
ROLE = "ai.clipper-deploy.role"  # frontend | replica
MODEL = "ai.clipper-deploy.model"  # name:version
REPLICA = "ai.clipper-deploy.replica"


def container_name(*parts: str) -> str:
    """A valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*) from cluster, model and version parts."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", "-".join(parts))


def cluster_filter(cluster: str, role: str | None = None) -> dict[str, list[str]]:
    labels = [f"{CLUSTER}={cluster}"] + ([f"{ROLE}={role}"] if role else [])
    return {"label": labels}
