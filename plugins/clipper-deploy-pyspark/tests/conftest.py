import pytest

from clipper_deploy_core.testing.fixtures import conn  # noqa: F401  (a local cluster per test module)


@pytest.fixture(scope="module")
def spark():
    """One SparkSession for the whole module: the JVM takes seconds to start."""
    from clipper_deploy_pyspark.plugin import spark_session

    return spark_session()
