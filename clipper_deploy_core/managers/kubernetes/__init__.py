"""Kubernetes: manifests of a cluster and its model versions, and the Kubernetes container manager."""

from .manager import KubernetesContainerManager

__all__ = ["KubernetesContainerManager"]
