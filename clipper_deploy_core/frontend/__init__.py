"""The query frontend and admin API: cluster state, per-model queues, Clipper's REST API, metrics.
Never unpickles a bundle; replicas do that."""
