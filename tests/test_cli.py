"""The clipper-deploy command against a real local cluster."""

import json
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
        apps = cli("apps", "--cluster", "cli-test", home=tmp_path).stdout
        assert next(ln for ln in apps.splitlines() if ln.startswith("cli-app")).split() == [
            "cli-app", "doubles", "3000000", "None", "cli-app", "default"]
        models = cli("models", "--cluster", "cli-test", home=tmp_path).stdout
        assert next(ln for ln in models.splitlines() if ln.startswith("cli-app")).split()[:5] == [
            "cli-app", "1", "*", "doubles", "-1"]
        replicas = cli("replicas", "--cluster", "cli-test", home=tmp_path).stdout
        assert next(ln for ln in replicas.splitlines() if ln.startswith("cli-app")).split()[:4] == [
            "cli-app", "1", "0", "ready"]
        pred = cli("predict", "--cluster", "cli-test", "cli-app", "[1.0, 2.0, 3.0]", home=tmp_path)
        assert pred.returncode == 0 and json.loads(pred.stdout)["output"] == 3
        batch = cli("predict", "--cluster", "cli-test", "--batch", "cli-app", "[[1.0], [1.0, 2.0]]", home=tmp_path)
        assert [p["output"] for p in json.loads(batch.stdout)["batch_predictions"]] == [1, 2]
        bad = cli("predict", "--cluster", "cli-test", "cli-app", '["x"]', home=tmp_path)
        assert bad.returncode == 1 and "input[0] is str" in bad.stdout
        logs = cli("logs", "--cluster", "cli-test", "--dir", str(tmp_path / "out"), home=tmp_path)
        assert logs.returncode == 0 and any(p.endswith("cluster.log") for p in logs.stdout.split())
    finally:
        stopped = cli("stop", "--cluster", "cli-test", home=tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    missing = cli("status", "--cluster", "cli-test", home=tmp_path)
    assert missing.returncode == 1 and "No running cluster named 'cli-test'" in missing.stderr


def test_a_command_that_needs_an_extra_names_it():
    import pytest

    from clipper_deploy_core import ClipperException
    from clipper_deploy_core.cli import _require

    with pytest.raises(ClipperException,
                       match=r"needs the 'no_such_module_xyz' package: pip install 'clipper-deploy-core\[kube\]'"):
        _require("no_such_module_xyz", "kube")
    _require("json", "none")  # present: no error
