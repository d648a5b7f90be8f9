import pytest

from clipper_deploy_core import ClipperConnection, LocalContainerManager


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    c = ClipperConnection(LocalContainerManager("mxnet-test", 0, 0, 0, home=tmp_path_factory.mktemp("home")))
    c.start_clipper()
    yield c
    c.stop_all()
