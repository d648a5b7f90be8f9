"""The built-in plugin for plain Python closures: ``func(inputs)``, with no framework model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..exceptions import ClipperException
from ..plugin.hookspecs import PredictFn, hookimpl

IMAGE_REPOSITORY = "clipper-deploy/python-closure"


@hookimpl
def model_types() -> list[str]:
    return []  # claims model=None only; see plugin.dispatch


@hookimpl
def save_model(model: Any, model_dir: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    if model is not None:
        raise ClipperException(
            f"The python closure deployer takes no model object (got {type(model).__name__}); capture the model "
            f"in the function's closure instead"
        )
    if options:
        raise ClipperException(f"The python closure deployer takes no framework options, got {sorted(options)}")
    return {}


@hookimpl
def load_model(model_dir: Path, manifest: Any) -> None:
    return None


@hookimpl
def base_image(python_version: str) -> str:
    return f"{IMAGE_REPOSITORY}:py{python_version}"


@hookimpl
def predict_wrapper(func: Callable[..., Any], model: Any, manifest: Any) -> PredictFn:
    return func
