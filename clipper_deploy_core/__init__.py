"""clipper-deploy: turn a trained model and a predict function into a live prediction endpoint.

Public names load on first use (PEP 562), so importing the package, as every replica and helper
process does, costs almost nothing.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: every process of ours imports this first
if TYPE_CHECKING:
    from typing import Any

    from .clipper_connection import ClipperConnection
    from .deploy import deploy
    from .deployers.common import DeployResult
    from .exceptions import (
        AdminTokenError,
        BundleError,
        BundleIntegrityError,
        ClipperException,
        PredictContractError,
        UnconnectedException,
    )
    from .inputs import INPUT_TYPES
    from .managers.docker import DockerContainerManager
    from .managers.local import LocalContainerManager
    from .plugin import HOOK_API_VERSION, hookimpl

_WHERE = {
    "ClipperConnection": ".clipper_connection", "deploy": ".deploy", "DeployResult": ".deployers.common",
    "AdminTokenError": ".exceptions", "BundleError": ".exceptions", "BundleIntegrityError": ".exceptions",
    "ClipperException": ".exceptions", "PredictContractError": ".exceptions", "UnconnectedException": ".exceptions",
    "INPUT_TYPES": ".inputs",
    "DockerContainerManager": ".managers.docker", "LocalContainerManager": ".managers.local",
    "HOOK_API_VERSION": ".plugin", "hookimpl": ".plugin",
}
__all__ = ["HOOK_API_VERSION", "INPUT_TYPES", "AdminTokenError", "BundleError", "BundleIntegrityError",
           "ClipperConnection", "ClipperException", "DeployResult", "DockerContainerManager", "LocalContainerManager",
           "PredictContractError", "UnconnectedException", "deploy", "hookimpl"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
