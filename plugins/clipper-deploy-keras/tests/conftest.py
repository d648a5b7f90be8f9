import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from clipper_deploy_core import ClipperConnection, LocalContainerManager


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    c = ClipperConnection(LocalContainerManager("keras-test", 0, 0, 0, home=tmp_path_factory.mktemp("home")))
    c.start_clipper()
    yield c
    c.stop_all()
