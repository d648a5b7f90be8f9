"""``python -m clipper_deploy_core.cluster``: the cluster process (see :mod:`.process`)."""

import sys

from .process import main

sys.exit(main())
