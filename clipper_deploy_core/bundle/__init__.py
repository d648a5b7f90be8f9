"""The model bundle: the unit that is shipped to and loaded by replicas."""

from .manifest import FUNC_NAME, MANIFEST_NAME, MODEL_DIR, Manifest, PluginRef, bundle_digest
from .reader import LoadedBundle, check_outputs, load_bundle, read_manifest, verify_bundle
from .writer import save_bundle

__all__ = ["FUNC_NAME", "MANIFEST_NAME", "MODEL_DIR", "LoadedBundle", "Manifest", "PluginRef", "bundle_digest",
           "check_outputs", "load_bundle", "read_manifest", "save_bundle", "verify_bundle"]
