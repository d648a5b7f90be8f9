"""``python -m clipper_deploy_core.replica.probe [live|ready]``: exit 0 when the replica in this
container answers its health endpoint with 200 (a Docker ``HEALTHCHECK`` command)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from .health import DEFAULT_PORT_FILE


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "ready"
    port = os.environ.get("CLIPPER_HEALTH_PORT", "0")
    if port == "0":
        try:
            with open(os.environ.get("CLIPPER_HEALTH_PORT_FILE", DEFAULT_PORT_FILE)) as f:
                port = f.read().strip()
        except OSError:
            print("no health port yet (the replica is starting)")
            return 1
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/{which}", timeout=5) as r:
            print(r.read().decode())
            return 0
    except (urllib.error.URLError, OSError) as e:
        print(f"health/{which}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
