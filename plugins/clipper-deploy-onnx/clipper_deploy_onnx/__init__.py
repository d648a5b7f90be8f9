"""Deploy ONNX models with clipper-deploy, served by onnxruntime.

``func(session, inputs)`` receives an ``onnxruntime.InferenceSession``. Clipper's
``deploy_pytorch_model(..., inputs, func, pytorch_model, ...)`` exports a torch model to ONNX first.
"""

from .deployers import create_pytorch_endpoint, deploy_onnx_model, deploy_pytorch_model

__all__ = ["create_pytorch_endpoint", "deploy_onnx_model", "deploy_pytorch_model"]
