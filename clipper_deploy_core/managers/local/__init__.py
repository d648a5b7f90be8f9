"""The embedded default manager: the cluster and its replicas are plain local processes."""

from .manager import LocalContainerManager

__all__ = ["LocalContainerManager"]
