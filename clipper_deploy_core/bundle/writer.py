"""Write a model bundle: the pickled function, the model in its native format, and the manifest."""

from __future__ import annotations

import datetime
import json
import platform
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from ..exceptions import BundleError, ClipperException
from ..naming import ModelVersionId, validate_module_names
from ..plugin import HOOK_API_VERSION, PluginRegistry, get_registry
from .manifest import FUNC_NAME, MANIFEST_NAME, MODEL_DIR, WARMUP_NAME, Manifest, PluginRef
from .pickling import dumps_by_value
from .verify import hash_tree, validate_pkgs


def save_bundle(
    bundle_dir: Path | str | None,
    *,
    name: str,
    version: str | int,
    input_type: str,
    func: Callable[..., Any],
    model: Any = None,
    plugin: str = "python",
    options: Mapping[str, Any] | None = None,
    pkgs_to_install: Sequence[str] | None = None,
    registry: PluginRegistry | None = None,
    sample_inputs: Sequence[Any] | None = None,
) -> Path:
    """Write a bundle for ``func`` (and ``model``, saved by ``plugin``) and return its directory.

    ``bundle_dir`` must be absent or empty; ``None`` makes a temporary directory. ``sample_inputs`` are kept
    in the bundle: each replica answers them through the model before it takes queries.
    """
    return write_bundle(bundle_dir, ModelVersionId.checked(name, version, input_type), func, model=model,
                        plugin=plugin, options=options, pkgs_to_install=pkgs_to_install, registry=registry,
                        sample_inputs=sample_inputs)


def write_bundle(
    bundle_dir: Path | str | None,
    model_id: ModelVersionId,
    func: Callable[..., Any],
    *,
    model: Any = None,
    plugin: str = "python",
    options: Mapping[str, Any] | None = None,
    pkgs_to_install: Sequence[str] | None = None,
    registry: PluginRegistry | None = None,
    sample_inputs: Sequence[Any] | None = None,
) -> Path:
    """:func:`save_bundle` for an identity already checked where it entered (``deploy()`` checks it once)."""
    registry = registry or get_registry()
    name, version, input_type = model_id.name, model_id.version, model_id.input_type
    if not callable(func):
        raise ClipperException(f"func must be callable, got {type(func).__name__}")
    pkgs = validate_pkgs(pkgs_to_install)
    info = registry.info(plugin)
    root = Path(bundle_dir) if bundle_dir is not None else Path(tempfile.mkdtemp(prefix=f"clipper-bundle-{name}-"))
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise BundleError(f"bundle directory {root} is not empty")
    try:
        try:
            (root / FUNC_NAME).write_bytes(dumps_by_value(func))
        except Exception as e:
            raise ClipperException(
                f"The predict function {getattr(func, '__qualname__', func)!r} cannot be pickled with cloudpickle: "
                f"{type(e).__name__}: {e}. Everything it captures must be picklable; save framework models "
                f"through their plugin (pass them as model=) instead of capturing them"
            ) from e
        if sample_inputs is not None:
            from .check import to_wire

            (root / WARMUP_NAME).write_text(json.dumps(to_wire(input_type, sample_inputs)))
        model_dir = root / MODEL_DIR
        model_dir.mkdir()
        saved = registry.call(plugin, "save_model", model=model, model_dir=model_dir, options=dict(options or {})) or {}
        manifest = Manifest(
            name=name, version=version, input_type=input_type,
            plugin=PluginRef(info.name, info.distribution, info.version, HOOK_API_VERSION),
            python_version=platform.python_version(), cloudpickle_version=cloudpickle.__version__,
            framework_versions=dict(saved.get("framework_versions", {})),
            model_metadata=dict(saved.get("metadata", {})),
            preload=list(info.preload) or _legacy_preload(info.name, saved),
            pkgs_to_install=pkgs, files=hash_tree(root),
            created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )
        (root / MANIFEST_NAME).write_text(manifest.to_json())
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root


def _legacy_preload(plugin: str, saved: Mapping[str, Any]) -> list[str]:
    """``save_model``'s ``"preload"`` key, from before the ``preload_modules`` hook: still honoured, with a
    warning, so a plugin written then keeps its warm replica starts."""
    if "preload" not in saved:
        return []
    warnings.warn(f"plugin {plugin!r}: save_model returned 'preload'; declare those modules with the "
                  f"preload_modules hook instead", DeprecationWarning, stacklevel=3)
    return validate_module_names(saved["preload"], f"plugin {plugin!r}: save_model's preload")
