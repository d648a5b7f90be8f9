from clipper_deploy_core.testing.fixtures import conn  # noqa: F401  (a local cluster per test module)
