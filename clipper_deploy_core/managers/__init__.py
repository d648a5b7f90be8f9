"""Container managers: where replicas run (local processes, Docker, Kubernetes)."""
