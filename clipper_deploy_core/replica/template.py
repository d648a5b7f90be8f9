"""``python -m clipper_deploy_core.replica.template [MODULE ...]``: a warm template that forks replicas.

As gunicorn's ``--preload`` does for workers: the template imports the replica runtime and the modules the bundle's
plugin declared safe to preload (the manifest's ``preload``, such as ``torch``) once, then forks a replica per
request, so a scale-up or a restart skips the interpreter start and those imports. It only imports: no model is loaded
and no thread is started here, so a fork is as clean as a fresh process.

Requests arrive on stdin, a Unix socket, one JSON line each: ``{"env": {...}, "log": path, "cwd": path}`` forks a
replica. ``{"template": [MODULE ...]}``, sent with two descriptors (a socket for the new template's requests and a
pipe for its answers), forks another template that imports those modules too: a framework's template then starts
from this one's imports instead of a new interpreter's. Each request is answered on stdout with ``{"pid": n}``, and
when that process ends, ``{"exited": n, "code": c}`` (``-signal`` when killed). A module that fails to import ends
the template with its traceback on stderr, before it answers anything. The template exits when stdin closes;
running replicas stay, and end when their link to the frontend does.
"""

from __future__ import annotations

import collections
import functools
import gc
import importlib
import io
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

READY = {"ready": True}
MAX_FDS = 8  # descriptors taken with one read of the request socket (a template request brings two)


class _ClusterGone(Exception):
    """Our stdout, the cluster's end, is closed: the cluster exited, and nobody is left to fork for."""


def _reply(msg: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # stdout onto /dev/null, as Python's docs advise for a closed pipe, or the flush at exit fails again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise _ClusterGone from None


def _close(fds: Iterable[int]) -> None:
    for fd in fds:
        os.close(fd)


def _child(request: dict[str, Any], inherited: list[int]) -> int:
    """In the forked replica: its own log, environment and working directory, then the replica's main()."""
    gc.enable()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _close(inherited)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # as PYTHONUNBUFFERED would have made it
    from . import __main__ as replica

    try:
        return replica.main()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _reply({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _requests() -> Callable[[], tuple[bytes, list[int]]]:
    """Reads stdin: ``(bytes, descriptors)`` per call, ``b""`` at its end. A pipe (a template started by hand)
    carries no descriptors."""
    try:
        sock = socket.socket(fileno=0)
    except OSError:
        return lambda: (os.read(0, 1 << 16), [])
    return lambda: socket.recv_fds(sock, 1 << 16, MAX_FDS)[:2]


def main(modules: list[str]) -> int:
    # As the gc module advises for fork without exec: no collection in the template (no freed holes in its pages),
    # and everything it holds frozen before each fork, so a replica's collections never write to the shared pages.
    gc.disable()
    # Only stdin, stdout and stderr are ours: any other descriptor inherited from the cluster would be inherited
    # again by every replica, and a copy of the cluster's end of our stdout kept there would hide our exit from it.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    import numpy  # noqa: F401 - numeric inputs become arrays (the first one would import it: ~0.25 s)

    from ..bundle import load_bundle  # noqa: F401 - the loader (cloudpickle)
    from ..plugin import get_registry
    from . import __main__ as replica  # noqa: F401 - the runtime and what it imports, once for every fork

    get_registry()  # the plugins, found through their entry points once rather than in every replica (~30 ms)
    return _serve(modules)


def _serve(modules: list[str]) -> int:
    """Import ``modules``, say so, and fork what is asked for until stdin or stdout closes."""
    try:
        return _forks(modules)
    except _ClusterGone:
        os.write(2, f"replica template {os.getpid()}: the cluster closed its pipe; exiting\n".encode())
        return 0


def _forks(modules: list[str]) -> int:
    began = time.monotonic()
    for name in modules:
        importlib.import_module(name)
    if modules:  # a framework's bundles record its version, which each replica's load checks
        from ..bundle.reader import warm_framework_checks

        warm_framework_checks()
    # One write: templates share the log, and a line written in pieces (print writes the newline apart when stderr
    # is unbuffered) could merge with another template's.
    os.write(2, f"replica template {os.getpid()} (parent {os.getppid()}) ready, preloaded [{', '.join(modules)}] in "
                f"{time.monotonic() - began:.2f} s\n".encode())
    wake = os.pipe()
    os.set_blocking(wake[1], False)
    signal.set_wakeup_fd(wake[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below through the pipe
    read = _requests()
    received: collections.deque[int] = collections.deque()  # descriptors that came with requests, in order
    _reply(READY)
    pending = b""
    while True:
        readable, _, _ = select.select([0, wake[0]], [], [])
        if wake[0] in readable:
            os.read(wake[0], 4096)
            _reap()
        if 0 in readable:
            chunk, fds = read()  # not sys.stdin: its buffer would hide a second line from select
            received.extend(fds)
            if not chunk:
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                if "template" in request:
                    own = [received.popleft(), received.popleft()]
                    pid = _fork(functools.partial(_template, request["template"], own, [*wake, *received]), own)
                else:
                    pid = _fork(functools.partial(_child, request, [*wake, *received]), [])
                _reply({"pid": pid})


def _template(modules: list[str], own: list[int], inherited: list[int]) -> int:
    """In a forked template: the descriptors it was sent become its stdin and stdout, then it serves."""
    signal.set_wakeup_fd(-1)
    _close(inherited)
    os.dup2(own[0], 0)
    os.dup2(own[1], 1)
    _close(own)
    return _serve(modules)


def _fork(run: Callable[[], int], sent: list[int]) -> int:
    """Fork a process that runs ``run()`` and exits with its code; ``sent`` (descriptors only the child keeps) is
    closed here."""
    gc.freeze()
    pid = os.fork()
    if pid:
        _close(sent)
        return pid
    code = 1
    try:
        code = run()
    except BaseException:  # noqa: BLE001 - the replica's log gets the traceback, the cluster its exit code
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
