"""pytest fixtures for plugin test suites. Import them into a ``conftest.py``::

    from clipper_deploy_core.testing.fixtures import conn  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .cluster import local_cluster


@pytest.fixture(scope="module")
def conn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local cluster shared by the tests of one module (replicas take seconds to start)."""
    name = request.module.__name__.rpartition(".")[2].replace("_", "-").strip("-")[:40] or "plugin-test"
    with local_cluster(name, tmp_path_factory.mktemp("clipper-home")) as c:
        yield c
