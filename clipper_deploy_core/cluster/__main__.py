"""``python -m clipper_deploy_core.cluster``: the cluster process (see :mod:`.process`). Local managers start it
with :func:`main` through ``python -c`` (see :mod:`..process_commands`): the same process, without runpy's imports."""

import sys


def main() -> int:
    from .early_templates import start

    early = start(sys.argv[1:])  # before the imports below, which take most of the start

    from .process import main as serve

    return serve(early)


if __name__ == "__main__":  # not when a helper process started with "spawn" imports this module
    sys.exit(main())
