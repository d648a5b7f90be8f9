"""The server-side program: the cluster process (``python -m clipper_deploy_core.cluster``), which assembles the
frontend library (query and admin APIs, dispatch, state), supervises replicas, and runs them through a runner:
local processes, Docker containers, or (on Kubernetes) none, with the state shared through a ConfigMap.

Nothing in ``managers/`` (the user's side) imports this package; managers start it as a process.
"""
