"""Deploy TensorFlow models with clipper-deploy: ``deploy_tensorflow_model`` and ``create_endpoint``.

Accepts a TF1 ``tf.compat.v1.Session`` (the predict function gets the restored session), a path
to a SavedModel or checkpoint directory, or a TF2 ``tf.Module`` (the function gets the loaded object).
"""

from .deployers import create_endpoint, deploy_tensorflow_model

__all__ = ["create_endpoint", "deploy_tensorflow_model"]
