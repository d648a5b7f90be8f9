"""Replica templates started before the cluster process imports anything heavy.

The cluster process spends most of its start importing the frontend (prometheus-client, httptools; numpy follows
in a thread); a template spends its start importing the replica runtime and the frameworks. Started first, the two
overlap, so the first deploy after ``start_clipper`` forks its replica from a template that is already warm. This
module is imported before everything else, so it imports only the standard library.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from ..process_commands import template_command

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing first thing
if TYPE_CHECKING:
    # by module tuple: the process, and the cluster's end of the socket its requests go to
    Early = dict[tuple[str, ...], tuple[subprocess.Popen[bytes], socket.socket]]

TEMPLATES_ENV = "CLIPPER_DEPLOY_REPLICA_TEMPLATES"  # "0": replicas start as fresh processes


def _option(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv[:-1] else default


def start(argv: list[str]) -> Early:
    """For a cluster process with local replicas (``argv``: its command line): the bare template, by its module
    tuple ``()`` (those ``--preload`` names are forked from it once it is ready). Nothing for a query worker, for
    replicas in containers, with templates turned off, or without ``--home``."""
    if ("--worker" in argv or "--home" not in argv[:-1] or _option(argv, "--replicas", "local") != "local"
            or os.environ.get(TEMPLATES_ENV, "1") == "0"):
        return {}  # without --home, the command line is refused (or is --help): no template, no logs in the cwd
    home = argv[argv.index("--home") + 1]
    os.umask(0o077)  # as the cluster process sets it: logs and state are this user's alone
    os.makedirs(os.path.join(home, "logs"), mode=0o700, exist_ok=True)
    ours, theirs = socket.socketpair()
    with open(os.path.join(home, "logs", "template.log"), "ab") as log, theirs:
        bare = subprocess.Popen(template_command(sys.executable, ()), stdin=theirs.fileno(), stdout=subprocess.PIPE,
                                stderr=log, cwd=home, close_fds=True)
    return {(): (bare, ours)}
