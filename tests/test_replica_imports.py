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
    # prometheus-client's metrics, counting that query, but not its web servers (frontend.prometheus_package)
    assert "prometheus_client.metrics" in modules
    # ... and those and numpy only once the cluster listens: start_clipper() waits for that, not for them
    before = logged_imports(log[:log.index("cluster listening:")])
    early = sorted(m for m in before if m.split(".")[0] in ("prometheus_client", "numpy"))
    assert not early, f"the cluster process imported {early} before it listened"
    # nor what only a page (importlib.resources) or several frontends use (tempfile is used for a home too deep for
    # the Unix socket's path, as a CI machine's may be)
    unused = sorted(before & {"importlib.resources", "clipper_deploy_core.cluster.query_worker",
                              "clipper_deploy_core.cluster.frontend_processes"})
    assert not unused, f"a cluster with one frontend imported {unused} before it listened"
    web = sorted(m for m in modules if m.split(".")[0] in ("wsgiref",)
                 or m in ("prometheus_client.exposition", "http.server", "urllib.request"))
    assert not web, f"the cluster process imported {web} before anything scraped /metrics"


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
    # What the cluster process imports before serve() delays start_clipper(); prometheus-client's metrics and numpy
    # load in a thread once it listens (frontend.warm_imports), package metadata when asked.
    modules = modules_after("import clipper_deploy_core.cluster.process; "
                            "from clipper_deploy_core.frontend.metrics import Metrics; Metrics().watch_replicas(list)")
    assert "clipper_deploy_core.frontend.http_server" in modules
    early = [m for m in modules if m.split(".")[0] in ("prometheus_client", "numpy", "importlib_metadata")
             or m == "importlib.metadata"]
    assert not early, f"importing the cluster process and creating its metrics imported {early}"


def test_the_cluster_and_its_template_start_without_runpy_and_the_bare_template_before_typing(tmp_path, monkeypatch):
    # Where nothing is precompiled, python -m costs runpy's imports (0.07 s) in each process of a cold start, and the
    # bare template, which the first deploy of a closure waits for, starts only once the cluster has imported
    # early_templates (process_commands).
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    with local_cluster("no-runpy", tmp_path) as conn:
        create_endpoint(conn, "imp", "doubles", lambda xs: [str(len(x)) for x in xs])
        assert predict(conn, "imp", {"input": [1.0]})["output"] == 1
        (rep,) = conn.get_all_model_replicas(verbose=True)
        logs = {"cluster": (conn.cm.dir / "cluster.log").read_text(),
                "template": (Path(rep["log"]).parent / "template.log").read_text()}
    for process, log in logs.items():
        assert "runpy" not in logged_imports(log), f"the {process} process was started through runpy"
    assert "clipper_deploy_core.cluster.process" in logged_imports(logs["cluster"])
    assert "clipper_deploy_core.replica.template" in logged_imports(logs["template"])
    before_template = modules_after("import clipper_deploy_core.cluster.early_templates")
    assert not {"typing", "runpy"} & set(before_template), "the cluster imports typing before its bare template"


# A numpy that, in the cluster process alone, waits for the test to open a FIFO before it imports the real one: the
# cluster's import of numpy then takes as long as the test wants, in a real cluster, with no timing involved.
GATED_NUMPY = """
import importlib, os, sys
here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if b"clipper_deploy_core.cluster" in open("/proc/self/cmdline", "rb").read():
    with open(os.path.join(here, "gate"), "rb") as gate:  # blocks until the test opens the FIFO's other end
        gate.read()
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
del sys.modules["numpy"]
sys.modules["numpy"] = importlib.import_module("numpy")  # the import that ran this file returns the real one
"""


def test_the_frontend_imports_numpy_off_the_deploy_s_path_and_a_batch_waits_for_it_without_blocking_queries(
        tmp_path, monkeypatch):
    # The frontend needs numpy only for a batch of arrays (frontend.warm_imports): the deploy does not wait for it,
    # a single {"input": ...} is forwarded unparsed without it (wire.encode_batch), and a batch that comes before
    # the import is done waits for it in a thread while other queries are served.
    import os
    import threading

    fake = tmp_path / "gated"
    (fake / "numpy").mkdir(parents=True)
    (fake / "numpy" / "__init__.py").write_text(GATED_NUMPY)
    os.mkfifo(fake / "gate")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
    opened, release = threading.Event(), threading.Event()

    def hold_gate():
        with open(fake / "gate", "wb"):  # returns once the cluster's numpy import waits at the other end
            opened.set()
            release.wait(120)  # the import goes on once this end closes

    with local_cluster("gated-numpy", tmp_path / "home") as conn:
        gate = threading.Thread(target=hold_gate, daemon=True)
        gate.start()
        try:
            deployed = threading.Thread(target=create_endpoint, daemon=True,
                                        args=(conn, "imp", "doubles", lambda xs: [str(len(x)) for x in xs]))
            deployed.start()
            deployed.join(60)
            assert not deployed.is_alive(), "the deploy waited for the cluster process's numpy import"
            batch = []
            batched = threading.Thread(target=lambda: batch.append(
                predict(conn, "imp", {"input_batch": [[1.0], [1.0, 2.0, 3.0]]})), daemon=True)
            batched.start()
            assert opened.wait(60), "a batch did not make the cluster process import numpy"
            assert predict(conn, "imp", {"input": [1.0, 2.0]}, timeout=30)["output"] == 2  # while numpy imports
            assert not batch, "the batch was answered before numpy was imported"
            release.set()
            batched.join(60)
            assert [p["output"] for p in batch[0]["batch_predictions"]] == [1, 3]
        finally:
            release.set()  # never leave the cluster's import waiting at the gate: stop_all would wait on it
            if not opened.is_set():  # nothing opened the gate: open it, so that hold_gate ends
                os.close(os.open(fake / "gate", os.O_RDONLY | os.O_NONBLOCK))


def test_the_frontend_s_metrics_leave_prometheus_client_s_web_servers_unimported_yet_the_package_whole():
    # frontend.prometheus_package: the metrics count and render without the package's __init__, whose exposition
    # servers cost a frontend's start 0.35 s without bytecode; the first scrape imports the renderer only.
    code = """
import sys
from clipper_deploy_core.frontend.metrics import Metrics
from clipper_deploy_core.frontend.warm_imports import run
run()
m = Metrics()
m.app("a").requests.inc()
m.model("mlp", "1").batch_size.observe(3)
web = [n for n in ("prometheus_client.exposition", "http.server", "wsgiref", "urllib.request") if n in sys.modules]
text = m.render().decode()
assert 'clipper_app_requests_total{app="a"} 1.0' in text, text
assert 'clipper_model_batch_size_count{model="mlp",version="1"} 1.0' in text, text
scraped = "prometheus_client.exposition" in sys.modules
import prometheus_client  # other code in the process: the whole package, on first use of a name __init__ defines
from prometheus_client import Counter, REGISTRY, generate_latest, start_http_server
from prometheus_client import *  # noqa: F403
assert Counter is prometheus_client.metrics.Counter and "Gauge" in prometheus_client.__all__
assert generate_latest(REGISTRY) is not None and callable(start_http_server)
try:
    prometheus_client.no_such_name
except AttributeError as e:
    missing = str(e)
print(web, scraped, missing)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == \
        "[] True module 'prometheus_client' has no attribute 'no_such_name'", out.stdout


def test_only_a_framework_s_template_reads_package_metadata_and_its_replicas_inherit_the_reader(tmp_path, monkeypatch):
    # plugin.manager reads plugins' distribution names and versions when first asked for, so the bare template (the
    # first deploy of a closure waits for it) does not import the email parser for them; a framework's bundle records
    # the framework's version, which its replica's load checks, so the framework's template imports the parser.
    import toy_models

    from clipper_deploy_core import deploy

    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    with local_cluster("metadata", tmp_path) as conn:
        create_endpoint(conn, "closure", "doubles", lambda xs: [str(len(x)) for x in xs])
        deploy(conn, toy_models.Polynomial([1.0, 2.0]), lambda m, xs: [str(m(x[0])) for x in xs], name="poly")
        assert predict(conn, "poly", {"input": [2.0]})["output"] == 5.0
        assert predict(conn, "closure", {"input": [1.0, 2.0]})["output"] == 2
        replicas = {r["model_name"]: r for r in conn.get_all_model_replicas(verbose=True)}
        template_log = (Path(replicas["poly"]["log"]).parent / "template.log").read_text()
        own = {name: logged_imports(Path(r["log"]).read_text()) for name, r in replicas.items()}
    bare, _, rest = template_log.partition("ready, preloaded []")  # the bare template's imports come before it
    toy, ready, _ = rest.partition("ready, preloaded [toy_models]")  # the toy template's, forked once bare was ready
    assert ready and "email.parser" not in logged_imports(bare)
    assert "email.parser" in logged_imports(toy)
    for name, modules in own.items():
        assert "email.parser" not in modules, f"the {name} replica imported the email parser itself"


def test_start_clipper_warms_the_deploy_path_while_the_cluster_starts_and_returns_on_its_word(tmp_path):
    # Both were on every cold start's path: the admin client's import (0.2 s without bytecode) after the cluster
    # listened, and a ping that waited for the cluster's loop, busy with the imports it starts then. The cluster
    # writes its ready byte once every port listens; only it holds that pipe's other end.
    code = f"""
import json, sys
from clipper_deploy_core.managers.local import manager
from clipper_deploy_core.testing import local_cluster, predict
from clipper_deploy_core.deployers.python import create_endpoint
calls = []
real = manager.request
manager.request = lambda method, url, *a, **k: (calls.append(url), real(method, url, *a, **k))[1]
with local_cluster("word", {str(tmp_path)!r}) as conn:
    during = list(calls)
    from clipper_deploy_core.plugin import get_registry
    # the plugins' versions too, which a deploy records (plugin.manager reads them when first asked for)
    imported = "urllib.request" in sys.modules and all("version" in vars(i) for i in get_registry().infos())
    create_endpoint(conn, "e", "doubles", lambda xs: [str(len(x)) for x in xs])
    answer = predict(conn, "e", {{"input": [1.0, 2.0]}})["output"]
print(json.dumps([during, imported, answer]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [[], True, 2]
