"""Base images built by a real engine, from a local root image and a local wheelhouse."""

import json
from pathlib import Path

import pytest

from clipper_deploy_core import ClipperException
from clipper_deploy_core.managers.docker.images import (
    ImageSpec,
    build_image,
    dockerfile,
    plugin_requirements,
    wheelhouse_from_sources,
)

ROOT = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    return wheelhouse_from_sources([ROOT], tmp_path_factory.mktemp("wheels"))


def test_core_base_image_builds_and_lists_the_closure_plugin(docker_client, root_image, wheelhouse):
    tag, reqs = plugin_requirements("python")
    events = []
    spec = ImageSpec(tag=tag, requirements=reqs, root_image=root_image, wheelhouse=wheelhouse,
                     ca_bundle=CA_BUNDLE if CA_BUNDLE.exists() else None, labels={"ai.clipper-deploy.test": "1"})
    assert build_image(docker_client, spec, progress=events.append) == tag
    assert any("Step" in e.get("stream", "") for e in events)  # progress arrives step by step
    out = docker_client.containers.run(tag, ["python", "-m", "clipper_deploy_core.cli", "plugins", "--json"],
                                       remove=True, network_mode="host")
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["python"]["version"] == reqs[0].split("==")[1]
    minor = docker_client.containers.run(tag, ["python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                         remove=True, network_mode="host").decode().strip()
    assert minor == spec.python_minor


def test_a_root_image_with_another_python_is_refused(docker_client, root_image, wheelhouse):
    spec = ImageSpec(tag="clipper-deploy-test/wrong-python:1", requirements=["clipper-deploy-core"],
                     root_image=root_image, wheelhouse=wheelhouse, python_minor="3.9",
                     ca_bundle=CA_BUNDLE if CA_BUNDLE.exists() else None)
    with pytest.raises(ClipperException) as e:
        build_image(docker_client, spec, progress=lambda event: None)
    assert "the root image has Python 3.11, but predict functions are pickled by Python 3.9" in str(e.value)
    assert "Build log (last lines)" in str(e.value)


def test_offline_builds_use_the_wheelhouse_only():
    text = dockerfile(ImageSpec(tag="t", requirements=["clipper-deploy-core==0.1.0"], root_image="local/x",
                                wheelhouse=Path("w"), offline=True, pip_conf=Path("pip.conf")))
    assert "FROM local/x" in text and "--find-links /build/wheels" in text and "--no-index" in text
    assert "PIP_CONFIG_FILE=/build/pip.conf" in text
