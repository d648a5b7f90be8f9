"""Load a bundle exactly as a replica does: verify, check Python, pick the plugin, load, wrap."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from ..exceptions import BundleError, PredictContractError
from ..inputs import to_batch
from ..plugin import HOOK_API_VERSION, PluginRegistry, get_registry
from .manifest import FUNC_NAME, MODEL_DIR, Manifest, python_minor
from .verify import verify_bundle


class FrameworkVersionWarning(UserWarning):
    """The framework installed here differs from the one that saved the model."""


def check_python(manifest: Manifest) -> None:
    here = python_minor()
    if manifest.python_minor != here:
        raise BundleError(
            f"Bundle {manifest.name}:{manifest.version} was pickled by Python {manifest.python_minor} "
            f"({manifest.python_version}) but this is Python {here}. cloudpickle output only loads on the Python "
            f"minor version that wrote it: serve it with Python {manifest.python_minor}, or redeploy from Python {here}"
        )


def warm_framework_checks() -> None:
    """Import what :func:`_check_framework_versions` reads package metadata with (the email parser: 0.15 s without
    bytecode). A framework's replica template calls it, so that its replicas, whose bundles record the framework's
    version, inherit it; a closure's bundle records none, and its replicas never need it."""
    try:
        get_registry().read_metadata()  # the same parser reads the plugins' metadata
    except Exception as e:  # noqa: BLE001 - a warm-up: its replicas would import the parser themselves
        print(f"could not warm the framework version check: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def _check_framework_versions(manifest: Manifest) -> None:
    import importlib_metadata

    for dist, saved in manifest.framework_versions.items():
        try:
            here = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            raise BundleError(f"Bundle {manifest.name}:{manifest.version} needs {dist}=={saved}, which is not "
                              f"installed here") from None
        if here != saved:
            warnings.warn(f"Bundle {manifest.name}:{manifest.version} was saved with {dist} {saved}; "
                          f"loading it with {dist} {here}", FrameworkVersionWarning, stacklevel=3)


def check_outputs(outputs: Any, n: int) -> list[str]:
    """Enforce the batch contract: a list (or tuple / 1-D array) of exactly ``n`` strings."""
    if hasattr(outputs, "tolist") and not isinstance(outputs, str):
        outputs = outputs.tolist()
    if not isinstance(outputs, list | tuple):
        raise PredictContractError(
            f"The predict function must return a list with one string per input; it returned "
            f"{type(outputs).__name__} for a batch of {n}. Return e.g. [str(p) for p in predictions]"
        )
    if len(outputs) != n:
        raise PredictContractError(f"Expected model to return {n} outputs, found {len(outputs)} outputs. "
                                   f"The predict function must return exactly one string per input")
    bad = next((i for i, o in enumerate(outputs) if not isinstance(o, str)), None)
    if bad is not None:
        raise PredictContractError(
            f"The predict function must return strings; output {bad} is {type(outputs[bad]).__name__} "
            f"{outputs[bad]!r:.80}. Convert with str() or json.dumps()"
        )
    return list(outputs)


@dataclass
class LoadedBundle:
    """A loaded bundle: ``predict(wire_inputs)`` turns a list of validated inputs into one string each."""

    manifest: Manifest
    path: Path
    model: Any
    wrapped: Callable[[Any], Sequence[str]]

    def predict_batch(self, batch: Any, n: int) -> list[str]:
        return check_outputs(self.wrapped(batch), n)

    def predict(self, inputs: Sequence[Any]) -> list[str]:
        return self.predict_batch(to_batch(self.manifest.input_type, inputs), len(inputs))


def load_bundle(bundle_dir: Path | str, *, expected_digest: str | None = None,
                expected_model: tuple[str, str] | None = None, registry: PluginRegistry | None = None) -> LoadedBundle:
    """Verify and load a bundle. Nothing but the manifest decides which plugin loads it."""
    root = Path(bundle_dir).resolve()
    manifest = verify_bundle(root, expected_digest, expected_model)
    check_python(manifest)
    if manifest.plugin.api_version > HOOK_API_VERSION:
        raise BundleError(f"Bundle {manifest.name}:{manifest.version} uses hook API {manifest.plugin.api_version}; "
                          f"this clipper-deploy-core supports up to {HOOK_API_VERSION}. Upgrade clipper-deploy-core")
    registry = registry or get_registry()
    plugin = manifest.plugin.name
    registry.info(plugin)
    _check_framework_versions(manifest)
    model = registry.call(plugin, "load_model", model_dir=root / MODEL_DIR, manifest=manifest)
    with open(root / FUNC_NAME, "rb") as f:
        func = cloudpickle.load(f)
    wrapped = registry.call(plugin, "predict_wrapper", func=func, model=model, manifest=manifest)
    return LoadedBundle(manifest, root, model, wrapped)
