"""Tests against a real Docker engine. They fail (not skip) when no engine answers, unless
CLIPPER_DEPLOY_NO_DOCKER names why Docker is unavailable; CI never sets it."""

import os

import pytest


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
                    f"Start one with .ci/docker-engine.sh, or set CLIPPER_DEPLOY_NO_DOCKER=<reason>")
    return client


@pytest.fixture(scope="session")
def root_image(docker_client):
    """The local root image .ci/docker-engine.sh makes (no registry is reachable here)."""
    image = os.environ.get("CLIPPER_DEPLOY_ROOT_IMAGE", "local/debian:bookworm")
    docker_client.images.get(image)
    return image
