"""Deploy MXNet models with clipper-deploy: ``deploy_mxnet_model`` and ``create_endpoint``.

``func(model, inputs)`` gets a Module that is rebound for each batch size it meets (so
``batch_size=-1`` is safe), or a Gluon ``SymbolBlock`` loaded from the exported network.
"""

from .deployers import create_endpoint, deploy_mxnet_model

__all__ = ["create_endpoint", "deploy_mxnet_model"]
