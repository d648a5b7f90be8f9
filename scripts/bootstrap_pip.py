"""Put pip into a virtual environment made without it, from pip's wheel on the package index.

Debian's and Ubuntu's python3 lack ``ensurepip`` unless python3-venv is installed, and refuse ``pip install`` into
the system interpreter (PEP 668). ``python3 -m venv --without-pip`` still works there; this adds pip to that venv.
Run it with the venv's python. Uses only the standard library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/").removesuffix("/simple")


def main() -> int:
    meta = f"{INDEX}/pypi/pip/json"
    with urllib.request.urlopen(meta, timeout=60) as r:
        files = json.load(r)["urls"]
    wheel = next(f for f in files if f["filename"].endswith(".whl"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, wheel["filename"])
        urllib.request.urlretrieve(urllib.parse.urljoin(meta, wheel["url"]), path)  # mirrors give relative URLs
        # pip runs from its own wheel (a zip on sys.path) to install itself.
        return subprocess.call([sys.executable, f"{path}/pip", "install", "-q", "--no-index", path])


if __name__ == "__main__":
    sys.exit(main())
