"""Warm replica templates (:mod:`clipper_deploy_core.replica.template`), one per interpreter and set of modules to
preload (what the bundle's plugin declared safe to import before a fork),
kept by the local runner so that a scale-up or a restart forks a replica instead of starting Python and importing
the framework again."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..exceptions import ClipperException
from .early_templates import template_command

MAX_TEMPLATES = 8  # each holds its frameworks' memory; warm requests beyond this are refused


@dataclass
class ForkedReplica:
    """A replica forked by a template: the cluster is not its parent, so its exit code arrives from the template."""

    pid: int
    exited: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    async def wait(self) -> int:
        """Its exit code (negative: the signal that ended it)."""
        return await asyncio.shield(self.exited)

    async def terminate(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns once it has exited."""
        if self.exited.done():
            return
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.wait(), timeout)
        except asyncio.TimeoutError:
            self._signal(signal.SIGKILL)
            await self.wait()

    def _signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


class Template:
    """One template process and the replicas it forked."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.waiting: collections.deque[asyncio.Future[int]] = collections.deque()
        self.children: dict[int, ForkedReplica] = {}
        self.ready = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())

    async def fork(self, env: dict[str, str], log: Path, cwd: Path) -> ForkedReplica:
        """A new replica with this environment, log and working directory. ``ClipperException`` if the template
        has exited."""
        if self.reader.done():
            raise ClipperException("the replica template has exited")
        answer = asyncio.get_running_loop().create_future()
        self.waiting.append(answer)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"env": env, "log": str(log), "cwd": str(cwd)}).encode() + b"\n")
        await self.proc.stdin.drain()
        pid = await answer
        return self.children[pid]

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            async for line in self.proc.stdout:
                msg = json.loads(line)
                if "ready" in msg:
                    self.ready.set_result(True)
                elif "pid" in msg:
                    self.children[msg["pid"]] = ForkedReplica(msg["pid"])
                    self.waiting.popleft().set_result(msg["pid"])
                elif "exited" in msg and msg["exited"] in self.children:
                    self.children.pop(msg["exited"]).exited.set_result(msg["code"])
        finally:
            # The template is gone: nobody can report its replicas' exits any more, so they are stopped here and
            # reported killed (the supervisor restarts them from a new template).
            if not self.ready.done():
                self.ready.set_result(False)
            for waiter in self.waiting:
                if not waiter.done():
                    waiter.set_exception(ClipperException("the replica template exited"))
            for child in self.children.values():
                child._signal(signal.SIGKILL)
                if not child.exited.done():
                    child.exited.set_result(-signal.SIGKILL)
            self.children.clear()

    async def close(self) -> None:
        """Close its stdin (it exits; its replicas stay until their links end) and wait for it."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class _Adopted:
    """A template started with ``subprocess.Popen`` before the event loop ran (:mod:`.early_templates`), with the
    parts of ``asyncio.subprocess.Process`` a :class:`Template` uses."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.StreamWriter,
                 stdout: asyncio.StreamReader) -> None:
        self.popen, self.pid, self.stdin, self.stdout = popen, popen.pid, stdin, stdout

    @classmethod
    async def attach(cls, popen: subprocess.Popen[bytes]) -> _Adopted:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, popen.stdin)
        return cls(popen, asyncio.StreamWriter(transport, protocol, None, loop), reader)

    async def wait(self) -> int:
        return await asyncio.to_thread(self.popen.wait)

    def kill(self) -> None:
        self.popen.kill()


class TemplatePool:
    """Templates by (interpreter, modules to preload), started on first use. A template that cannot start (a
    framework that fails to import) is not kept: the replica then starts as a fresh process and fails with its own
    traceback, as before."""

    def __init__(self, cwd: Path, log_dir: Path) -> None:
        self.cwd, self.log_dir = cwd, log_dir
        self.templates: dict[tuple[str, tuple[str, ...]], Template] = {}
        self.lock = asyncio.Lock()

    async def adopt(self, python: str, started: dict[tuple[str, ...], subprocess.Popen[bytes]]) -> None:
        """Take over the templates :mod:`.early_templates` started (for ``python``), by module tuple."""
        async with self.lock:
            for modules, popen in started.items():
                self.templates[(python, modules)] = Template(await _Adopted.attach(popen))  # type: ignore[arg-type]

    async def get(self, python: str, modules: tuple[str, ...]) -> Template | None:
        """The ready template for ``python`` with ``modules`` imported, started if need be; ``None`` if it cannot
        start."""
        template = await self._started(python, modules)
        if not await asyncio.shield(template.ready):
            return None
        return template

    async def warm(self, python: str, modules: tuple[str, ...]) -> None:
        """Start the template for ``python`` with ``modules`` now, and return without waiting for it: the next
        deploy that needs it (``get``) waits for it instead of starting it then. At most ``MAX_TEMPLATES`` run."""
        await self._started(python, modules, cap=MAX_TEMPLATES)

    async def _started(self, python: str, modules: tuple[str, ...], cap: int | None = None) -> Template:
        """The template for ``python`` with ``modules``, started if it is not running. With ``cap``, refuse to
        start one when ``cap`` already run (checked under the lock, so concurrent requests cannot all pass)."""
        async with self.lock:
            key = (python, modules)
            template = self.templates.get(key)
            if template is None or template.reader.done():
                live = sum(not t.reader.done() for t in self.templates.values())
                if cap is not None and live >= cap:
                    raise ClipperException(f"This cluster already runs {live} replica templates, the most it "
                                           f"keeps; not warming one for {', '.join(modules)}")
                self.log_dir.mkdir(parents=True, exist_ok=True)
                with open(self.log_dir / "template.log", "ab") as log:
                    proc = await asyncio.create_subprocess_exec(
                        *template_command(python, modules), stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE, stderr=log, cwd=str(self.cwd))
                template = self.templates[key] = Template(proc)
        return template

    async def close(self) -> None:
        """Close every template."""
        for template in self.templates.values():
            await template.close()
        self.templates.clear()
