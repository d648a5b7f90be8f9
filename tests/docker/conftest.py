"""Tests against a real Docker engine. They fail (not skip) when no engine answers, unless
CLIPPER_DEPLOY_NO_DOCKER names why Docker is unavailable; CI never sets it."""

import os
import shutil
from pathlib import Path

import pytest

from clipper_deploy_core.managers.docker.images import (
    ImageSpec,
    build_image,
    plugin_requirements,
    wheelhouse_from_sources,
)

ROOT = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TEST_LABEL = {"ai.clipper-deploy.test": "1"}


@pytest.fixture(scope="session")
def docker_client():
    if os.environ.get("CLIPPER_DEPLOY_NO_DOCKER"):
        pytest.skip(f"Docker marked unavailable: {os.environ['CLIPPER_DEPLOY_NO_DOCKER']}")
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # noqa: BLE001 - the reason goes into the failure
        pytest.fail(f"No Docker engine answers at DOCKER_HOST={os.environ.get('DOCKER_HOST')!r}: {e}. "
                    f"Start one with scripts/docker-engine.sh, or set CLIPPER_DEPLOY_NO_DOCKER=<reason>")
    return client


@pytest.fixture(scope="session")
def root_image(docker_client):
    """The local root image scripts/docker-engine.sh makes (no registry is reachable here)."""
    image = os.environ.get("CLIPPER_DEPLOY_ROOT_IMAGE", "local/debian:bookworm")
    docker_client.images.get(image)
    return image


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory):
    """Wheels of this checkout's core and PyTorch plugin, plus the CPU torch wheel of the machine's local
    find-links folder (the PyPI default would pull the CUDA build)."""
    dest = wheelhouse_from_sources([ROOT, ROOT / "plugins" / "clipper-deploy-pytorch"],
                                   tmp_path_factory.mktemp("wheels"))
    for links in os.environ.get("CLIPPER_DEPLOY_FIND_LINKS", "/opt/wheels").split(os.pathsep):
        for wheel in Path(links).glob("torch-*.whl") if Path(links).is_dir() else []:
            shutil.copy(wheel, dest)
    return dest


def _build(docker_client, root_image, wheelhouse, plugin):
    tag, reqs = plugin_requirements(plugin)
    events = []
    spec = ImageSpec(tag=tag, requirements=reqs, root_image=root_image, wheelhouse=wheelhouse,
                     ca_bundle=CA_BUNDLE if CA_BUNDLE.exists() else None, labels=TEST_LABEL)
    assert build_image(docker_client, spec, progress=events.append) == tag
    assert any("Step" in e.get("stream", "") for e in events)  # progress arrives step by step
    return spec, reqs


@pytest.fixture(scope="session")
def core_image(docker_client, root_image, wheelhouse):
    return _build(docker_client, root_image, wheelhouse, "python")


@pytest.fixture(scope="session")
def torch_image(docker_client, root_image, wheelhouse):
    return _build(docker_client, root_image, wheelhouse, "pytorch")
