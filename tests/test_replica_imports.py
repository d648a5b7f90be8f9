"""Each process imports only what it uses. A replica: never a manager, the frontend, docker, kubernetes,
prometheus_client or uvicorn. Checked on a real replica process, from Python's own import log (the replica's,
and its template's: a replica forked from a template inherits what the template imported). The cluster process
and the user's script: nothing before it is needed, since their imports are the start of every cold start."""

import json
import re
import subprocess
import sys
from pathlib import Path

from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.testing import local_cluster, predict

FORBIDDEN = ("clipper_deploy_core.managers", "clipper_deploy_core.frontend", "clipper_deploy_core.cluster",
             "docker", "kubernetes", "prometheus_client", "uvicorn",
             "asyncio", "http.server")  # the frontend's side of the wire; the health port only when asked for


def logged_imports(log):
    """The modules a process imported, from the log ``PYTHONPROFILEIMPORTTIME`` made it write."""
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", log, re.M))


def modules_after(statements):
    """``sys.modules`` of a fresh interpreter once it has run ``statements``."""
    code = f"import sys, json; {statements}; print(json.dumps(sorted(sys.modules)))"
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_a_replica_never_imports_the_serving_side(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # every process of the cluster logs each import to stderr
    with local_cluster("imports", tmp_path) as conn:
        create_endpoint(conn, "imp", "doubles", lambda xs: [str(len(x)) for x in xs])
        assert predict(conn, "imp", {"input": [1.0]})["output"] == 1
        (rep,) = conn.get_all_model_replicas(verbose=True)
        log = Path(rep["log"]).read_text()
        template_log = Path(rep["log"]).parent / "template.log"  # what a replica forked from a template inherited
        log += template_log.read_text() if template_log.exists() else ""
    modules = logged_imports(log)
    assert "clipper_deploy_core.replica" in modules and "clipper_deploy_core.bundle.reader" in modules
    loaded = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not loaded, f"the replica imported {loaded}"


def test_the_cluster_process_never_imports_an_unpickler_or_uvicorn(tmp_path, monkeypatch):
    # The frontend never unpickles a bundle: it verifies bundles (bundle.verify) without importing the loader.
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    with local_cluster("cluster-imports", tmp_path) as conn:
        create_endpoint(conn, "imp", "doubles", lambda xs: [str(len(x)) for x in xs])
        assert predict(conn, "imp", {"input": [1.0]})["output"] == 1
        conn.get_all_model_replicas(verbose=True)
        log = (conn.cm.dir / "cluster.log").read_text()
    modules = logged_imports(log)
    assert "clipper_deploy_core.frontend.http_server" in modules and "clipper_deploy_core.bundle.verify" in modules
    # multiprocessing only parses large bodies (frontend.offload): a start without them does not import it
    loaded = sorted(m for m in modules if m.split(".")[0] in ("cloudpickle", "uvicorn", "click", "multiprocessing")
                    or m in ("clipper_deploy_core.bundle.reader", "clipper_deploy_core.bundle.writer"))
    assert not loaded, f"the cluster process imported {loaded}"


def test_a_script_that_imports_the_connection_manager_and_deployer_starts_the_cluster_before_heavy_imports():
    # start_clipper() starts the cluster process: what the script imports before it is on every cold start's path.
    # The bundle writer, the plugin registry, cloudpickle and urllib load when first used, beside the cluster's start.
    modules = modules_after("from clipper_deploy_core import ClipperConnection, LocalContainerManager; "
                            "from clipper_deploy_core.deployers.python import create_endpoint; "
                            "from clipper_deploy_core import deploy")
    assert "clipper_deploy_core.managers.local.manager" in modules
    early = [m for m in modules if m.split(".")[0] in ("cloudpickle", "pluggy", "numpy")
             or m in ("urllib.request", "clipper_deploy_core.bundle.writer", "clipper_deploy_core.bundle.check",
                      "clipper_deploy_core.plugin")]
    assert not early, f"importing ClipperConnection, LocalContainerManager and a deployer imported {early}"


def test_the_cluster_process_opens_its_ports_before_it_imports_metrics_numpy_or_package_metadata():
    # What the cluster process imports before serve() delays start_clipper(); prometheus-client (its web-server
    # half included) and numpy load in a thread once it runs (frontend.warm_imports), package metadata when asked.
    modules = modules_after("import clipper_deploy_core.cluster.process; "
                            "from clipper_deploy_core.frontend.metrics import Metrics; Metrics().watch_replicas(list)")
    assert "clipper_deploy_core.frontend.http_server" in modules
    early = [m for m in modules if m.split(".")[0] in ("prometheus_client", "numpy", "importlib_metadata")
             or m == "importlib.metadata"]
    assert not early, f"importing the cluster process and creating its metrics imported {early}"
