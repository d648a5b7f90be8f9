"""A container manager from outside the core: one class and one entry point, nothing in the core touched.

It runs clusters as local processes, like the built-in local manager, but always on free ports and under a home
of its own (``TOY_MANAGER_HOME``), so several can run side by side.
"""

from __future__ import annotations

import os
from typing import Any

from clipper_deploy_core.managers.local import LocalContainerManager


class ToyContainerManager(LocalContainerManager):
    def __init__(self, cluster_name: str = "default-cluster", **kwargs: Any) -> None:
        for port in ("clipper_query_port", "clipper_management_port", "clipper_rpc_port"):
            kwargs[port] = 0  # free ports, always
        kwargs.setdefault("home", os.environ.get("TOY_MANAGER_HOME"))
        super().__init__(cluster_name, **kwargs)
