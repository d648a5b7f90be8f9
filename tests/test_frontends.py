"""Several frontend processes for one cluster (``LocalContainerManager(frontends=2)``): one query port shared
through SO_REUSEPORT, one state, every replica linked to every frontend, metrics summed over the processes. Real
processes and real HTTP; every query opens its own connection, so the kernel spreads them over both frontends."""

import json
import os
import shutil
import signal
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import CollectorRegistry

from clipper_deploy_core import ClipperConnection, ClipperException, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint, deploy_python_closure
from clipper_deploy_core.testing import local_cluster, predict, query, wait_until

from .test_replica_templates import socket_inodes, templates_are, unix_inodes


@pytest.fixture()
def home():
    # Short, so the replicas' Unix sockets fit in sockaddr_un wherever pytest's tmp_path is.
    path = Path(tempfile.mkdtemp(prefix="cd-fe-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def post(conn, app, body):
    return query(conn, app, body, timeout=30)


def metric_lines(conn, prefix):
    text = urllib.request.urlopen(f"http://{conn.get_query_addr()}/metrics", timeout=30).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(prefix)}


def served_by(conn, pid, app):
    """Requests to ``app`` that frontend ``pid`` answered, from its own metrics files alone."""
    only = Path(tempfile.mkdtemp(dir=conn.cm.dir))
    for f in (Path(conn.cm.dir) / "metrics").glob(f"*_{pid}.db"):
        shutil.copy(f, only)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(only))
    value = registry.get_sample_value("clipper_app_requests_total", {"app": app}) or 0
    shutil.rmtree(only)
    return value


def unix_links(pid):
    """How many Unix sockets process ``pid`` holds (a local replica's links to frontends)."""
    return len(socket_inodes(pid) & unix_inodes())


def running(pid):
    """Whether ``pid`` runs (a zombie waiting for a parent that is gone does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def replicas(conn, name):
    return [r for r in conn.get_all_model_replicas(verbose=True) if r["model_name"] == name and r["status"] == "ready"]


def test_two_frontends_share_the_port_and_the_replicas_and_sum_their_metrics(home):
    with local_cluster("fe", home, frontends=2, cache_size=0) as conn:
        pids = conn.cm.info["frontend_pids"]
        assert len(pids) == 2 and pids[0] == conn.cm.info["pid"]
        create_endpoint(conn, "sum", "doubles", lambda xs: [str(sum(x)) for x in xs], num_replicas=2)
        for r in replicas(conn, "sum"):
            assert unix_links(r["pid"]) == 2  # linked to both frontends
        for i in range(60):
            assert predict(conn, "sum", {"input": [1.0, float(i)]})["output"] == 1 + i
        # The kernel spread the connections over both processes, and any of them reports the sum of both.
        per_process = [served_by(conn, pid, "sum") for pid in pids]
        assert all(n > 0 for n in per_process) and sum(per_process) == 60
        for _ in range(4):
            lines = metric_lines(conn, "clipper_app_requests_total")
            assert lines['clipper_app_requests_total{app="sum"}'] == 60
        assert metric_lines(conn, "clipper_model_live_replicas")[
            'clipper_model_live_replicas{model="sum",version="1"}'] == 2


def test_versions_scaling_and_defaults_are_the_same_on_every_frontend(home):
    with local_cluster("fe", home, frontends=2, cache_size=0) as conn:
        create_endpoint(conn, "ver", "doubles", lambda xs: ["1" for _ in xs], version="1")
        deploy_python_closure(conn, "ver", "2", "doubles", lambda xs: ["2" for _ in xs])
        # deploying version 2 made it current: every query after the call returns sees it, on either frontend
        assert {post(conn, "ver", {"input": [1.0]})[1]["output"] for _ in range(30)} == {2}
        conn.set_model_version("ver", "1")
        assert {post(conn, "ver", {"input": [1.0]})[1]["output"] for _ in range(30)} == {1}
        # scaling up links the new replicas to both frontends; scaling down keeps every query answered
        conn.set_num_replicas("ver", 3, "1")
        wait_until(lambda: len(replicas(conn, "ver")) >= 3 and all(
            unix_links(r["pid"]) == 2 for r in replicas(conn, "ver") if r["model_version"] == "1"),
            what="three replicas of version 1 linked to both frontends")
        conn.set_num_replicas("ver", 1, "1")
        answers = [post(conn, "ver", {"input": [1.0]}) for _ in range(30)]
        assert {(status, b["output"], b["default"]) for status, b in answers} == {(200, 1, False)}
        # an app with no model gets its default, with the reason, from every frontend
        conn.register_application("lonely", "doubles", "-1", 100000)
        answers = [post(conn, "lonely", {"input": [1.0]}) for _ in range(20)]
        assert {(s, b["output"], b["default"]) for s, b in answers} == {(200, -1, True)}
        assert all("no model is linked" in b["default_explanation"] for _, b in answers)


def test_a_replica_that_keeps_failing_to_start_is_named_by_every_frontend(home):
    from clipper_deploy_core.bundle import FUNC_NAME

    with local_cluster("fe", home, frontends=2, cache_size=0) as conn:
        create_endpoint(conn, "crashy", "doubles", lambda xs: ["ok"] * len(xs), slo_micros=2_000_000)
        bundle = next((Path(conn.cm.dir) / "bundles").iterdir())
        (bundle / FUNC_NAME).write_bytes(b"tampered")  # every restart now fails verification
        (rep,) = replicas(conn, "crashy")
        os.kill(rep["pid"], signal.SIGKILL)

        def explained_everywhere():
            answers = [post(conn, "crashy", {"input": [1.0]}) for _ in range(12)]
            return all(b["default"] and "fails to start: BundleIntegrityError" in b["default_explanation"]
                       for _, b in answers)

        # the cluster process sees the crash loop; the query worker learns it from the replica view it publishes
        wait_until(explained_everywhere, what="both frontends to explain the crash loop", timeout=60)
        states = metric_lines(conn, "clipper_replica_state")
        assert any('last_error="BundleIntegrityError' in k for k in states)


def test_nothing_is_lost_when_a_replica_or_a_frontend_is_killed_under_load(home):
    with local_cluster("fe", home, frontends=2, cache_size=0) as conn:
        create_endpoint(conn, "sturdy", "doubles", lambda xs: [str(sum(x)) for x in xs], num_replicas=2)
        results, stop = [], threading.Event()

        def load(offset):
            i = 0
            while not stop.is_set() and i < 3000:
                results.append((offset + i, post(conn, "sturdy", {"input": [float(offset), float(i)]})))
                i += 1

        threads = [threading.Thread(target=load, args=(k * 10_000,)) for k in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: len(results) > 50, what="load to start")
        victim = replicas(conn, "sturdy")[0]
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(lambda: any(r["model_replica_id"] == victim["model_replica_id"] and r["pid"] != victim["pid"]
                               and unix_links(r["pid"]) == 2 for r in replicas(conn, "sturdy")),
                   what="the replica to come back, linked to both frontends")
        n = len(results)
        wait_until(lambda: len(results) > n + 50, what="more load after the replica's restart")
        # a scale-down under load: the cluster process drains the replica, which says bye to the query worker
        conn.set_num_replicas("sturdy", 1)
        n = len(results)
        wait_until(lambda: len(results) > n + 50, what="more load after the scale-down")
        stop.set()
        for t in threads:
            t.join()
        # Every query was answered by a model, with its own input's answer: the batches in flight on the killed
        # replica, on both frontends, went to the other replica.
        assert all(status == 200 and not body["default"] and body["output"] == expected
                   for expected, (status, body) in results)


def test_a_killed_query_worker_is_restarted_and_the_replicas_link_to_it_again(home):
    with local_cluster("fe", home, frontends=2, cache_size=0) as conn:
        create_endpoint(conn, "back", "doubles", lambda xs: [str(len(x)) for x in xs])
        (rep,) = replicas(conn, "back")
        status = Path(conn.cm.dir) / "frontends" / "1.json"
        worker = json.loads(status.read_text())["pid"]
        assert worker == conn.cm.info["frontend_pids"][1]
        os.kill(worker, signal.SIGKILL)

        def restarted():
            try:
                return json.loads(status.read_text())["pid"] not in (worker, None)
            except (OSError, ValueError):
                return False

        wait_until(restarted, what="the query worker to be restarted")
        wait_until(lambda: unix_links(rep["pid"]) == 2, what="the replica to link to the new worker")
        new = json.loads(status.read_text())["pid"]
        answers = [post(conn, "back", {"input": [1.0, 2.0]}) for _ in range(40)]
        assert {(s, b["output"], b["default"]) for s, b in answers} == {(200, 2, False)}
        assert served_by(conn, new, "back") > 0  # the new worker serves on the shared port
        assert metric_lines(conn, "clipper_app_requests_total")['clipper_app_requests_total{app="back"}'] == 40


def test_frontends_must_be_a_whole_number_of_at_least_one(home):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ClipperException, match="frontends must be a whole number"):
            LocalContainerManager("fe", home=home, frontends=bad)


def test_the_command_line_starts_several_frontends_and_refuses_a_manager_without_them(home):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", *args], capture_output=True,
                              text=True, env={**os.environ, "CLIPPER_DEPLOY_HOME": str(home)}, timeout=120)

    started = cli("start", "--cluster", "fecli", "--frontends", "3", "--preload", "decimal,fractions",
                  "--query-port", "0", "--admin-port", "0", "--rpc-port", "0")
    assert started.returncode == 0, started.stderr
    try:
        conn = ClipperConnection(LocalContainerManager("fecli", home=home))
        conn.connect()
        assert len(conn.cm.info["frontend_pids"]) == 3
        templates_are(conn.cm.dir, {(), ("decimal", "fractions")})  # --preload reached the cluster
        create_endpoint(conn, "three", "doubles", lambda xs: [str(len(x)) for x in xs])
        (rep,) = replicas(conn, "three")
        assert unix_links(rep["pid"]) == 3
        assert {predict(conn, "three", {"input": [1.0, 2.0, 3.0]})["output"] for _ in range(30)} == {3}
    finally:
        assert cli("stop", "--cluster", "fecli").returncode == 0
    assert not any(running(pid) for pid in conn.cm.info["frontend_pids"])
    refused = cli("start", "--manager", "toy", "--cluster", "toyc", "--frontends", "2")
    assert refused.returncode != 0 and "the toy manager has no --frontends" in refused.stderr


def test_query_workers_exit_when_the_cluster_process_is_killed(home):
    with local_cluster("fe", home, frontends=2) as conn:
        primary, worker = conn.cm.info["frontend_pids"]
        os.kill(primary, signal.SIGKILL)
        wait_until(lambda: not running(worker), what="the query worker to exit with its cluster process")


def test_on_kubernetes_the_cluster_process_refuses_several_frontends(home):
    import subprocess
    import sys

    for mode, why in (("kubernetes", "scale the frontend Deployment"),):
        out = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cluster", "--name", "x", "--home",
                              str(home / mode), "--replicas", mode, "--frontends", "2"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2 and why in out.stderr, out.stderr


def test_the_cache_hit_ratio_is_computed_from_every_frontends_counts(home):
    with local_cluster("fe", home, frontends=2) as conn:  # the prediction cache on (each frontend has its own)
        create_endpoint(conn, "cached", "doubles", lambda xs: [str(len(x)) for x in xs])
        for _ in range(40):
            assert predict(conn, "cached", {"input": [1.0, 2.0]})["output"] == 2
        lines = metric_lines(conn, "clipper_model_cache")
        lookups = lines['clipper_model_cache_lookups_total{model="cached",version="1"}']
        hits = lines['clipper_model_cache_hits_total{model="cached",version="1"}']
        assert lookups == 40 and 38 <= hits <= 39  # one miss per frontend that was reached
        assert lines['clipper_model_cache_hit_ratio{model="cached",version="1"}'] == hits / lookups


def test_the_admin_port_answers_only_once_the_query_workers_are_linked_in(home):
    """A manager deploys as soon as the admin port answers (the Docker manager waits for nothing else). By then the
    query workers must be running and their addresses in every new replica's environment, or replicas deployed at
    once would link to the cluster process only and the workers' queries would wait out their SLO."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        admin_port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "clipper_deploy_core.cluster", "--name", "order", "--home",
                             str(home), "--query-port", "0", "--admin-port", str(admin_port), "--rpc-port", "0",
                             "--frontends", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # polls as fast as it can: the first answer is the moment that matters
            assert proc.poll() is None and time.monotonic() < deadline, "the cluster process did not start"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/admin/ping", timeout=5).read()
                break
            except OSError:
                continue
        worker_log = home / "frontend-1.log"  # the worker says so once it listens for replicas
        assert worker_log.is_file() and "listening" in worker_log.read_text()
        wait_until(lambda: (home / "cluster.json").is_file(), what="cluster.json")
        info = json.loads((home / "cluster.json").read_text())
        assert len(info["frontend_pids"]) == 2 and info["admin"] == f"127.0.0.1:{admin_port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_shared_state_asks_sqlite_for_other_writers_once_a_loop_turn_and_sees_them_the_next(tmp_path):
    """A query reads the state four times or more: with several frontends each read asked SQLite whether another
    process had written (30 µs a query). Now the first read of a turn of the event loop asks, and the rest of that
    turn reads memory; a read in any later turn, or outside a loop, asks again."""
    import asyncio
    import sqlite3

    from clipper_deploy_core.frontend.state import ClusterState

    state = ClusterState(tmp_path / "state.db", shared=True)
    state.add_app("a", "doubles", "d", 100000)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)  # another frontend process's writes
    asked = []
    state._db.set_trace_callback(lambda sql: asked.append(sql) if "data_version" in sql else None)

    async def turns():
        for _ in range(5):  # one turn
            assert state.get_app("a").latency_slo_micros == 100000
        assert len(asked) == 1
        other.execute("UPDATE apps SET latency_slo_micros=7 WHERE name='a'")
        assert state.get_app("a").latency_slo_micros == 100000  # the same turn: the memory it checked
        await asyncio.sleep(0)  # the next turn asks again, and sees the other process's write
        assert state.get_app("a").latency_slo_micros == 7
        assert len(asked) == 2

    asyncio.run(turns())
    other.execute("UPDATE apps SET latency_slo_micros=8 WHERE name='a'")
    asked.clear()
    assert state.get_app("a").latency_slo_micros == 8  # no loop: every read asks
    assert state.get_app("a").latency_slo_micros == 8
    assert len(asked) == 2

    loop = asyncio.new_event_loop()
    seen = []

    def read_and_stop():  # a loop stopped right after a read: its next turn, which forgets the check, never comes
        seen.append(state.get_app("a").latency_slo_micros)
        loop.stop()

    try:
        loop.call_soon(read_and_stop)
        loop.run_forever()
        other.execute("UPDATE apps SET latency_slo_micros=9 WHERE name='a'")
        assert state.get_app("a").latency_slo_micros == 9  # outside it (the same thread) a read still asks
        other.execute("UPDATE apps SET latency_slo_micros=10 WHERE name='a'")
        loop.call_soon(read_and_stop)  # and when it runs again, its first turn forgets the old check first
        loop.run_forever()
        assert seen == [8, 10]
    finally:
        loop.close()
