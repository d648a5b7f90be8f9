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
import socket
import subprocess
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from ..exceptions import ClipperException
from ..process_commands import template_command

if TYPE_CHECKING:
    from .early_templates import Early

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


class _Process(Protocol):
    """What a :class:`Template` needs of its process, whoever started it."""

    pid: int

    def kill(self) -> None: ...

    async def reap(self) -> None: ...


@dataclass
class Channel:
    """The cluster's side of a template: its process, the socket its requests go to (blocking: written from a
    thread, since a request can carry descriptors) and the pipe its answers come from."""

    process: _Process
    requests: socket.socket
    answers: asyncio.StreamReader


class _Spawned:
    """A template the event loop started (``asyncio.create_subprocess_exec``)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc, self.pid = proc, proc.pid

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def reap(self) -> None:
        await self.proc.wait()


class _Adopted:
    """A template started with ``subprocess.Popen`` before the event loop ran (:mod:`.early_templates`)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen, self.pid = popen, popen.pid

    def kill(self) -> None:
        self.popen.kill()

    async def reap(self) -> None:
        await asyncio.to_thread(self.popen.wait)


class _Nested:
    """A template another template forked: that one reaps it and reports its exit."""

    def __init__(self, forked: ForkedReplica) -> None:
        self.forked, self.pid = forked, forked.pid

    def kill(self) -> None:
        self.forked._signal(signal.SIGKILL)

    async def reap(self) -> None:
        pass


def _send(sock: socket.socket, data: bytes, fds: Sequence[int]) -> None:
    sent = socket.send_fds(sock, [data], fds)  # the descriptors travel with the first byte
    if sent < len(data):
        sock.sendall(data[sent:])


async def _read_pipe(pipe: IO[bytes]) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


class Template:
    """One template process and the replicas (and templates) it forked. ``spawn`` starts the process and gives
    its channel."""

    def __init__(self, spawn: Awaitable[Channel]) -> None:
        loop = asyncio.get_running_loop()
        self.channel: asyncio.Future[Channel] = loop.create_future()
        self.waiting: collections.deque[asyncio.Future[ForkedReplica]] = collections.deque()
        self.children: dict[int, ForkedReplica] = {}
        self.nested: set[int] = set()  # the children that are templates: they outlive this one
        self.ready = loop.create_future()
        self.sending = asyncio.Lock()  # one request at a time, so the answers come in the order of self.waiting
        self.reader = asyncio.create_task(self._read(spawn))

    async def fork(self, env: dict[str, str], log: Path, cwd: Path) -> ForkedReplica:
        """A new replica with this environment, log and working directory. ``ClipperException`` if the template
        has exited."""
        return await self._request({"env": env, "log": str(log), "cwd": str(cwd)})

    async def fork_template(self, modules: tuple[str, ...]) -> Channel:
        """A new template forked from this one, that imports ``modules`` too. ``ClipperException`` if this one has
        exited."""
        ours, theirs = socket.socketpair()
        answers, write_end = os.pipe()
        try:
            child = await self._request({"template": list(modules)}, [theirs.fileno(), write_end])
        except BaseException:
            ours.close()
            os.close(answers)
            raise
        finally:
            theirs.close()  # in flight, the descriptors are the kernel's: the template gets its own copies
            os.close(write_end)
        if not child.exited.done():
            self.nested.add(child.pid)
        return Channel(_Nested(child), ours, await _read_pipe(os.fdopen(answers, "rb")))

    async def _request(self, msg: dict[str, object], fds: Sequence[int] = ()) -> ForkedReplica:
        """Send ``msg`` (with ``fds``) and return the process it is answered with. Its exit may already be known:
        the answer and the exit can arrive together, before the requester runs again."""
        if self.reader.done():
            raise ClipperException("the replica template has exited")
        channel = await asyncio.shield(self.channel)
        async with self.sending:
            answer: asyncio.Future[ForkedReplica] = asyncio.get_running_loop().create_future()
            self.waiting.append(answer)
            try:
                await asyncio.to_thread(_send, channel.requests, json.dumps(msg).encode() + b"\n", fds)
            except OSError as e:
                self.waiting.remove(answer)
                raise ClipperException(f"the replica template has exited ({e})") from None
        return await answer

    async def _read(self, spawn: Awaitable[Channel]) -> None:
        try:
            try:
                channel = await spawn
            except (OSError, ClipperException) as e:
                self.channel.set_exception(ClipperException(f"the replica template did not start: {e}"))
                return
            self.channel.set_result(channel)
            async for line in channel.answers:
                msg = json.loads(line)
                if "ready" in msg:
                    self.ready.set_result(True)
                elif "pid" in msg:
                    child = self.children[msg["pid"]] = ForkedReplica(msg["pid"])
                    self.waiting.popleft().set_result(child)
                elif "exited" in msg and msg["exited"] in self.children:
                    self.nested.discard(msg["exited"])
                    self.children.pop(msg["exited"]).exited.set_result(msg["code"])
        finally:
            # The template is gone: nobody can report its replicas' exits any more, so they are stopped here and
            # reported killed (the supervisor restarts them from a new template). The templates it forked have
            # channels of their own, and stay.
            if not self.channel.done():
                self.channel.set_exception(ClipperException("the replica template did not start"))
            if not self.ready.done():
                self.ready.set_result(False)
            for waiter in self.waiting:
                if not waiter.done():
                    waiter.set_exception(ClipperException("the replica template exited"))
            for pid, child in self.children.items():
                if pid not in self.nested:
                    child._signal(signal.SIGKILL)
                if not child.exited.done():
                    child.exited.set_result(-signal.SIGKILL)
            self.children.clear()

    async def close(self) -> None:
        """Close its stdin (it exits; its replicas stay until their links end) and wait for it."""
        if not self.channel.done():
            self.reader.cancel()
        try:
            channel = await asyncio.shield(self.channel)
        except ClipperException:
            return  # it never started
        channel.requests.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.reader), 10)
        except asyncio.TimeoutError:
            channel.process.kill()
        await channel.process.reap()


class TemplatePool:
    """Templates by (interpreter, modules to preload), started on first use. A framework's template is forked from
    the bare one of its interpreter where that runs, so it imports only the framework; elsewhere it starts as a new
    process. A template that cannot start (a framework that fails to import) is not kept: the replica then starts
    as a fresh process and fails with its own traceback, as before."""

    def __init__(self, cwd: Path, log_dir: Path) -> None:
        self.cwd, self.log_dir = cwd, log_dir
        self.templates: dict[tuple[str, tuple[str, ...]], Template] = {}
        self.lock = asyncio.Lock()

    async def adopt(self, python: str, started: Early) -> None:
        """Take over the templates :mod:`.early_templates` started (for ``python``), by module tuple."""
        async with self.lock:
            for modules, (popen, requests) in started.items():
                assert popen.stdout is not None
                answers = await _read_pipe(popen.stdout)
                self.templates[(python, modules)] = Template(_ready(Channel(_Adopted(popen), requests, answers)))

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
                if template is not None:
                    await template.close()
                bare = self.templates.get((python, ()))
                if modules and bare is not None and not bare.reader.done():
                    template = Template(self._forked(bare, python, modules))
                else:
                    template = Template(self._spawned(python, modules))
                self.templates[key] = template
        return template

    async def _forked(self, bare: Template, python: str, modules: tuple[str, ...]) -> Channel:
        """A template forked from ``bare`` once it is ready; a new process if it cannot fork one."""
        if await asyncio.shield(bare.ready):
            try:
                return await bare.fork_template(modules)
            except ClipperException:
                pass  # it exited meanwhile
        return await self._spawned(python, modules)

    async def _spawned(self, python: str, modules: tuple[str, ...]) -> Channel:
        """A template as a new process of ``python``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair()
        try:
            with open(self.log_dir / "template.log", "ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    *template_command(python, modules), stdin=theirs.fileno(), stdout=asyncio.subprocess.PIPE,
                    stderr=log, cwd=str(self.cwd))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        assert proc.stdout is not None
        return Channel(_Spawned(proc), ours, proc.stdout)

    async def close(self) -> None:
        """Close every template."""
        for template in self.templates.values():
            await template.close()
        self.templates.clear()


async def _ready(channel: Channel) -> Channel:
    return channel
