"""Docker: base images per framework, model images, and the Docker container manager."""

from .manager import DockerContainerManager

__all__ = ["DockerContainerManager"]
