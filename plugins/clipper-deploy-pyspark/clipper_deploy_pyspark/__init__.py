"""Deploy PySpark models with clipper-deploy: ``deploy_pyspark_model`` and ``create_endpoint``.

The predict function is called as ``func(spark, model, inputs)`` with the replica's long-lived
local SparkSession and the model loaded once with its own ``load``.
"""

from .deployers import create_endpoint, deploy_pyspark_model

__all__ = ["create_endpoint", "deploy_pyspark_model"]
