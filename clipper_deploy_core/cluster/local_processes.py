"""Replicas as local processes (the embedded cluster's ``ReplicaRunner``)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..bundle.verify import read_manifest, verify_bundle
from ..envs import ensure_env
from ..exceptions import ClipperException
from ..frontend.state import Deployment
from .early_templates import TEMPLATES_ENV
from .replica_templates import ForkedReplica, TemplatePool
from .supervisor import Replica, ReplicaRunner

if TYPE_CHECKING:
    from .early_templates import Early


class ProcessRunner(ReplicaRunner):
    """Replicas as processes of the cluster's: forked from a warm template per interpreter and framework set
    (:mod:`.replica_templates`), or started fresh where no template can run."""

    def __init__(self, home: Path, env_root: Path | None) -> None:
        self.home, self.env_root = home, env_root
        self.templates = TemplatePool(home, home / "logs") if os.environ.get(TEMPLATES_ENV, "1") != "0" else None

    async def adopt(self, started: Early) -> None:
        """Keep the templates the cluster process started first thing (:mod:`.early_templates`)."""
        if self.templates is not None:
            await self.templates.adopt(sys.executable, started)

    async def warm_template(self, modules: tuple[str, ...]) -> bool:
        if self.templates is None:
            return False
        await self.templates.warm(sys.executable, modules)
        return True

    async def prepare(self, d: Deployment) -> None:
        # A bundle is code: replicas load only bundles in this cluster's own store (where build_model copies
        # them, mode 0700), and only the exact bundle whose digest the deploy names.
        if d.bundle is None:
            raise ClipperException(f"This cluster runs replicas as local processes, from bundles: image {d.image} "
                                   f"cannot run here")
        store = (self.home / "bundles").resolve()
        bundle = Path(d.bundle).resolve()
        if bundle.parent != store:
            raise ClipperException(f"deploy_replicas takes only bundles in the cluster's bundle store {store}, "
                                   f"not {d.bundle}; build_model puts them there")
        if not (bundle / "manifest.json").is_file():
            raise ClipperException(f"No bundle at {d.bundle}")
        await asyncio.to_thread(verify_bundle, bundle, d.digest, (d.name, d.version))
        if d.pkgs:  # the venv is built (and cached) before any replica starts, so a failed install is reported
            await asyncio.to_thread(ensure_env, d.pkgs, self.env_root)

    async def start(self, d: Deployment, r: Replica, env: dict[str, str]) -> None:
        python = await asyncio.to_thread(ensure_env, d.pkgs, self.env_root) if d.pkgs else sys.executable
        if self.templates is not None and d.bundle is not None:
            template = await self.templates.get(python, tuple(sorted(read_manifest(d.bundle).preload)))
            if template is not None:
                try:
                    forked = await template.fork({**os.environ, **env}, Path(r.log), self.home)
                except ClipperException:
                    pass  # the template died meanwhile: a fresh process instead
                else:
                    r.handle, r.where = forked, {"pid": forked.pid}
                    return
        with open(r.log, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                python, "-m", "clipper_deploy_core.replica", env={**os.environ, **env},
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(self.home))
        r.handle, r.where = proc, {"pid": proc.pid}

    async def wait(self, r: Replica) -> int:
        if isinstance(r.handle, ForkedReplica):
            return await r.handle.wait()
        proc: asyncio.subprocess.Process = r.handle
        return await proc.wait()

    async def terminate(self, r: Replica, timeout: float) -> None:
        if isinstance(r.handle, ForkedReplica):
            return await r.handle.terminate(timeout)
        proc: asyncio.subprocess.Process = r.handle
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()

    async def until_healthy(self, r: Replica, deadline: float) -> bool:
        return True  # a local replica has no health check of its own: linked to the frontend is ready

    async def cleanup(self) -> None:
        """Nothing to remove: a previous cluster process's replicas and templates ended with it (their link and
        their stdin broke). The templates this process warmed are kept."""
