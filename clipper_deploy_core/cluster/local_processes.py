"""Replicas as local processes (the embedded cluster's ``ReplicaRunner``)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from ..bundle import verify_bundle
from ..envs import ensure_env
from ..exceptions import ClipperException
from ..frontend.state import Deployment
from .supervisor import Replica, ReplicaRunner


class ProcessRunner(ReplicaRunner):
    """Replicas as child processes of the cluster process (the local manager's runner)."""

    def __init__(self, home: Path, env_root: Path | None) -> None:
        self.home, self.env_root = home, env_root

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
        with open(r.log, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                python, "-m", "clipper_deploy_core.replica", env={**os.environ, **env},
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(self.home))
        r.handle, r.where = proc, {"pid": proc.pid}

    async def wait(self, r: Replica) -> int:
        proc: asyncio.subprocess.Process = r.handle
        return await proc.wait()

    async def terminate(self, r: Replica, timeout: float) -> None:
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
        """Replica processes die with their cluster process (their link breaks), so nothing is left."""
