"""``LocalContainerManager``: the cluster as a background process, replicas as child processes."""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...bundle import bundle_digest, read_manifest, verify_bundle
from ...envs import cluster_dir, default_home
from ...exceptions import ClipperException
from ...http_client import check_admin_token, request, warm_http_client
from ...naming import validate_module_names, validate_name
from ...process_commands import cluster_command
from ..admin_client import AdminBackedManager, cache_size_args, check_frontends
from .import_watch import Watch, unwatch, watch_imports

START_TIMEOUT_S = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


TOKEN_FILE = "admin_token"
WARM_TIMEOUT_S = 5.0


def check_preload(preload: Sequence[str] | None) -> list[str] | None:
    """``preload``, checked: module names (``torch``, ``tensorflow.keras``), or ``None`` for the automatic one."""
    return None if preload is None else validate_module_names(preload, "preload")


def preload_groups() -> list[tuple[str, ...]]:
    """Each installed plugin's ``preload_modules``: the templates an automatic ``preload`` may warm."""
    from ...plugin import get_registry

    return sorted({info.preload for info in get_registry().infos() if info.preload})


def warm_deploy_path() -> None:
    """Read what a deploy reads first: the plugins and their metadata (a bundle's manifest records its plugin's
    distribution and version), and the admin client's imports. 0.3 s where nothing is precompiled, spent by
    ``start_clipper`` while it waits."""
    from ...plugin import get_registry

    get_registry().read_metadata()
    warm_http_client()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user alone (0600), replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


class LocalContainerManager(AdminBackedManager):
    """The cluster as a background process on this machine, replicas as its child processes.

    Every port binds to loopback by default. The admin token is made at ``start_clipper`` (or taken from
    ``admin_token``) and kept in ``<home>/clusters/<name>/admin_token`` (0600), where ``connect()`` finds it.
    ``insecure_loopback_admin=True`` lets token-less admin mutations in from loopback, for Clipper's own
    ``clipper_admin`` client: any local process can then deploy code as this user.

    ``frontends=N`` runs N frontend processes on the query port (about one per core the replicas leave free).

    ``preload`` decides when a replica template imports a framework, so that a deploy forks a replica instead of
    waiting for the import. By default (``None``) this process's imports decide: the first time it imports a module
    an installed plugin declares in ``preload_modules`` (``torch`` for clipper-deploy-pytorch), the cluster starts
    that plugin's template, which imports the framework beside the script's own import. ``preload=["torch"]``
    starts that template with the cluster instead; ``preload=[]`` starts none before the first deploy.
    """

    loads_bundles_locally = True  # replicas are child processes of the cluster, in this Python

    def __init__(self, cluster_name: str = "default-cluster", clipper_query_port: int = 1337,
                 clipper_management_port: int = 1338, clipper_rpc_port: int = 7000, home: str | Path | None = None,
                 query_host: str = "127.0.0.1", admin_host: str = "127.0.0.1",
                 max_request_bytes: int = 16 * 1024 * 1024, admin_token: str | None = None,
                 insecure_loopback_admin: bool = False, max_batch_rows: int = 10_000,
                 cache_size: int | None = None, frontends: int = 1, preload: Sequence[str] | None = None) -> None:
        self.cluster_name = validate_name(cluster_name, "cluster name")
        self.cluster_identifier = cluster_name
        self.ports = (clipper_query_port, clipper_management_port, clipper_rpc_port)
        self.home = Path(home or default_home())
        self.dir = cluster_dir(cluster_name, self.home)
        self.query_host, self.admin_host = query_host, admin_host
        self.max_request_bytes, self.admin_token = max_request_bytes, admin_token
        self.insecure_loopback_admin = insecure_loopback_admin
        self.max_batch_rows = max_batch_rows
        self.cache_size = cache_size  # start_clipper's default: Clipper takes it there, a harness may only set it here
        self.frontends = check_frontends(frontends)
        self.preload = check_preload(preload)
        self.info: dict[str, Any] | None = None
        self._import_watch: Watch | None = None

    # --- cluster lifecycle --------------------------------------------------------------------
    def _read_info(self) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = json.loads((self.dir / "cluster.json").read_text())
        except (OSError, ValueError):
            return None
        return info if _alive(int(info["pid"])) else None

    def start_clipper(self, cache_size: int | None = None, **_: Any) -> None:
        """Start the cluster process (``cache_size``: the prediction cache in bytes, 0 for none; Clipper's
        default 32 MiB when not given) and wait until it listens."""
        cache_args = cache_size_args(self.cache_size if cache_size is None else cache_size)
        running = self._read_info()
        if running:
            raise ClipperException(f"A cluster named '{self.cluster_name}' is already running (pid {running['pid']}, "
                                   f"query {running['query']}). Use connect(), or stop_all() it first")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.chmod(0o700)
        (self.dir / "cluster.json").unlink(missing_ok=True)
        token_file = self.dir / TOKEN_FILE
        if self.admin_token is None and token_file.is_file():
            self.admin_token = token_file.read_text().strip()  # a restarted cluster keeps its token
        self.admin_token = self.admin_token or secrets.token_urlsafe(32)
        _write_private(token_file, self.admin_token)
        # handed to the child; 0600 like everything the cluster writes
        log = os.fdopen(os.open(self.dir / "cluster.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        env = {**os.environ, "CLIPPER_ADMIN_TOKEN": self.admin_token}
        q, a, r = self.ports
        # The cluster writes a byte here once it listens, so the wait below ends then rather than at its next poll;
        # the pipe ends (EOF) if it exits first.
        ready_r, ready_w = os.pipe()
        try:
            proc = subprocess.Popen(
                cluster_command(
                    sys.executable, "--name", self.cluster_name, "--home", str(self.dir), "--query-host",
                    self.query_host, "--query-port", str(q), "--admin-host", self.admin_host, "--admin-port", str(a),
                    "--rpc-port", str(r), "--max-body", str(self.max_request_bytes), "--max-batch-rows",
                    str(self.max_batch_rows), *cache_args, "--frontends", str(self.frontends),
                    *(["--preload", ",".join(self.preload)] if self.preload else []), "--env-root", str(self.home),
                    *(["--insecure-loopback-admin"] if self.insecure_loopback_admin else []),
                    "--ready-fd", str(ready_w)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env, cwd=str(self.dir),
                pass_fds=(ready_w,))
        finally:
            os.close(ready_w)
            log.close()
        try:
            groups = preload_groups() if self.preload is None else []
            warm_deploy_path()  # while the cluster process starts
            self._wait_listening(proc, ready_r)
        finally:
            os.close(ready_r)
        self._watch_imports(groups)

    def _wait_listening(self, proc: subprocess.Popen[bytes], ready: int) -> None:
        """Return once the cluster process ``proc`` says (on the pipe ``ready``) that it listens, or, if it closed
        the pipe without saying so, once its admin port answers."""
        deadline = time.monotonic() + START_TIMEOUT_S
        said = False
        while time.monotonic() < deadline:
            if not said:
                readable, _, _ = select.select([ready], [], [], min(0.5, max(0.0, deadline - time.monotonic())))
                said = bool(readable) and bool(os.read(ready, 1))  # b"" is EOF: it exited, or closed the pipe
            if proc.poll() is not None:
                raise ClipperException(f"The cluster process exited with code {proc.returncode}:\n"
                                       f"{(self.dir / 'cluster.log').read_text(errors='replace')[-4000:]}")
            info = self._read_info()
            # Only proc holds the pipe's other end, and it writes the byte once every port listens: a ping then
            # would only wait for its loop, busy with the imports it starts then (frontend.warm_imports).
            if info and info["pid"] == proc.pid and (
                    said or request("GET", f"http://{info['admin']}/admin/ping")[0] == 200):
                self.info = info
                return
            if said or readable:
                time.sleep(0.05)  # it said so (or closed the pipe) but does not answer yet: poll as before
        proc.kill()
        raise ClipperException(f"The cluster did not start within {START_TIMEOUT_S:.0f}s")

    def connect(self) -> None:
        info = self._read_info()
        if info is None:
            raise ClipperException(f"No running cluster named '{self.cluster_name}' (looked in {self.dir}). "
                                   f"Start one with start_clipper()")
        if self.admin_token is None:
            try:
                self.admin_token = (self.dir / TOKEN_FILE).read_text().strip()
            except OSError as e:
                raise ClipperException(f"Cannot read the admin token of cluster '{self.cluster_name}' ({e}); pass "
                                       f"admin_token= or run as the user who started it") from None
        # A token given as admin_token= may not be this cluster's: say so now, not at the first mutation
        check_admin_token(info["admin"], self.admin_token)
        self.info = info
        if self.preload is None and self._import_watch is None:
            self._watch_imports(preload_groups())

    def _watch_imports(self, groups: list[tuple[str, ...]]) -> None:
        """For the automatic ``preload``: warm each plugin's template at this process's first import of it."""
        if groups and self._import_watch is None:
            self._import_watch = watch_imports(groups, self._warm_template)

    def _warm_template(self, modules: tuple[str, ...]) -> None:
        # Runs inside the user's import: a failure only costs the head start, so it is not raised there.
        try:
            self._admin("warm_replica_template", {"modules": list(modules)}, timeout=WARM_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"could not warm a replica template for {', '.join(modules)}: {e}", RuntimeWarning,
                          stacklevel=2)

    def _need(self) -> dict[str, Any]:
        if self.info is None:
            self.connect()
        assert self.info is not None
        return self.info

    def get_query_addr(self) -> str:
        return str(self._need()["query"])

    def get_admin_addr(self) -> str:
        return str(self._need()["admin"])

    def get_metric_addr(self) -> str:
        return self.get_query_addr()  # /metrics is served on the query port

    # --- models -------------------------------------------------------------------------------
    def build_model(self, name: str, version: str, model_data_path: str, base_image: str,
                    container_registry: str | None = None, pkgs_to_install: list[str] | None = None) -> str:
        """Copy the verified bundle into the cluster's store; the "image" is that directory, named by its digest."""
        verify_bundle(model_data_path, expected_model=(name, str(version)))
        dest = self.dir / "bundles" / f"{name}-{version}-{bundle_digest(Path(model_data_path))}"
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(model_data_path, tmp)
            tmp.replace(dest)
        return str(dest)

    def deploy_model(self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1) -> None:
        # Clipper calls what build_model returned an "image"; here it is the bundle's directory in the store, whose
        # name ends with the digest build_model computed (the cluster verifies the bundle against it).
        stored = Path(image).resolve()
        digest = stored.name.rsplit("-", 1)[-1]
        if stored.parent != (self.dir / "bundles").resolve() or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ClipperException(f"{image} is not a bundle that build_model stored in this cluster")
        self._deploy(name, version, digest, num_replicas, bundle=image, pkgs=read_manifest(image).pkgs_to_install)

    def get_logs(self, logging_dir: str) -> list[str]:
        out = Path(logging_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for src in [self.dir / "cluster.log", *sorted((self.dir / "logs").glob("*.log"))]:
            if src.is_file():
                dst = out / f"{self.cluster_name}-{src.name}"
                shutil.copyfile(src, dst)
                paths.append(str(dst))
        return paths

    def stop_all(self, graceful: bool = True) -> None:
        """Stop the cluster and every replica, and delete its state (as Clipper's stop_all did)."""
        info = self._read_info()
        if info is not None:
            pid = int(info["pid"])
            pids = [c["pid"] for c in self._containers() if c.get("pid")] if not graceful else []
            os.kill(pid, signal.SIGTERM if graceful else signal.SIGKILL)
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.info = None
        if self._import_watch is not None:
            unwatch(self._import_watch)
            self._import_watch = None
