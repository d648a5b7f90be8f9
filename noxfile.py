"""The test matrix: core, one session per plugin under plugins/, all plugins together, and lint.

``nox`` runs them all; ``nox -s core``, ``nox -s "plugin(pytorch)"`` or ``nox -t slow`` pick some.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True
nox.needs_version = ">=2024.10.9"

ROOT = Path(__file__).parent
PLUGIN_DIRS = sorted(p for p in (ROOT / "plugins").glob("clipper-deploy-*") if (p / "pyproject.toml").exists())
PLUGINS = [p.name.removeprefix("clipper-deploy-") for p in PLUGIN_DIRS]
# Plugins whose frameworks cannot share a venv with the rest (MXNet pins numpy<1.24).
ISOLATED = {"mxnet"}
# Plugins whose tests start a JVM per replica; `nox -t slow` picks them out.
SLOW = {"pyspark"}
# Frameworks that ship CPU wheels on a local find-links folder on our machines (torch: see the README).
_LINKS = os.environ.get("CLIPPER_DEPLOY_FIND_LINKS", "/opt/wheels")
FIND_LINKS = [d for d in _LINKS.split(os.pathsep) if Path(d).is_dir()]
# Without a local torch wheel, torch's CPU build comes from PyTorch's own index (the package index's default build
# pulls in CUDA, gigabytes of it); uv then takes the best match across both indexes, which is torch's +cpu build.
TORCH_CPU_INDEX = os.environ.get("CLIPPER_DEPLOY_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")
HAS_LOCAL_TORCH = any(next(Path(d).glob("torch-*.whl"), None) for d in FIND_LINKS)
CORE = ["-e", ".[test]"]
PYTEST = ["pytest", "-p", "no:cacheprovider"]
# Frameworks published only as an sdist. uv keeps no reusable build of pyspark's (its 400 MB of jars are unpacked and
# built again, twice, in every session that installs it: about 2 GB of cache each time, which once filled a CI
# machine's disk), so each is built into a wheel once per checkout, here, where every install looks first.
SDIST_ONLY = {"pyspark"}
WHEELHOUSE = ROOT / ".nox" / "wheelhouse"


def _install(session: nox.Session, *args: str, torch: bool = False) -> None:
    """``torch=True`` for sessions that install torch: only they look at PyTorch's index (set
    CLIPPER_DEPLOY_TORCH_INDEX to "" to use the package index alone)."""
    extra: list[str] = []
    for d in [*FIND_LINKS, *([str(WHEELHOUSE)] if WHEELHOUSE.is_dir() else [])]:
        extra += ["--find-links", d]
    if torch and not HAS_LOCAL_TORCH and TORCH_CPU_INDEX:
        extra += ["--extra-index-url", TORCH_CPU_INDEX, "--index-strategy", "unsafe-best-match"]
    session.install(*extra, *args)


def _build_sdist_only(session: nox.Session, plugin_dir: Path) -> None:
    """Build a wheel of each ``SDIST_ONLY`` framework the plugin's ``framework`` extra names into WHEELHOUSE, unless
    one there already satisfies it. pip builds it, from the interpreter running nox (uv has no command that builds a
    wheel from an index); without pip there, uv builds the sdist as before."""
    import importlib.util

    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import parse_wheel_filename

    project = tomllib.loads((plugin_dir / "pyproject.toml").read_text())["project"]
    for req in map(Requirement, project["optional-dependencies"]["framework"]):
        built = [parse_wheel_filename(w.name)[1] for w in WHEELHOUSE.glob(f"{req.name}-*.whl")]
        if req.name in SDIST_ONLY and not any(req.specifier.contains(v) for v in built):
            if importlib.util.find_spec("pip") is None:
                return
            session.run(sys.executable, "-m", "pip", "wheel", "-q", "--no-cache-dir", "--no-deps",
                        "--disable-pip-version-check", str(req), "-w", str(WHEELHOUSE), external=True)


def _scratch_env(session: nox.Session) -> dict[str, str]:
    """Frameworks write caches into $HOME; keep them inside the session's own folder."""
    scratch = Path(session.create_tmp())
    return {"HOME": str(scratch), "KERAS_HOME": str(scratch / "keras"), "TORCHINDUCTOR_CACHE_DIR": str(scratch / "ti"),
            "CLIPPER_DEPLOY_HOME": str(scratch / "clipper")}


@nox.session(tags=["core"])
def core(session: nox.Session) -> None:
    """The core alone (plus the toy third-party plugin and container manager its tests install from tests/, and
    schemathesis, which checks the query port's OpenAPI description against the live server)."""
    _install(session, *CORE, "-e", "tests/toy_plugin", "-e", "tests/toy_manager", "schemathesis>=4")
    session.run(*PYTEST, "tests", "--ignore=tests/test_all_plugins.py", "--ignore=tests/docker",
                "--ignore=tests/kubernetes", "--ignore=tests/browser", *session.posargs,
                env=_scratch_env(session))


@nox.session(tags=["browser"])
def browser(session: nox.Session) -> None:
    """The dashboard in Debian's Chromium (/usr/bin/chromium, which scripts/test.sh installs), driven by Playwright
    from PyPI without its browser download. Screenshots land in artifacts/screenshots/ for CI to keep."""
    _install(session, *CORE, "playwright")
    env = {**_scratch_env(session), "CLIPPER_DEPLOY_ARTIFACTS": str(ROOT / "artifacts"),
           "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    session.run(*PYTEST, "tests/browser", *session.posargs, env=env)


@nox.session(tags=["docker", "slow"])
def docker(session: nox.Session) -> None:
    """Against a real Docker engine (DOCKER_HOST; scripts/docker-engine.sh starts one): images, the Docker manager, and
    the Kubernetes manager's pods run as containers."""
    _install(session, "-e", ".[test,docker,kubernetes]", "-e", "plugins/clipper-deploy-pytorch[framework]", "kmock",
             "pytest-asyncio", torch=True)
    session.run(*PYTEST, "tests/docker", *session.posargs, env=_scratch_env(session))
    if os.environ.get("CLIPPER_DEPLOY_PRIVATE_ENGINE") == "1":
        # scripts/test.sh's own engine, removed when the run ends: its images (2.4 GB) go now, not after the
        # sessions that follow have filled the disk further.
        session.run("docker", "system", "prune", "--all", "--force", external=True, silent=True)


@nox.session(tags=["kubernetes"])
def kubernetes(session: nox.Session) -> None:
    """The Kubernetes manager: manifests validated by kubernetes-validate, API calls against kmock (an emulated
    API server). No real control plane can run here; the README says what is and is not tested."""
    _install(session, "-e", ".[test,kubernetes]", "kubernetes-validate", "kmock", "pytest-asyncio")
    session.run(*PYTEST, "tests/kubernetes", *session.posargs, env=_scratch_env(session))


@nox.session(tags=["lint"])
def lint(session: nox.Session) -> None:
    """ruff over everything, mypy (strict) over the core."""
    _install(session, "ruff", "mypy", *CORE)
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session(tags=["plugins"])
@nox.parametrize("plugin", [nox.param(p, id=p, tags=[p, *(["slow"] if p in SLOW else [])]) for p in PLUGINS])
def plugin(session: nox.Session, plugin: str) -> None:
    """One plugin with its framework, against the core in this checkout."""
    d = ROOT / "plugins" / f"clipper-deploy-{plugin}"
    _build_sdist_only(session, d)
    _install(session, *CORE, "-e", f"{d}[framework,test]", torch=True)
    session.run(*PYTEST, str(d / "tests"), *session.posargs, env=_scratch_env(session))


@nox.session(tags=["build"])
def build(session: nox.Session) -> None:
    """Every package (core and plugins) builds a wheel and an sdist with uv, and the wheels install together into a
    fresh venv from those files alone (no editable install): each plugin is then listed by `clipper-deploy plugins`."""
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for d in [ROOT, *PLUGIN_DIRS]:
        session.run("uv", "build", "--quiet", "--out-dir", str(dist), str(d), external=True)
    wheels = sorted(str(w) for w in dist.glob("*.whl"))
    assert len(wheels) == 1 + len(PLUGIN_DIRS), wheels
    session.install(*wheels)
    out = session.run("clipper-deploy", "plugins", "--json", silent=True)
    listed = {p["name"] for p in json.loads(str(out))}
    assert set(PLUGINS) | {"python"} <= listed, listed


@nox.session(tags=["build"])
def templates(session: nox.Session) -> None:
    """`clipper-deploy new plugin` and `new manager` write packages that install and pass their own tests."""
    out = Path(session.create_tmp()) / "generated"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    _install(session, *CORE)
    session.run("clipper-deploy", "new", "plugin", "widget", "--dir", str(out))
    session.run("clipper-deploy", "new", "manager", "remote_box", "--dir", str(out))
    packages = sorted(str(p) for p in out.iterdir())
    _install(session, *(a for p in packages for a in ("-e", f"{p}[test]")))
    session.run("clipper-deploy", "managers")
    session.run(*PYTEST, *packages, env=_scratch_env(session))


@nox.session(tags=["plugins"])
def all_plugins(session: nox.Session) -> None:
    """Every co-installable plugin in one venv: pip check, then dispatch with everything present."""
    args = [*CORE, "-e", "tests/toy_plugin"]
    for p, d in zip(PLUGINS, PLUGIN_DIRS, strict=True):
        if p not in ISOLATED:
            _build_sdist_only(session, d)
            args += ["-e", f"{d}[framework]"]
    _install(session, *args, torch=True)
    session.run("uv", "pip", "check", "--python", str(Path(session.bin) / "python"), external=True)
    session.run(*PYTEST, "tests/test_plugins.py", "tests/test_all_plugins.py", *session.posargs,
                env=_scratch_env(session))
