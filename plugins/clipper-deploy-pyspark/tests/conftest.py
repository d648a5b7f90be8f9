import pytest

from clipper_deploy_core import ClipperConnection, LocalContainerManager


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    c = ClipperConnection(LocalContainerManager("spark-test", 0, 0, 0, home=tmp_path_factory.mktemp("home")))
    c.start_clipper()
    yield c
    c.stop_all()


@pytest.fixture(scope="module")
def spark():
    """One SparkSession for the whole module: the JVM takes seconds to start."""
    from clipper_deploy_pyspark.plugin import spark_session

    return spark_session()
