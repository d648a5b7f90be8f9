import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from clipper_deploy_core.testing.fixtures import conn  # noqa: F401  (a local cluster per test module)
