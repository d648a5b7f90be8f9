"""Docker: base images per framework (and, later, the Docker container manager)."""
