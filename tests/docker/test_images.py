"""Base images built by a real engine, from a local root image and a local wheelhouse."""

import json
from pathlib import Path

import pytest

from clipper_deploy_core import ClipperException
from clipper_deploy_core.managers.docker.images import ImageSpec, build_image, dockerfile

from .conftest import CA_BUNDLE


def test_core_base_image_builds_and_lists_the_closure_plugin(docker_client, core_image):
    spec, reqs = core_image
    tag = spec.tag
    out = docker_client.containers.run(tag, ["python", "-m", "clipper_deploy_core.cli", "plugins", "--json"],
                                       remove=True, network_mode="host")
    plugins = {p["name"]: p for p in json.loads(out)}
    assert reqs[0].startswith("clipper-deploy-core[docker,kubernetes,dashboard]==")  # it runs the frontends
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


def test_a_model_image_serves_as_a_replica_of_a_local_cluster(docker_client, core_image, tmp_path):
    """build_model's image: FROM the base image, pkgs_to_install at build time, the bundle with its digest."""
    import time

    from clipper_deploy_core.bundle import save_bundle
    from clipper_deploy_core.managers.docker.images import build_model_image, model_image_tag
    from clipper_deploy_core.testing import local_cluster, query

    def tabulated(xs):
        import tabulate  # installed in the image only, by pkgs_to_install

        return [tabulate.tabulate([[len(x)]], tablefmt="plain") for x in xs]

    bundle = save_bundle(tmp_path / "b", name="tab", version=1, input_type="doubles", func=tabulated,
                         pkgs_to_install=["tabulate==0.9.0"])
    tag = model_image_tag("docker-test", "tab", "1")
    assert tag == "docker-test-tab:1"
    build_model_image(docker_client, bundle, core_image[0].tag, tag, ["tabulate==0.9.0"], progress=lambda e: None)
    with local_cluster("docker-test", tmp_path / "home") as conn:
        conn.register_application("tab", "doubles", "none-yet", 5_000_000)
        conn.register_model("tab", 1, "doubles", image=tag)
        conn.link_model_to_app("tab", "tab")
        rpc_port = conn.cm.info["rpc"].rsplit(":", 1)[1]
        container = docker_client.containers.run(
            tag, detach=True, network_mode="host", labels={"ai.clipper-deploy.test": "1"},
            environment={"CLIPPER_IP": "127.0.0.1", "CLIPPER_PORT": rpc_port,
                         "CLIPPER_CLUSTER_SECRET": (conn.cm.dir / "secret").read_text()})
        try:
            deadline = time.monotonic() + 120
            while True:
                status, reply = query(conn, "tab", {"input": [1.0, 2.0, 3.0]})
                if not reply["default"] or time.monotonic() > deadline:
                    break
                container.reload()
                assert container.status != "exited", container.logs().decode()[-2000:]
            assert status == 200 and reply["output"] == 3, container.logs().decode()[-2000:]
        finally:
            container.remove(force=True)


def test_a_failed_model_build_carries_the_log_tail(docker_client, core_image, tmp_path):
    from clipper_deploy_core.bundle import save_bundle
    from clipper_deploy_core.managers.docker.images import build_model_image

    bundle = save_bundle(tmp_path / "b", name="bad", version=1, input_type="doubles", func=len)
    with pytest.raises(ClipperException, match=r"Building image docker-test-bad:1 failed(.|\n)*no-such-package"):
        build_model_image(docker_client, bundle, core_image[0].tag, "docker-test-bad:1",
                          ["no-such-package-clipper-xyz==1.0"], progress=lambda e: None)


def test_a_long_silent_build_step_shows_it_is_alive(docker_client, root_image, monkeypatch):
    import io
    import tarfile

    from clipper_deploy_core.managers.docker import images

    monkeypatch.setattr(images, "TICK_S", 0.3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"FROM {root_image}\nRUN sleep 2\n".encode()  # the slow step under test
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    events = []
    images._run_build(docker_client, buf, "clipper-deploy-test/slow:1", "host", events.append)
    ticks = [e["stream"] for e in events if e.get("tick")]
    assert ticks and all("still on step 2/2" in t for t in ticks)
    docker_client.images.remove("clipper-deploy-test/slow:1", force=True)


def test_the_images_build_command_builds_the_core_image_from_a_clone_with_no_extra_flags(core_image, root_image):
    """This checkout's core is installed editable, at a version no index has: the command builds its wheel."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "clipper_deploy_core.cli", "images", "build", "--framework", "python",
           "--from", root_image]
    if CA_BUNDLE.exists():
        cmd += ["--ca-bundle", str(CA_BUNDLE)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Step 1/" in out.stdout and f"built {core_image[0].tag}" in out.stdout


def test_an_image_that_is_neither_here_nor_pullable_is_named(docker_client, core_image):
    from clipper_deploy_core.managers.docker.images import ensure_image

    assert ensure_image(docker_client, core_image[0].tag, "the test").tags  # present: returned as is
    with pytest.raises(ClipperException, match=r"Image localhost:1/clipper-deploy-none:1 for model m:1 is not on the "
                                               r"engine and cannot be pulled"):
        ensure_image(docker_client, "localhost:1/clipper-deploy-none:1", "model m:1")
