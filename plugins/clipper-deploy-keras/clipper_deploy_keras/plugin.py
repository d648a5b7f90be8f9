"""The clipper-deploy hooks for Keras 3. keras is imported inside the hooks only, and only after the
backend has been chosen, since Keras fixes its backend at import.

The model is stored in Keras's own format: ``model.keras`` (or the user's legacy ``model.h5``).
The backend it was saved under is recorded; the replica loads it under that backend unless the
deploy passed ``backend=`` or the replica's environment sets ``CLIPPER_DEPLOY_KERAS_BACKEND``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import importlib_metadata

from clipper_deploy_core import ClipperException, hookimpl

BACKENDS = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "torch": ("torch",), "jax": ("jax",)}
SUFFIXES = (".keras", ".h5")


@hookimpl
def model_types() -> list[str]:
    return ["keras.Model"]


def _versions(backend: str) -> dict[str, str]:
    out = {"keras": importlib_metadata.version("keras")}
    for dist in BACKENDS.get(backend, ()):
        try:
            out[dist] = importlib_metadata.version(dist)
            break
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


@hookimpl
def save_model(model: Any, model_dir: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    serve_backend = options.get("backend")
    if set(options) - {"backend"} or (serve_backend is not None and serve_backend not in BACKENDS):
        raise ClipperException(f"clipper-deploy-keras takes one option, backend= one of {sorted(BACKENDS)}; "
                               f"got {dict(options)}")
    if isinstance(model, str | os.PathLike):
        src = Path(model)
        if src.suffix not in SUFFIXES:
            raise ClipperException(f"{src} is not a Keras model file: expected a .keras or .h5 file")
        if not src.is_file():
            raise ClipperException(f"Keras model file {src} does not exist")
        shutil.copyfile(src, model_dir / f"model{src.suffix}")
        # Legacy .h5 files come from tf.keras; a .keras file is taken to come from this process's backend.
        import keras

        saved_backend = "tensorflow" if src.suffix == ".h5" else keras.backend.backend()
        filename = f"model{src.suffix}"
    else:
        import keras

        if not isinstance(model, keras.Model):
            raise ClipperException(f"clipper-deploy-keras takes a keras.Model or a .keras/.h5 path, "
                                   f"not {type(model).__name__}")
        filename = "model.keras"
        model.save(model_dir / filename)
        saved_backend = keras.backend.backend()
    return {"framework_versions": _versions(serve_backend or saved_backend),
            "metadata": {"file": filename, "saved_backend": saved_backend, "serve_backend": serve_backend}}


def _choose_backend(meta: Mapping[str, Any]) -> str:
    backend = os.environ.get("CLIPPER_DEPLOY_KERAS_BACKEND") or meta.get("serve_backend") or meta["saved_backend"]
    if backend not in BACKENDS:
        raise ClipperException(f"Unknown Keras backend {backend!r}: use one of {sorted(BACKENDS)}")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise ClipperException(f"Keras was already imported with the {current} backend in this process; "
                                   f"the model needs {backend}")
    os.environ["KERAS_BACKEND"] = backend
    return backend


@hookimpl
def load_model(model_dir: Path, manifest: Any) -> Any:
    meta = manifest.model_metadata
    _choose_backend(meta)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras.saving.load_model(model_dir / meta["file"], compile=False)


@hookimpl
def base_image(python_version: str) -> str:
    return f"clipper-deploy/keras:py{python_version}-keras{importlib_metadata.version('keras')}"


@hookimpl
def predict_wrapper(func: Callable[..., Any], model: Any, manifest: Any) -> Callable[[Any], Any]:
    return lambda inputs: func(model, inputs)
