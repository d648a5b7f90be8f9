"""The toy plugin: what a third-party framework plugin looks like, in full."""

from __future__ import annotations

from clipper_deploy_core import hookimpl

__version__ = "0.3.0"


@hookimpl
def model_types():
    return ["toy_models.Polynomial"]


@hookimpl
def preload_modules():
    return ["toy_models"]  # imports nothing heavy and starts nothing: a template may import it


@hookimpl
def save_model(model, model_dir, options):
    model.save(model_dir / "polynomial.json")
    return {"framework_versions": {"clipper-deploy-toy": __version__},
            "metadata": {"degree": len(model.coefficients) - 1}}


@hookimpl
def load_model(model_dir, manifest):
    from toy_models import Polynomial

    return Polynomial.load(model_dir / "polynomial.json")


@hookimpl
def base_image(python_version):
    return f"clipper-deploy/toy:py{python_version}"


@hookimpl
def predict_wrapper(func, model, manifest):
    return lambda inputs: func(model, inputs)
