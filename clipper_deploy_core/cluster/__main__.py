"""``python -m clipper_deploy_core.cluster``: the cluster process (see :mod:`.process`)."""

import sys

from .process import main

if __name__ == "__main__":  # not when a helper process started with "spawn" imports this module
    sys.exit(main())
