"""Deploy Keras models with clipper-deploy: ``deploy_keras_model`` and ``create_endpoint``.

``func(model, inputs)`` gets the loaded ``keras.Model``, on the backend it was saved under unless
the deploy passed ``backend=`` (or the replica sets ``CLIPPER_DEPLOY_KERAS_BACKEND``).
"""

from .deployers import create_endpoint, deploy_keras_model

__all__ = ["create_endpoint", "deploy_keras_model"]
