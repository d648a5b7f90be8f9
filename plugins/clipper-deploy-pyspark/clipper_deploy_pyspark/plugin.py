"""The clipper-deploy hooks for PySpark. pyspark is imported inside the hooks only.

Models are written with their own ``save``: ``model.save(path)`` for ``pyspark.ml`` models
(including ``PipelineModel``) and ``model.save(sc, path)`` for ``pyspark.mllib`` ones. The concrete
class is recorded, so the replica calls that class's ``load`` without guessing. The replica holds one
long-lived local SparkSession (UI off, bound to 127.0.0.1) and passes it to every call.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import importlib_metadata

from clipper_deploy_core import ClipperException, hookimpl

ML, MLLIB = "ml", "mllib"
MLLIB_MODELS = [
    "pyspark.mllib.classification.LogisticRegressionModel", "pyspark.mllib.classification.SVMModel",
    "pyspark.mllib.classification.NaiveBayesModel", "pyspark.mllib.regression.LinearRegressionModel",
    "pyspark.mllib.regression.LassoModel", "pyspark.mllib.regression.RidgeRegressionModel",
    "pyspark.mllib.regression.IsotonicRegressionModel", "pyspark.mllib.tree.DecisionTreeModel",
    "pyspark.mllib.tree.RandomForestModel", "pyspark.mllib.tree.GradientBoostedTreesModel",
    "pyspark.mllib.clustering.KMeansModel", "pyspark.mllib.clustering.GaussianMixtureModel",
]


@hookimpl
def model_types() -> list[str]:
    return ["pyspark.ml.base.Model", *MLLIB_MODELS]


def _class_name(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


@hookimpl
def save_model(model: Any, model_dir: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    from pyspark.ml.base import Model

    if set(options) - {"sc"}:
        raise ClipperException(f"clipper-deploy-pyspark takes one option, sc=; got {sorted(options)}")
    path = str(model_dir / "pyspark_model_data")
    cls = _class_name(model)
    if isinstance(model, Model):
        model.save(path)
        kind = ML
    elif cls in MLLIB_MODELS or (type(model).__module__.startswith("pyspark.mllib") and hasattr(model, "save")):
        sc = options.get("sc")
        if sc is None:
            raise ClipperException(f"Saving the MLlib model {cls} needs the SparkContext: pass sc=")
        model.save(sc, path)
        kind = MLLIB
    else:
        raise ClipperException(f"clipper-deploy-pyspark saves pyspark.ml models and MLlib models, not {cls}")
    return {"framework_versions": {"pyspark": importlib_metadata.version("pyspark")},
            "metadata": {"model_class": cls, "kind": kind}}


def spark_session() -> Any:
    """The replica's one local SparkSession (an existing one in this process is reused)."""
    # Spark otherwise binds to the host's first non-loopback interface; a replica serves locally only.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[*]").appName("clipper-deploy-replica")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@hookimpl
def load_model(model_dir: Path, manifest: Any) -> Any:
    meta = manifest.model_metadata
    module_name, _, class_name = meta["model_class"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    spark = spark_session()
    path = str(model_dir / "pyspark_model_data")
    model = cls.load(path) if meta["kind"] == ML else cls.load(spark.sparkContext, path)
    return spark, model


@hookimpl
def base_image(python_version: str) -> str:
    return f"clipper-deploy/pyspark:py{python_version}-spark{importlib_metadata.version('pyspark')}"


@hookimpl
def predict_wrapper(func: Callable[..., Any], model: Any, manifest: Any) -> Callable[[Any], Any]:
    spark, loaded = model
    return lambda inputs: func(spark, loaded, inputs)
