"""``python -m clipper_deploy_core.cluster``: the cluster process (see :mod:`.process`)."""

import sys

if __name__ == "__main__":  # not when a helper process started with "spawn" imports this module
    from .early_templates import start

    early = start(sys.argv[1:])  # before the imports below, which take most of the start

    from .process import main

    sys.exit(main(early))
