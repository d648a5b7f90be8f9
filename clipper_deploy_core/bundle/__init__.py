"""The model bundle: the unit that is shipped to and loaded by replicas.

Names are imported on first use, so that ``bundle.verify`` (what the cluster process needs) comes without the
loader and the writer (cloudpickle, the plugin registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manifest import FUNC_NAME, MANIFEST_NAME, MODEL_DIR, Manifest, PluginRef, bundle_digest
    from .reader import LoadedBundle, check_outputs, load_bundle
    from .verify import read_manifest, verify_bundle
    from .writer import save_bundle

_WHERE = {"FUNC_NAME": "manifest", "MANIFEST_NAME": "manifest", "MODEL_DIR": "manifest", "Manifest": "manifest",
          "PluginRef": "manifest", "bundle_digest": "manifest", "read_manifest": "verify", "verify_bundle": "verify",
          "LoadedBundle": "reader", "check_outputs": "reader", "load_bundle": "reader", "save_bundle": "writer"}

__all__ = ["FUNC_NAME", "MANIFEST_NAME", "MODEL_DIR", "LoadedBundle", "Manifest", "PluginRef", "bundle_digest",
           "check_outputs", "load_bundle", "read_manifest", "save_bundle", "verify_bundle"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # __import__ rather than importlib.import_module: only the former shows in ``python -X importtime``
    return getattr(__import__(f"{__name__}.{_WHERE[name]}", fromlist=[name]), name)
