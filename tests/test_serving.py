"""The local cluster end to end: real processes, real HTTP (Clipper's admin checks, without sleeps)."""

import json
import os
import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from clipper_deploy_core import ClipperConnection, ClipperException, LocalContainerManager, UnconnectedException
from clipper_deploy_core.bundle import save_bundle
from clipper_deploy_core.deployers.python import create_endpoint, deploy_python_closure
from clipper_deploy_core.testing import predict, wait_until


def post(conn, path, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{conn.get_query_addr()}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    home = tmp_path_factory.mktemp("clipper-home")
    c = ClipperConnection(LocalContainerManager("serving-test", 0, 0, 0, home=home, max_request_bytes=65536))
    c.start_clipper()
    yield c
    c.stop_all()


def test_calls_before_connect_raise_unconnected(tmp_path):
    with pytest.raises(UnconnectedException):
        ClipperConnection(LocalContainerManager("never", 0, 0, 0, home=tmp_path)).get_all_apps()


def test_a_running_cluster_name_cannot_start_twice_and_connect_finds_it(conn):
    cm = conn.cm
    other = LocalContainerManager("serving-test", 0, 0, 0, home=cm.dir.parent.parent)
    with pytest.raises(ClipperException, match="already running"):
        ClipperConnection(other).start_clipper()
    c2 = ClipperConnection(other)
    c2.connect()
    assert c2.get_query_addr() == conn.get_query_addr()


def test_register_app_and_clipper_admin_messages(conn):
    conn.register_application("testapp", "doubles", "DEFAULT", 3000000)
    assert "testapp" in conn.get_all_apps()
    assert conn.get_app_info("testapp")["latency_slo_micros"] == 3000000
    assert conn.get_app_info("fake-app") is None
    assert conn.get_linked_models("testapp") == []
    with pytest.raises(ClipperException, match="No model with name"):
        conn.link_model_to_app("testapp", "test-model")
    with pytest.raises(ClipperException, match="already exists"):
        conn.register_application("testapp", "doubles", "DEFAULT", 3000000)
    with pytest.raises(ClipperException, match="Invalid application name"):
        conn.register_application("Bad_App", "doubles", "DEFAULT", 3000000)
    with pytest.raises(ClipperException, match="Invalid input_type"):
        conn.register_application("app2", "tensor", "DEFAULT", 3000000)
    conn.register_model("m", "v1", "doubles")
    conn.register_model("m", "v2", "doubles")
    with pytest.raises(ClipperException, match="containerless model"):
        conn.set_num_replicas("m", 5, "v1")
    conn.set_model_version("m", "v1")
    assert conn.get_model_info("m", "v1")["is_current_version"] is True
    with pytest.raises(ClipperException, match="Cannot set non-existent version 'v9' for model with name 'm'"):
        conn.set_model_version("m", "v9")


def test_unlinked_app_answers_with_default_and_reason(conn):
    conn.register_application("app4", "doubles", "DEFAULT", 3000000)
    status, body = post(conn, "/app4/predict", {"input": [99.3, 18.9, 67.2, 34.2]})
    assert status == 200 and body["default"] is True and body["output"] == "DEFAULT"
    assert body["default_explanation"].startswith("No connected models found for query")


def test_float_sums_round_trip_exactly_and_trailing_slash(conn):
    def sum_model(xs):
        return [str(sum(x)) for x in xs]

    conn.register_application("hello-world", "doubles", "-1.0", 3000000)
    deploy_python_closure(conn, "sum-model", 1, "doubles", sum_model)
    conn.link_model_to_app("hello-world", "sum-model")
    status, body = post(conn, "/hello-world/predict/", {"input": [1.1, 2.2, 3.3]})
    assert status == 200 and body["default"] is False
    assert [body["output"]] == [json.loads(o) for o in conn.test_predict_function(
        {"input": [1.1, 2.2, 3.3]}, sum_model, "doubles")]
    status, body = post(conn, "/hello-world/predict", {"input_batch": [[1.1, 2.2, 3.3], [4.4, 5.5, 6.6]]})
    assert [p["output"] for p in body["batch_predictions"]] == [
        json.loads(o) for o in conn.test_predict_function({"input_batch": [[1.1, 2.2, 3.3], [4.4, 5.5, 6.6]]},
                                                          sum_model, "doubles")]
    status, body = post(conn, "/hello-world/predict", {"input": [1, 2]})  # an integer literal is fine
    assert status == 200 and body["output"] == 3.0


def test_version_routing_and_rollback(conn):
    conn.register_application("versioned", "doubles", "DEFAULT", 3000000)
    deploy_python_closure(conn, "testmodel", 1, "doubles", lambda xs: ["1" for _ in xs])
    conn.link_model_to_app("versioned", "testmodel")
    deploy_python_closure(conn, "testmodel", 2, "doubles", lambda xs: ["2" for _ in xs])
    assert post(conn, "/versioned/predict", {"input": [1.0, 2.0, 3.0]})[1]["output"] == 2
    assert post(conn, "/versioned/predict", {"input": [1.0, 2.0, 4.0], "version": "1"})[1]["output"] == 1
    status, body = post(conn, "/versioned/predict", {"input": [1.0], "version": "skjfhkdjshfjksdhkjf"})
    assert status == 400
    assert body["cause"] == "Requested version: skjfhkdjshfjksdhkjf does not exist for model: testmodel"
    conn.set_model_version("testmodel", 1)
    assert conn.get_current_model_version("testmodel") == "1"
    assert post(conn, "/versioned/predict", {"input": [1.0, 2.0, 5.0]})[1]["output"] == 1
    conn.stop_inactive_model_versions(["testmodel"])
    assert [m for m in conn.get_all_models() if m.startswith("testmodel:")] == ["testmodel:1"]


@pytest.mark.parametrize("path,raw,status,cause", [
    ("/hello-world/predict", b"{not json", 400, "Error parsing JSON"),
    ("/hello-world/predict", b"[1, 2]", 400, "exactly one of the keys"),
    ("/hello-world/predict", b'{"inputs": [1.0]}', 400, "exactly one of the keys"),
    ("/hello-world/predict", b'{"input": "1.0"}', 400, "JSON array of numbers"),
    ("/hello-world/predict", b'{"input": [1.0, "x"]}', 400, r"input[1] is str"),
    ("/hello-world/predict", b'{"input": [1.0, true]}', 400, r"input[1] is bool"),
    ("/hello-world/predict", b'{"input": [[1.0], [2.0]]}', 400, r"input[0] is list"),
    ("/hello-world/predict", b'{"input": [1.0, null]}', 400, r"input[1] is NoneType"),
    ("/hello-world/predict", b'{"input_batch": []}', 400, "non-empty"),
    ("/hello-world/predict", b'{"input_batch": [[1.0], "a"]}', 400, "input_batch[1]"),
    ("/no-such-app/predict", b'{"input": [1.0]}', 404, "No application named 'no-such-app'"),
    ("/hello-world/predict", json.dumps({"input": [1.0] * 20000}).encode(), 413, "exceeds the limit of 65536"),
])
def test_malformed_requests_get_a_4xx_naming_the_problem(conn, path, raw, status, cause):
    got_status, body = post(conn, path, None, raw=raw)
    assert got_status == status and "error" in body
    assert cause in body["cause"]


def test_model_errors_and_slo_misses_are_told_apart(conn):
    def boom(xs):
        raise ValueError("weights are corrupt")

    def slow(xs):
        time.sleep(0.5)
        return ["late" for _ in xs]

    def wrong_count(xs):
        return ["one too many"] * (len(xs) + 1)

    create_endpoint(conn, "raises", "doubles", boom)
    create_endpoint(conn, "sleepy", "doubles", slow, slo_micros=100000)
    create_endpoint(conn, "miscount", "doubles", wrong_count)
    body = post(conn, "/raises/predict", {"input": [1.0]})[1]
    assert body["default"] is True and "ValueError: weights are corrupt" in body["default_explanation"]
    body = post(conn, "/sleepy/predict", {"input": [2.0]})[1]
    assert body["default"] is True and "latency SLO" in body["default_explanation"]
    body = post(conn, "/miscount/predict", {"input": [1.0]})[1]
    assert body["default"] is True and "Expected model to return 1 outputs, found 2" in body["default_explanation"]


def test_fixed_batch_size_model_sees_batches_of_nine(conn):
    def batch_size_model(xs):
        time.sleep(0.05)
        return [str(len(xs)) for _ in xs]

    create_endpoint(conn, "batchy", "doubles", batch_size_model, batch_size=9, slo_micros=30000000)
    batch = [[float(x) + j * 0.001 for x in range(5)] for j in range(450)]
    preds = post(conn, "/batchy/predict", {"input_batch": batch})[1]["batch_predictions"]
    assert len(preds) == 450
    assert all(not p["default"] for p in preds)
    assert sum(1 for p in preds if p["output"] == 9) >= 315


def test_replica_counts_are_exact_after_scaling_and_stopping(conn):
    create_endpoint(conn, "scaled", "doubles", lambda xs: [str(len(x)) for x in xs], num_replicas=2)
    assert conn.get_num_replicas("scaled") == 2
    conn.set_num_replicas("scaled", 4)
    assert conn.get_num_replicas("scaled") == 4
    conn.set_num_replicas("scaled", 1)
    assert conn.get_num_replicas("scaled") == 1
    assert post(conn, "/scaled/predict", {"input": [101.1, 99.9]})[1]["output"] == 2
    conn.set_num_replicas("scaled", 0)
    assert conn.get_num_replicas("scaled") == 0
    body = post(conn, "/scaled/predict", {"input": [101.1]})[1]
    assert body["default"] is True and "no live replica" in body["default_explanation"]


def test_a_replica_that_cannot_load_fails_the_deploy_with_its_traceback(conn, tmp_path):
    bundle = save_bundle(tmp_path / "b", name="unloadable", version=1, input_type="doubles",
                         func=lambda xs: [str(x) for x in xs])
    (bundle / "func.pkl").write_bytes(b"tampered")
    with pytest.raises(ClipperException) as e:
        conn.build_and_deploy_model("unloadable", 1, "doubles", str(bundle), "img")
    assert "BundleIntegrityError" in str(e.value) or "integrity" in str(e.value)


def test_a_replica_crash_at_load_reports_its_own_traceback(conn, tmp_path, monkeypatch):
    (tmp_path / "parent_only.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import parent_only

    thing = parent_only.Thing()
    bundle = save_bundle(tmp_path / "b", name="crashy", version=1, input_type="doubles",
                         func=lambda xs: [str(thing) for _ in xs])
    started = time.monotonic()
    with pytest.raises(ClipperException) as e:
        conn.build_and_deploy_model("crashy", 1, "doubles", str(bundle), "img")
    assert time.monotonic() - started < 30
    assert "failed to load its model" in str(e.value)
    assert "ModuleNotFoundError: No module named 'parent_only'" in str(e.value)
    assert conn.get_model_info("crashy", 1) is None


class ExitsWhenUnpickled:
    """Unpickled in the replica, it ends the process at once, with no output at all."""

    def __reduce__(self):
        import os

        return os._exit, (3,)


def test_a_replica_that_exits_before_printing_anything_is_reported_with_its_exit_code(conn, tmp_path):
    silent = ExitsWhenUnpickled()
    bundle = save_bundle(tmp_path / "b", name="silent", version=1, input_type="doubles",
                         func=lambda xs: [str(silent) for _ in xs])
    with pytest.raises(ClipperException) as e:
        conn.build_and_deploy_model("silent", 1, "doubles", str(bundle), "img")
    assert "failed to load its model" in str(e.value)
    assert "(none: the replica exited with code 3)" in str(e.value)


def test_on_a_local_cluster_the_first_replica_is_the_load_check_and_a_failure_leaves_nothing(
        conn, tmp_path, monkeypatch):
    """deploy() skips its fresh-process check where replicas load locally: the replica's traceback fails the
    deploy, and create_endpoint registers its app only once the replica serves."""
    import clipper_deploy_core.bundle.check as check

    checks, real_check = [], check.run_check
    monkeypatch.setattr(check, "run_check", lambda *a, **kw: checks.append(a) or real_check(*a, **kw))
    (tmp_path / "parent_only2.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import parent_only2

    thing = parent_only2.Thing()
    with pytest.raises(ClipperException) as e:
        create_endpoint(conn, "loadcheck", "doubles", lambda xs: [str(thing) for _ in xs])
    assert "failed to load its model" in str(e.value)
    assert "ModuleNotFoundError: No module named 'parent_only2'" in str(e.value)
    assert conn.get_app_info("loadcheck") is None and conn.get_model_info("loadcheck", 1) is None
    create_endpoint(conn, "loadcheck", "doubles", lambda xs: [str(len(x)) for x in xs])
    assert post(conn, "/loadcheck/predict", {"input": [1.0, 2.0]})[1]["output"] == 2
    assert checks == []  # the fresh-process check never ran
    from clipper_deploy_core import deploy

    deploy(conn, None, lambda xs: [str(len(x)) for x in xs], name="sampled", sample_inputs=[[1.0]])
    assert len(checks) == 1  # sample inputs still get it: their outputs are the deploy's result


def test_kill_9_a_replica_under_load_every_query_is_answered(conn):
    create_endpoint(conn, "sturdy", "doubles", lambda xs: [str(sum(x)) for x in xs], num_replicas=2)
    results, stop = [], threading.Event()

    def load(offset):
        i = 0
        while not stop.is_set() and i < 2000:
            results.append(post(conn, "/sturdy/predict", {"input": [float(offset), float(i)]}))
            i += 1

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(results) > 50, what="load to start")
    victim = next(r for r in conn.get_all_model_replicas(verbose=True) if r["model_name"] == "sturdy")
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: any(r["model_name"] == "sturdy" and r["model_replica_id"] == victim["model_replica_id"]
                           and r["status"] == "ready" and r["pid"] != victim["pid"]
                           for r in conn.get_all_model_replicas(verbose=True)), what="the replica to come back")
    n = len(results)
    wait_until(lambda: len(results) > n + 50, what="more load after the restart")
    stop.set()
    for t in threads:
        t.join()
    assert all(status == 200 for status, _ in results)
    # The batch in flight on the killed replica went to the other one: no query got the default.
    assert [b for _, b in results if b["default"]] == []


def test_a_query_that_kills_replicas_is_retried_once_then_answered_with_the_reason(conn):
    def poison(xs):
        import os

        if any(x[0] == 666.0 for x in xs):
            os._exit(7)
        return [str(x[0]) for x in xs]

    conn.register_application("poison", "doubles", "none", 30_000_000)
    deploy_python_closure(conn, "poison", 1, "doubles", poison, num_replicas=2, batch_size=1)
    conn.link_model_to_app("poison", "poison")
    status, body = post(conn, "/poison/predict", {"input": [666.0]})
    assert status == 200 and body["default"] and "two replicas died" in body["default_explanation"]
    wait_until(lambda: sum(r["status"] == "ready" for r in conn.get_all_model_replicas(verbose=True)
                           if r["model_name"] == "poison") == 2, what="both replicas back")
    assert post(conn, "/poison/predict", {"input": [5.0]})[1]["output"] == 5.0


def test_metrics_and_inspect_instance(conn):
    post(conn, "/hello-world/predict", {"input": [7.0, 8.0]})
    metrics = conn.inspect_instance()
    assert any(s["labels"].get("app") == "hello-world" for s in metrics["clipper_app_requests_total"])
    assert "clipper_model_batch_size_bucket" in metrics and "clipper_model_live_replicas" in metrics
    assert conn.get_metric_addr() == conn.get_query_addr()
    assert conn.get_clipper_logs(str(conn.cm.dir.parent / "logs-out"))


def test_cluster_restart_restores_apps_models_and_replicas(tmp_path):
    cm = LocalContainerManager("phoenix", 0, 0, 0, home=tmp_path)
    c = ClipperConnection(cm)
    c.start_clipper()
    try:
        create_endpoint(c, "phoenix-app", "doubles", lambda xs: [str(len(x)) for x in xs])
        assert post(c, "/phoenix-app/predict", {"input": [1.0, 2.0]})[1]["output"] == 2
        os.kill(cm.info["pid"], signal.SIGKILL)
        wait_until(lambda: cm._read_info() is None, what="the cluster to die")
        c2 = ClipperConnection(LocalContainerManager("phoenix", 0, 0, 0, home=tmp_path))
        c2.start_clipper()
        wait_until(lambda: post(c2, "/phoenix-app/predict", {"input": [3.0, 4.0, 5.0]})[1].get("output") == 3,
                   what="the app to answer after restart")
        assert c2.get_num_replicas("phoenix-app") == 1
        c = c2
        pids = [c.cm.info["pid"]] + [r["pid"] for r in c.get_all_model_replicas(verbose=True)]
    finally:
        c.stop_all()
    assert not (tmp_path / "clusters" / "phoenix").exists()
    for pid in pids:  # stop_all leaves no process behind
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_pkgs_to_install_runs_the_replica_in_a_cached_venv(tmp_path, monkeypatch):
    """Installs a small pure-Python package from the package index into a per-package-set venv."""
    monkeypatch.setenv("CLIPPER_DEPLOY_HOME", str(tmp_path))
    c = ClipperConnection(LocalContainerManager("pkgs", 0, 0, 0, home=tmp_path))
    c.start_clipper()
    try:
        def uses_tabulate(xs):
            import tabulate  # not installed in the test environment: only pkgs_to_install brings it

            return [tabulate.tabulate([[len(x)]], tablefmt="plain") for x in xs]

        with pytest.raises(ModuleNotFoundError):
            import tabulate  # noqa: F401
        create_endpoint(c, "tabular", "doubles", uses_tabulate, pkgs_to_install=["tabulate==0.9.0"])
        assert post(c, "/tabular/predict", {"input": [1.0, 2.0, 3.0]})[1]["output"] == 3
        envs = [p for p in (tmp_path / "envs").iterdir() if p.is_dir()]
        assert len(envs) == 1 and (envs[0] / ".complete").exists()
        deploy_python_closure(c, "tabular", 2, "doubles", uses_tabulate, pkgs_to_install=["tabulate==0.9.0"])
        assert len([p for p in (tmp_path / "envs").iterdir() if p.is_dir()]) == 1  # reused, not rebuilt
        with pytest.raises(ClipperException, match="pip install no-such-package-clipper-xyz failed"):
            deploy_python_closure(c, "tabular", 3, "doubles", uses_tabulate,
                                  pkgs_to_install=["no-such-package-clipper-xyz"])
    finally:
        c.stop_all()


def test_set_num_replicas_scales_live_without_dropping_queries(conn):
    def slowish(xs):
        time.sleep(0.005)
        return [str(sum(x)) for x in xs]

    create_endpoint(conn, "elastic", "doubles", slowish, slo_micros=20000000)
    results, stop = [], threading.Event()

    def load(offset):
        i = 0
        while not stop.is_set() and i < 5000:
            results.append(post(conn, "/elastic/predict", {"input": [float(offset), float(i)]})[1])
            i += 1

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        for n in (3, 1, 2, 1):
            before = len(results)
            conn.set_num_replicas("elastic", n)
            assert conn.get_num_replicas("elastic") == n
            wait_until(lambda b=before: len(results) > b + 20, what="queries to keep flowing")
    finally:
        stop.set()
        for t in threads:
            t.join()
    defaults = [r for r in results if r["default"]]
    assert not defaults, f"{len(defaults)} of {len(results)} queries got defaults, e.g. {defaults[:1]}"


UNPARSED_BAD = [  # bodies with exactly two quotes: the frontend forwards them unparsed to the replica
    (b'{"input": [1.0, true]}', "input[1] is bool"),
    (b'{"input": [1.0,]}', "Error parsing JSON"),
    (b'{"input": []}', "non-empty JSON array"),
    (b'{"input": [[1.0], [2.0]]}', "input[0] is list"),
    (b'{"input": [1.0]} trailing', "Error parsing JSON"),
    (b'{"input": [1.0, null]}', "input[1] is NoneType"),
]


@pytest.mark.parametrize("raw,cause", UNPARSED_BAD)
@pytest.mark.parametrize("app", ["hello-world", "app4"])  # served by a replica, and unlinked
def test_bodies_forwarded_unparsed_still_get_a_400(conn, app, raw, cause):
    status, body = post(conn, f"/{app}/predict", None, raw=raw)
    assert status == 400 and body["error"] == "Json error" and cause in body["cause"]


def test_unparsed_and_parsed_queries_share_batches_correctly(conn):
    create_endpoint(conn, "mixed", "doubles", lambda xs: [repr(float(sum(x))) for x in xs], slo_micros=10_000_000)

    def single(i):
        return post(conn, "/mixed/predict", {"input": [float(i), 0.5]})[1]["output"] == i + 0.5

    def batch(i):
        body = {"input_batch": [[float(i)], [float(i), 1.0, 2.0]]}
        return [p["output"] for p in post(conn, "/mixed/predict", body)[1]["batch_predictions"]] == [i, i + 3.0]

    def bad(i):
        status, _ = post(conn, "/mixed/predict", None, raw=b'{"input": [1.0, false]}')
        return status == 400

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda i: (single, batch, bad)[i % 3](i), range(300)))
    assert all(results)


@pytest.mark.parametrize("busy", ["query", "admin"])
def test_a_port_in_use_fails_start_clipper_with_the_port_named(tmp_path, busy):
    import socket

    from clipper_deploy_core import ClipperConnection, LocalContainerManager

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"query": (port, 0), "admin": (0, port)}[busy]
        conn = ClipperConnection(LocalContainerManager("busy", *ports, 0, home=tmp_path))
        with pytest.raises(ClipperException) as e:
            conn.start_clipper()
    assert f"The {busy} port cannot listen on 127.0.0.1:{port}: Address already in use" in str(e.value)
    assert "Traceback" not in str(e.value)


def test_the_cluster_process_says_on_its_ready_pipe_once_it_listens(tmp_path):
    # start_clipper() waits on this pipe, not on a poll: it returns as soon as the cluster listens.
    import json
    import os
    import select
    import subprocess
    import sys
    import urllib.request

    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "clipper_deploy_core.cluster", "--name", "x", "--home",
                             str(tmp_path), "--query-port", "0", "--admin-port", "0", "--rpc-port", "0",
                             "--ready-fd", str(w)], pass_fds=(w,), env={**os.environ, "CLIPPER_ADMIN_TOKEN": "t"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        assert select.select([r], [], [], 60)[0], "no word on the ready pipe within 60 s"
        assert os.read(r, 1) == b"1"
        info = json.loads((tmp_path / "cluster.json").read_text())  # written before the word
        assert urllib.request.urlopen(f"http://{info['admin']}/admin/ping", timeout=10).status == 200
        assert os.read(r, 1) == b""  # and the pipe closed: nothing else is ever written there
    finally:
        os.close(r)
        proc.terminate()
        proc.wait(30)


def test_the_cluster_s_help_starts_no_replica_template_and_writes_nothing_where_it_runs(tmp_path):
    # The bare template starts before the arguments are parsed (cluster.early_templates), so only a command line that
    # names the cluster's home starts one: --help, or one argparse refuses, leaves no template and no logs/.
    import subprocess
    import sys

    for argv in (["--help"], ["--name", "x"]):
        proc = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cluster", *argv], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == (0 if argv == ["--help"] else 2), proc.stderr
        assert list(tmp_path.iterdir()) == [], f"{argv} left {list(tmp_path.iterdir())}"


def test_a_hand_written_preload_that_is_not_module_names_is_refused_by_the_cluster_process(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cluster", "--name", "x", "--home",
                           str(tmp_path), "--query-port", "0", "--admin-port", "0", "--rpc-port", "0",
                           "--preload", "torch,os;rm -rf"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--preload must be a list of module names" in proc.stderr and "Traceback" not in proc.stderr


def test_a_killed_replica_restarts_at_once_and_one_that_keeps_dying_backs_off(conn):
    create_endpoint(conn, "phoenix", "doubles", lambda xs: [str(len(x)) for x in xs])
    waits = []
    for _ in range(3):
        (rep,) = [r for r in conn.get_all_model_replicas(verbose=True) if r["model_name"] == "phoenix"]
        os.kill(rep["pid"], signal.SIGKILL)
        wait_until(lambda pid=rep["pid"]: any(r["model_name"] == "phoenix" and r["status"] == "ready"
                                              and r["pid"] != pid for r in conn.get_all_model_replicas(verbose=True)),
                   what="the replica to come back")
        waits = [float(w) for w in re.findall(r"restarting in ([0-9.]+)s", Path(rep["log"]).read_text())]
    assert waits == [0.0, 0.2, 0.4]
    assert predict(conn, "phoenix", {"input": [1.0, 2.0]})["output"] == 2
