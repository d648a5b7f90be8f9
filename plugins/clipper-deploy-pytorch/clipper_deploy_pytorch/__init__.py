"""Deploy PyTorch models with clipper-deploy: ``deploy_pytorch_model`` and ``create_endpoint``.

The predict function is called as ``func(model, inputs)``; the model is in eval mode, on CPU
unless the deploy asked for ``device="cuda"`` and the replica has a GPU.
"""

from .deployers import create_endpoint, deploy_pytorch_model

__all__ = ["create_endpoint", "deploy_pytorch_model"]
