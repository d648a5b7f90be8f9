"""The command lines that start the local cluster's own Python processes: the cluster, its query workers and its
replica templates.

Each is ``python -c`` code that imports the module and calls its ``main``, not ``python -m``: ``-m`` runs the module
through runpy, whose own imports cost 0.07 s a process where nothing is precompiled, and a cluster's start runs these
processes one after another (the cluster, then its template). The code names the module, so ``ps`` still says what
each process is. This module imports nothing: the cluster's first lines and the user's side both use it.
"""

from __future__ import annotations

_CLUSTER = "import sys; from clipper_deploy_core.cluster.__main__ import main; sys.exit(main())"
_TEMPLATE = "import sys; from clipper_deploy_core.replica.template import main; sys.exit(main(sys.argv[1:]))"


def cluster_command(python: str, *args: str) -> list[str]:
    """``python -m clipper_deploy_core.cluster *args``, without runpy."""
    return [python, "-c", _CLUSTER, *args]


def template_command(python: str, modules: tuple[str, ...]) -> list[str]:
    """The command line of a replica template for ``python`` that imports ``modules`` (see replica.template)."""
    return [python, "-c", _TEMPLATE, *modules]
