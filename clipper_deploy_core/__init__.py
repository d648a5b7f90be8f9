"""clipper-deploy: turn a trained model and a predict function into a live prediction endpoint."""

from .clipper_connection import ClipperConnection
from .deploy import deploy
from .deployers.common import DeployResult
from .exceptions import BundleError, BundleIntegrityError, ClipperException, PredictContractError, UnconnectedException
from .inputs import INPUT_TYPES
from .managers.docker import DockerContainerManager
from .managers.local import LocalContainerManager
from .plugin import HOOK_API_VERSION, hookimpl

__all__ = ["HOOK_API_VERSION", "INPUT_TYPES", "BundleError", "BundleIntegrityError", "ClipperConnection",
           "ClipperException", "DeployResult", "DockerContainerManager", "LocalContainerManager",
           "PredictContractError", "UnconnectedException", "deploy", "hookimpl"]
