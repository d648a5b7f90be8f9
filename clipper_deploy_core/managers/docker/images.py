"""Build the base image for core or a plugin: Python, clipper-deploy-core, the plugin and its framework.

Works offline: the root image may be a local one (no registry needed), Python's own packages come
from a local wheelhouse (``pip --find-links``), and a CA bundle or ``pip.conf`` given by the user
is copied into the build. The Python minor in the image must be the one that pickles the predict
functions, so the build checks it and fails with a message otherwise. Uses the docker SDK only.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...bundle.manifest import python_minor
from ...exceptions import ClipperException

LOG_TAIL_LINES = 40
TICK_S = float(os.environ.get("CLIPPER_DEPLOY_BUILD_TICK", "10"))


def default_root_image() -> str:
    """An official slim Python image of this Python's minor version."""
    return f"python:{python_minor()}-slim"


@dataclass
class ImageSpec:
    tag: str
    requirements: list[str]  # pip requirement specifiers, resolved against the wheelhouse first
    root_image: str = field(default_factory=default_root_image)
    wheelhouse: Path | None = None
    ca_bundle: Path | None = None
    pip_conf: Path | None = None
    offline: bool = False  # pip may use the wheelhouse only
    python_minor: str = field(default_factory=python_minor)
    labels: dict[str, str] = field(default_factory=dict)


def dockerfile(spec: ImageSpec) -> str:
    """The Dockerfile of a base image (core or a plugin) described by ``spec``."""
    pip_flags = ["--no-cache-dir", "--disable-pip-version-check"]
    if spec.wheelhouse is not None:
        pip_flags += ["--find-links", "/build/wheels"]
    if spec.offline:
        pip_flags.append("--no-index")
    env = []
    if spec.ca_bundle is not None:
        env.append("ENV PIP_CERT=/build/ca.crt SSL_CERT_FILE=/build/ca.crt REQUESTS_CA_BUNDLE=/build/ca.crt")
    if spec.pip_conf is not None:
        env.append("ENV PIP_CONFIG_FILE=/build/pip.conf")
    reqs = " ".join(json.dumps(r) for r in spec.requirements)
    labels = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(spec.labels.items()))
    return "\n".join([
        f"FROM {spec.root_image}",
        "COPY build /build",
        *env,
        # A root image without Python (a bare Debian) gets the distribution's python3 and venv.
        "RUN command -v python3 >/dev/null || (apt-get update && apt-get install -y --no-install-recommends "
        "python3 python3-venv ca-certificates && rm -rf /var/lib/apt/lists/*)",
        f"RUN python3 -c 'import sys; v = \"%d.%d\" % sys.version_info[:2]; "
        f"assert v == \"{spec.python_minor}\", \"the root image has Python \" + v + \", but predict functions are "
        f"pickled by Python {spec.python_minor}: use a root image with Python {spec.python_minor}\"'",
        "RUN python3 -m venv /opt/clipper-deploy",
        f"RUN /opt/clipper-deploy/bin/pip install {' '.join(pip_flags)} {reqs}",
        "ENV PATH=/opt/clipper-deploy/bin:$PATH PYTHONUNBUFFERED=1",
        *([f"LABEL {labels}"] if labels else []),
        'CMD ["python", "-m", "clipper_deploy_core.replica"]',
        "",
    ])


def build_context(spec: ImageSpec) -> io.BytesIO:
    """The build context (a tar stream) of a base image: Dockerfile, wheelhouse, CA bundle, pip.conf."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = dockerfile(spec).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        build_dir = tarfile.TarInfo("build")
        build_dir.type = tarfile.DIRTYPE
        tar.addfile(build_dir)
        if spec.wheelhouse is not None:
            tar.add(str(spec.wheelhouse), arcname="build/wheels")
        if spec.ca_bundle is not None:
            tar.add(str(spec.ca_bundle), arcname="build/ca.crt")
        if spec.pip_conf is not None:
            tar.add(str(spec.pip_conf), arcname="build/pip.conf")
    buf.seek(0)
    return buf


def _printer(stream: Any) -> Callable[[dict[str, Any]], None]:
    def show(event: dict[str, Any]) -> None:
        text = event.get("stream")
        if text:
            stream.write(text)
        elif event.get("status"):
            stream.write(f"{event['status']} {event.get('progress', '')}\n")
        stream.flush()
    return show


def build_image(client: Any, spec: ImageSpec, network_mode: str | None = "host",
                progress: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Build ``spec`` with the docker SDK, streaming each step to ``progress`` (stdout by default).

    Raises ``ClipperException`` with the tail of the build log when the build fails.
    """
    return _run_build(client, build_context(spec), spec.tag, network_mode, progress)


def _run_build(client: Any, context: io.BytesIO, tag: str, network_mode: str | None,
               progress: Callable[[dict[str, Any]], None] | None) -> str:
    show = progress or _printer(sys.stdout)
    log: list[str] = []
    step = ["(starting)"]
    done = threading.Event()
    last = [time.monotonic()]

    def tick() -> None:
        # A long silent step (a big pip install) still shows it is alive, every TICK_S seconds.
        started = time.monotonic()
        while not done.wait(TICK_S):
            if time.monotonic() - last[0] >= TICK_S:
                show({"stream": f" ... still on {step[0]} ({time.monotonic() - started:.0f}s into the build)\n",
                      "tick": True})

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        for event in client.api.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                                      decode=True, network_mode=network_mode):
            last[0] = time.monotonic()
            show(event)
            if "stream" in event:
                log.extend(event["stream"].splitlines())
                if event["stream"].startswith("Step "):
                    step[0] = event["stream"].split(" :", 1)[0].strip().lower()
            if "error" in event or "errorDetail" in event:
                detail = event.get("error") or event["errorDetail"].get("message", "")
                tail = "\n".join(log[-LOG_TAIL_LINES:])
                raise ClipperException(f"Building image {tag} failed: {detail}\nBuild log (last lines):\n{tail}")
    finally:
        done.set()
    return tag


def plugin_requirements(plugin: str) -> tuple[str, list[str]]:
    """The image tag and pinned requirements for core (``plugin="python"``) or an installed plugin:
    the distributions at their installed versions, and the plugin's ``framework`` extra likewise."""
    import importlib_metadata
    from packaging.requirements import Requirement

    from ...plugin import get_registry

    registry = get_registry()
    info = registry.info(plugin)
    tag = str(registry.call(plugin, "base_image", python_version=python_minor()))
    core = importlib_metadata.version("clipper-deploy-core")
    # The core image also runs the frontend: on Docker (it starts replica containers) and on Kubernetes, with the
    # dashboard's charting library.
    reqs = [f"clipper-deploy-core{'[docker,kubernetes,dashboard]' if plugin == 'python' else ''}=={core}"]
    if info.distribution != "clipper-deploy-core":
        reqs.append(f"{info.distribution}=={info.version}")
        for raw in importlib_metadata.requires(info.distribution) or []:
            req = Requirement(raw)
            if req.marker is not None and req.marker.evaluate({"extra": "framework"}) and \
                    not req.marker.evaluate({"extra": ""}):
                try:
                    reqs.append(f"{req.name}=={importlib_metadata.version(req.name)}")
                except importlib_metadata.PackageNotFoundError:
                    reqs.append(str(Requirement(raw.split(";")[0])))
    return tag, reqs


def local_source(distribution: str) -> Path | None:
    """The source tree of ``distribution`` when it was installed from one (editable, or ``pip install <dir>``), so the
    package index may not have it at this version (PEP 610's ``direct_url.json``); else ``None``."""
    from urllib.parse import unquote, urlsplit

    import importlib_metadata

    try:
        raw = importlib_metadata.distribution(distribution).read_text("direct_url.json")
    except importlib_metadata.PackageNotFoundError:
        return None
    if not raw:
        return None
    info = json.loads(raw)
    url = urlsplit(info.get("url", ""))
    if url.scheme != "file" or "dir_info" not in info:
        return None
    path = Path(unquote(url.path))
    return path if (path / "pyproject.toml").is_file() else None


def wheelhouse_for(requirements: Sequence[str], given: Path | None, dest: Path) -> Path | None:
    """The wheelhouse a build uses: ``given`` (air-gapped builds), plus a wheel of every required clipper-deploy
    distribution that this machine installed from a source tree (a clone), which no index serves at its version."""
    import shutil

    from packaging.requirements import Requirement

    sources = [src for src in (local_source(Requirement(r).name) for r in requirements) if src is not None]
    if not sources:
        return given
    dest.mkdir(parents=True, exist_ok=True)
    if given is not None:
        for wheel in given.iterdir():
            if wheel.is_file():
                shutil.copy(wheel, dest)
    return wheelhouse_from_sources(sources, dest)


def wheelhouse_from_sources(sources: Sequence[Path], dest: Path) -> Path:
    """Wheels of local source trees (this repository's core and plugins), built without their dependencies."""
    import subprocess

    from ...envs import find_uv

    dest.mkdir(parents=True, exist_ok=True)
    uv = find_uv()
    for src in sources:
        cmd = ([uv, "build", "--wheel", "--quiet", "--out-dir", str(dest), str(src)] if uv else
               [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dest), str(src)])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise ClipperException(f"Building a wheel of {src} failed:\n{proc.stderr[-2000:]}")
    return dest


def ensure_image(client: Any, image: str, what: str) -> Any:
    """The image, pulled when the engine does not have it; ``ClipperException`` naming ``what`` needs it if
    it cannot be had."""
    import docker.errors

    try:
        return client.images.get(image)
    except docker.errors.ImageNotFound:
        pass
    try:
        return client.images.pull(image)
    except docker.errors.APIError as e:
        raise ClipperException(f"Image {image} for {what} is not on the engine and cannot be pulled ({e}). "
                               f"Build the base images with `clipper-deploy images build`") from e


def model_image_tag(cluster: str, name: str, version: str, registry: str | None = None) -> str:
    """Clipper's tag scheme: ``[registry/]<cluster>-<name>:<version>``."""
    return f"{registry.rstrip('/') + '/' if registry else ''}{cluster}-{name}:{version}"


def build_model_image(client: Any, bundle_dir: Path, base_image: str, tag: str,
                      pkgs_to_install: Sequence[str] | None = None, registry_push: bool = False,
                      network_mode: str | None = "host",
                      progress: Callable[[dict[str, Any]], None] | None = None) -> str:
    """One image per model version: FROM the base image, ``pkgs_to_install`` installed at build time (never
    when a replica starts), the bundle copied to ``/model`` with its digest, so the replica verifies it."""
    from ...bundle import bundle_digest, read_manifest
    from ...bundle.verify import validate_pkgs

    manifest = read_manifest(bundle_dir)
    pkgs = validate_pkgs(pkgs_to_install)
    ensure_image(client, base_image, f"model {manifest.name}:{manifest.version}")
    lines = [f"FROM {base_image}", "COPY model /model",
             f"ENV CLIPPER_MODEL_PATH=/model CLIPPER_BUNDLE_DIGEST={bundle_digest(bundle_dir)} "
             f"CLIPPER_MODEL_NAME={manifest.name} CLIPPER_MODEL_VERSION={manifest.version} "
             f"CLIPPER_INPUT_TYPE={manifest.input_type}"]
    if pkgs:
        lines.append("RUN pip install --no-cache-dir --disable-pip-version-check -- "
                     + " ".join(json.dumps(p) for p in pkgs))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = ("\n".join(lines) + "\n").encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(str(bundle_dir), arcname="model")
    buf.seek(0)
    _run_build(client, buf, tag, network_mode, progress)
    if registry_push:
        show = progress or _printer(sys.stdout)
        repo, _, version = tag.rpartition(":")
        for event in client.api.push(repo, tag=version, stream=True, decode=True):
            show(event)
            if "error" in event or "errorDetail" in event:
                raise ClipperException(f"Pushing {tag} failed: {event.get('error') or event['errorDetail']}")
    return tag
