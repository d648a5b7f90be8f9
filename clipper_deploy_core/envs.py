"""Virtual environments for ``pkgs_to_install``: created once per package set, then reused.

Each environment sees the creating interpreter's packages (clipper-deploy itself and the
frameworks) through a ``.pth`` file, and adds the requested packages on top. Packages are passed
to pip as separate arguments, never through a shell.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import site
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .exceptions import ClipperException

INSTALL_TIMEOUT_S = float(os.environ.get("CLIPPER_DEPLOY_PIP_TIMEOUT", "900"))


def default_home() -> Path:
    return Path(os.environ.get("CLIPPER_DEPLOY_HOME") or Path.home() / ".clipper-deploy")


def cluster_dir(name: str, home: Path | None = None) -> Path:
    """The directory of cluster ``name`` on this machine: its state, token, secret, bundles and logs."""
    return (home or default_home()) / "clusters" / name


def env_key(pkgs: Sequence[str]) -> str:
    ident = json.dumps({"python": platform.python_version(), "prefix": sys.prefix, "pkgs": sorted(pkgs)})
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def _site_dirs() -> list[str]:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return [d for d in dirs if Path(d).is_dir()]


def install_command(python: str) -> list[str] | None:
    """How to install into the environment of ``python`` from outside it: this interpreter's pip (which runs inside
    the target, so the parent's packages seen through the ``.pth`` count as installed), else uv; ``None`` if neither."""
    import importlib.util

    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip", "--python", python, "install", "--disable-pip-version-check"]
    uv = find_uv()
    return [uv, "pip", "install", "--python", python] if uv else None


def find_uv() -> str | None:
    """uv on PATH, or the binary of the ``uv`` Python package in this environment."""
    uv = shutil.which("uv")
    if uv is None:
        try:
            from uv import find_uv_bin  # type: ignore[import-not-found]
        except ImportError:
            return None
        uv = str(find_uv_bin())
    return uv


def ensure_env(pkgs: Sequence[str], root: Path | None = None) -> str:
    """Return the python of an environment that has ``pkgs`` installed, creating it if needed."""
    root = (root or default_home()) / "envs"
    root.mkdir(parents=True, exist_ok=True)
    env = root / env_key(pkgs)
    python = env / "bin" / "python"
    with open(root / f"{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one creator at a time; later callers reuse its result
        if (env / ".complete").exists():
            return str(python)
        shutil.rmtree(env, ignore_errors=True)
        log = root / f"{env.name}.log"
        with open(log, "w") as out:
            installer = install_command(str(python))
            # Without pip in it when another pip or uv installs into it: Debian's python3 has no ensurepip.
            venv = [sys.executable, "-m", "venv", *(["--without-pip"] if installer else []), str(env)]
            if subprocess.run(venv, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S).returncode:
                raise ClipperException(f"Creating the environment for pkgs_to_install failed:\n"
                                       f"{log.read_text()[-4000:]}")
            purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip()
            lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in _site_dirs())
            Path(purelib, "_clipper_deploy_parent.pth").write_text(lines)
            cmd = [*(installer or [str(python), "-m", "pip", "install", "--disable-pip-version-check"]), "--", *pkgs]
            try:
                proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise ClipperException(f"pip install {' '.join(pkgs)} took more than "
                                       f"{INSTALL_TIMEOUT_S:.0f}s") from None
        if proc.returncode:
            raise ClipperException(f"pip install {' '.join(pkgs)} failed for pkgs_to_install:\n"
                                   f"{log.read_text()[-4000:]}")
        (env / ".complete").write_text(json.dumps(sorted(pkgs)))
        return str(python)
