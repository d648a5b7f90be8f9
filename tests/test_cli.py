"""The clipper-deploy command against a real local cluster."""

import os
import subprocess
import sys

from clipper_deploy_core import ClipperConnection, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint


def cli(*args, home):
    return subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "CLIPPER_DEPLOY_HOME": str(home)}, timeout=120)


def test_start_status_stop(tmp_path):
    started = cli("start", "--cluster", "cli-test", "--query-port", "0", "--admin-port", "0", "--rpc-port", "0",
                  home=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        conn = ClipperConnection(LocalContainerManager("cli-test", home=tmp_path))
        conn.connect()
        create_endpoint(conn, "cli-app", "doubles", lambda xs: [str(len(x)) for x in xs])
        status = cli("status", "--cluster", "cli-test", home=tmp_path)
        assert status.returncode == 0, status.stderr
        line = next(ln for ln in status.stdout.splitlines() if ln.startswith("cli-app"))
        assert line.split() == ["cli-app", "doubles", "cli-app", "1", "1/1"]
    finally:
        stopped = cli("stop", "--cluster", "cli-test", home=tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    missing = cli("status", "--cluster", "cli-test", home=tmp_path)
    assert missing.returncode == 1 and "No running cluster named 'cli-test'" in missing.stderr
