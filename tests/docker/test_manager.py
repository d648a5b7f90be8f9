"""DockerContainerManager against a real engine: the frontend and every replica are containers.

The module's cluster uses the default bridge network (ports published on 127.0.0.1); the last
test runs a second cluster on the host's network and stops both with stop_all().
"""

import functools
import json
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from clipper_deploy_core import ClipperConnection, ClipperException, DockerContainerManager
from clipper_deploy_core.bundle import save_bundle
from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.managers.docker import labels as lb
from clipper_deploy_core.testing import query, wait_until

from .conftest import TEST_LABEL

CLUSTER = "dtest"


wait_until = functools.partial(wait_until, timeout=120)  # containers and images take longer


def containers(docker_client, cluster, role=None, model=None):
    found = docker_client.containers.list(filters=lb.cluster_filter(cluster, role))
    return [c for c in found if model is None or c.labels.get(lb.MODEL) == model]


@pytest.fixture(scope="module")
def conn(docker_client, core_image, torch_image):
    cm = DockerContainerManager(CLUSTER, clipper_query_port=0, clipper_management_port=0,
                                docker_network="clipper-deploy-test-net", extra_container_kwargs={"labels": TEST_LABEL})
    c = ClipperConnection(cm)
    c.start_clipper()
    yield c
    c.stop_all()


def test_the_frontend_runs_in_a_labelled_container_with_ports_on_loopback(conn, docker_client):
    (frontend,) = containers(docker_client, CLUSTER, "frontend")
    assert frontend.labels["ai.clipper-deploy.test"] == "1"  # extra_container_kwargs reach the frontend
    published = frontend.attrs["NetworkSettings"]["Ports"]
    assert {p[0]["HostIp"] for p in published.values() if p} == {"127.0.0.1"}
    assert frontend.attrs["HostConfig"]["NetworkMode"] == "clipper-deploy-test-net"
    with pytest.raises(ClipperException, match="already running"):
        DockerContainerManager(CLUSTER).start_clipper()


def test_a_closure_is_served_from_its_own_image(conn, docker_client):
    create_endpoint(conn, "dsum", "doubles", lambda xs: [str(sum(x)) for x in xs])
    status, reply = query(conn, "dsum", {"input": [1.0, 2.5]})
    assert status == 200 and reply["output"] == 3.5 and not reply["default"]
    (replica,) = containers(docker_client, CLUSTER, "replica", "dsum:1")
    assert replica.image.tags == [f"{CLUSTER}-dsum:1"]  # Clipper's tag: <cluster>-<name>:<version>
    assert replica.labels["ai.clipper-deploy.test"] == "1"
    wait_until(lambda: replica.reload() or replica.attrs["State"]["Health"]["Status"] == "healthy", "healthy")


def test_a_second_model_takes_the_traffic_under_a_policy_and_the_cache_answers_repeats(conn):
    """The selection layer and the prediction cache live in the frontend container, as they do locally."""
    from clipper_deploy_core.deployers.python import deploy_python_closure

    create_endpoint(conn, "dpol", "doubles", lambda xs: [f"blue:{sum(x)}" for x in xs])
    deploy_python_closure(conn, "dpol-green", "1", "doubles", lambda xs: [f"green:{sum(x)}" for x in xs])
    conn.link_model_to_app("dpol", "dpol-green")
    assert query(conn, "dpol", {"input": [1.0]})[1]["output"] == "blue:1.0"
    conn.set_selection_policy("dpol", "weighted", weights={"dpol-green": 100})
    status, reply = query(conn, "dpol", {"input": [1.0], "uid": "u1"})
    assert status == 200 and (reply["output"], reply["model"]) == ("green:1.0", "dpol-green:1")
    assert query(conn, "dpol", {"input": [1.0], "uid": "u1"})[1]["output"] == "green:1.0"
    hits = [s["value"] for s in conn.inspect_instance()["clipper_model_cache_hits_total"]
            if s["labels"]["model"] == "dpol-green"]
    assert hits == [1.0]
    # the dashboard on the frontend container's admin port, its charting library from the image's own plotly
    base = f"http://{conn.cm.get_admin_addr()}/dashboard"
    data = json.loads(urllib.request.urlopen(f"{base}/data", timeout=10).read())
    assert "dpol" in [a["name"] for a in data["apps"]] and data["series"]["apps"]["dpol"]["requests"] >= 3
    assert len(urllib.request.urlopen(f"{base}/assets/plotly.min.js", timeout=10).read()) > 1_000_000


def test_a_trained_pytorch_model_is_served_from_its_image(conn, docker_client, torch_image):
    import torch
    from clipper_deploy_pytorch import deploy_pytorch_model

    torch.manual_seed(0)
    x = torch.randn(256, 3)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.25
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    model.eval()

    def predict(m, xs):
        import numpy as np

        with torch.no_grad():
            out = m(torch.as_tensor(np.stack(xs), dtype=torch.float32))
        return [f"{v:.4f}" for v in out[:, 0].tolist()]

    conn.register_application("dlin", "doubles", "none", 5_000_000)
    deploy_pytorch_model(conn, "dlin", 1, "doubles", predict, model)
    conn.link_model_to_app("dlin", "dlin")
    inputs = [[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]]
    expected = predict(model, inputs)
    for inp, want in zip(inputs, expected, strict=True):
        status, reply = query(conn, "dlin", {"input": inp})
        assert status == 200 and not reply["default"], reply
        assert f"{reply['output']:.4f}" == want
    assert abs(float(expected[0]) - (1.5 - 4.0 + 1.5 + 0.25)) < 0.05  # it learned
    (replica,) = containers(docker_client, CLUSTER, "replica", "dlin:1")
    # FROM the pytorch plugin's base image (which has torch), not the core one
    assert docker_client.images.get(torch_image[0].tag).id in [h["Id"] for h in replica.image.history()]


def test_scale_to_two_replicas_and_back(conn, docker_client):
    create_endpoint(conn, "dscale", "doubles", lambda xs: [str(len(x)) for x in xs])
    conn.set_num_replicas("dscale", 2)
    assert conn.cm.get_num_replicas("dscale", "1") == 2
    assert len(containers(docker_client, CLUSTER, "replica", "dscale:1")) == 2
    assert query(conn, "dscale", {"input": [1.0, 2.0]})[1]["output"] == 2
    conn.set_num_replicas("dscale", 1)
    assert conn.cm.get_num_replicas("dscale", "1") == 1
    wait_until(lambda: len(containers(docker_client, CLUSTER, "replica", "dscale:1")) == 1, "one container")


def test_a_killed_replica_container_is_replaced_without_losing_a_query(conn, docker_client):
    create_endpoint(conn, "dsturdy", "doubles", lambda xs: [str(sum(x)) for x in xs], num_replicas=2)
    results, stop = [], threading.Event()

    def load(offset):
        while not stop.is_set():
            results.append(query(conn, "dsturdy", {"input": [float(offset), 1.0]}))

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(results) > 50, "load to start")
        victim = containers(docker_client, CLUSTER, "replica", "dsturdy:1")[0]
        victim.kill()
        wait_until(lambda: any(c.id != victim.id and c.labels[lb.REPLICA] == victim.labels[lb.REPLICA]
                               for c in containers(docker_client, CLUSTER, "replica", "dsturdy:1")),
                   "a new container for the killed replica")
        wait_until(lambda: sum(r["status"] == "ready" for r in conn.get_all_model_replicas(verbose=True)
                               if r["model_name"] == "dsturdy") == 2, "two ready replicas again")
        n = len(results)
        wait_until(lambda: len(results) > n + 50, "more load after the replacement")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert all(status == 200 for status, _ in results)
    assert [r for _, r in results if r["default"]] == []


def test_a_hung_replica_fails_its_health_check_and_is_replaced(conn, docker_client):
    """A frozen container (docker pause) still holds its TCP link; only the health check sees it."""
    create_endpoint(conn, "dfrozen", "doubles", lambda xs: [str(sum(x)) for x in xs], num_replicas=2,
                    slo_micros=60_000_000)
    victim = containers(docker_client, CLUSTER, "replica", "dfrozen:1")[0]
    victim.pause()
    # Queries keep being answered meanwhile (the batch stuck in the frozen one is sent again once it is killed).
    results = [query(conn, "dfrozen", {"input": [float(i), 1.0]}) for i in range(20)]
    wait_until(lambda: victim.id not in [c.id for c in containers(docker_client, CLUSTER, "replica", "dfrozen:1")]
               and len(containers(docker_client, CLUSTER, "replica", "dfrozen:1")) == 2, "the frozen one replaced")
    assert [r for _, r in results if r["default"]] == []
    assert all(r["output"] == i + 1.0 for i, (_, r) in enumerate(results))


def test_a_model_that_cannot_load_fails_the_deploy_with_the_containers_traceback(conn, core_image, tmp_path,
                                                                               monkeypatch):
    (tmp_path / "only_on_the_client.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_on_the_client

    thing = only_on_the_client.Thing()
    bundle = save_bundle(tmp_path / "b", name="dbroken", version=1, input_type="doubles",
                         func=lambda xs: [str(thing) for _ in xs])
    started = time.monotonic()
    with pytest.raises(ClipperException) as e:
        conn.build_and_deploy_model("dbroken", 1, "doubles", str(bundle), core_image[0].tag)
    assert time.monotonic() - started < 60
    assert "failed to load its model" in str(e.value)
    assert "ModuleNotFoundError: No module named 'only_on_the_client'" in str(e.value)
    assert conn.get_model_info("dbroken", 1) is None


def test_connect_from_a_second_process(conn):
    script = f"""
import json
from clipper_deploy_core import ClipperConnection, DockerContainerManager
c = ClipperConnection(DockerContainerManager({CLUSTER!r}))
c.connect()
c.register_application("dfromafar", "doubles", "none", 1000000)
print(json.dumps({{"apps": sorted(c.get_all_apps()), "query": c.get_query_addr()}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert "dsum" in seen["apps"] and seen["query"] == conn.get_query_addr()
    assert "dfromafar" in conn.get_all_apps()  # its admin call carried the cluster's token


def test_admin_mutations_without_the_token_are_refused(conn):
    from clipper_deploy_core.http_client import request

    status, text = request("POST", f"http://{conn.cm.get_admin_addr()}/admin/add_app",
                           {"name": "sneaky", "input_type": "doubles", "default_output": "x",
                            "latency_slo_micros": 1000})
    assert status == 403 and "need the" in text and "sneaky" not in conn.get_all_apps()


def test_get_clipper_logs_collects_every_container(conn, tmp_path):
    paths = conn.get_clipper_logs(str(tmp_path))
    names = [p.rsplit("/", 1)[1] for p in paths]
    assert f"{CLUSTER}-frontend.log" in names
    assert any(n.startswith(f"{CLUSTER}-dsum-1-") for n in names)
    frontend = (tmp_path / f"{CLUSTER}-frontend.log").read_text()
    assert "cluster listening:" in frontend
    # the killed replica's container is gone, but the frontend kept its log
    assert any("dsturdy-1" in n and "replica" in n for n in names)


def test_the_frontend_comes_back_after_a_crash_with_its_apps_and_replicas(conn, docker_client):
    (frontend,) = containers(docker_client, CLUSTER, "frontend")
    started = frontend.attrs["State"]["StartedAt"]
    # Kill the cluster process inside the container (not `docker kill`, which Docker treats as a wanted stop).
    code, out = frontend.exec_run(["python", "-c", "import os, signal\n"
                                   "for p in filter(str.isdigit, os.listdir('/proc')):\n"
                                   "    if b'_core.' + b'cluster' in open(f'/proc/{p}/cmdline', 'rb').read():\n"
                                   "        os.kill(int(p), signal.SIGKILL)"])
    assert code in (0, None, 137, -9), out

    def restarted():
        frontend.reload()
        return frontend.attrs["State"]["StartedAt"] != started and frontend.status == "running"

    wait_until(restarted, "the frontend container to restart")
    again = ClipperConnection(DockerContainerManager(CLUSTER))
    wait_until(lambda: _connects(again), "the restarted frontend to answer")
    assert {"dsum", "dlin", "dsturdy"} <= set(again.get_all_apps())
    wait_until(lambda: query(again, "dsum", {"input": [2.0, 2.0]})[1].get("output") == 4.0, "dsum served again")
    assert len(containers(docker_client, CLUSTER, "replica", "dsum:1")) == 1  # the old replica was cleaned up
    conn.cm.addrs = again.cm.addrs  # published ports may have moved with the restart


def _connects(c):
    try:
        c.connect()
        return True
    except ClipperException:
        return False


# Run inside containers: a forged hello (no secret) at the frontend's RPC port, and the TCP sockets listening.
FORGED_HELLO = r"""
import json, socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
n = struct.unpack("<I", s.recv(4, socket.MSG_WAITALL))[0]
challenge = json.loads(s.recv(n, socket.MSG_WAITALL))
hello = json.dumps({"type": "hello", "model": sys.argv[3], "version": "1", "replica_id": 99, "pid": 1,
                    "nonce": "00", "mac": "00", "nbytes": 0}).encode()
s.sendall(struct.pack("<I", len(hello)) + hello)
try:
    closed = s.recv(1) == b""
except ConnectionResetError:
    closed = True
print(json.dumps({"challenge": challenge["type"], "closed": closed}))
"""
LISTENING = r"""
import json
out = []
for path in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(path).read().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A":
            addr, port = f[1].rsplit(":", 1)
            out.append([addr, int(port, 16)])
print(json.dumps(out))
"""
def is_loopback(addr):
    """/proc/net/tcp's little-endian hex: 127.0.0.0/8 (Docker's own resolver listens on 127.0.0.11), or ::1."""
    return (len(addr) == 8 and addr.endswith("7F")) or addr == "00000000000000000000000001000000"


def run_json(container, code, *args):
    code_, out = container.exec_run(["python", "-c", code, *args])
    assert code_ == 0, out.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


def health_port(replica):
    return int(replica.exec_run(["cat", "/tmp/clipper-health-port"]).output.decode().strip())


def test_bridge_mode_replicas_carry_the_secret_bind_health_to_loopback_and_a_forged_hello_is_refused(
        conn, docker_client, core_image):
    create_endpoint(conn, "dsec", "doubles", lambda xs: [str(len(x)) for x in xs])
    (frontend,) = containers(docker_client, CLUSTER, "frontend")
    (replica,) = containers(docker_client, CLUSTER, "replica", "dsec:1")
    secret = lb.env_of(frontend.attrs)["CLIPPER_CLUSTER_SECRET"]
    assert len(secret) == 64 and lb.env_of(replica.attrs)["CLIPPER_CLUSTER_SECRET"] == secret
    listening = run_json(replica, LISTENING)
    assert listening and all(is_loopback(addr) for addr, _ in listening), listening
    assert health_port(replica) in [port for _, port in listening]
    # A container on the cluster's network that does not know the secret is never linked.
    out = docker_client.containers.run(core_image[0].tag, ["python", "-c", FORGED_HELLO, frontend.name, "7000",
                                                           "dsec"], network="clipper-deploy-test-net",
                                       labels=TEST_LABEL, remove=True)
    assert json.loads(out.decode().strip().splitlines()[-1]) == {"challenge": "challenge", "closed": True}
    assert query(conn, "dsec", {"input": [1.0, 2.0]})[1]["output"] == 2
    assert conn.get_num_replicas("dsec") == 1


def test_host_network_cluster_and_stop_all_removes_all_of_it_and_nothing_else(conn, docker_client):
    bystander = docker_client.containers.run("local/debian:bookworm", ["sleep", "300"], detach=True,
                                             labels={**TEST_LABEL, lb.CLUSTER: "someone-else"}, network_mode="none")
    try:
        cm = DockerContainerManager("dhost", clipper_query_port=0, clipper_management_port=0, clipper_rpc_port=0,
                                    network_mode="host")
        c = ClipperConnection(cm)
        c.start_clipper()
        create_endpoint(c, "dh", "doubles", lambda xs: [str(len(x)) for x in xs])
        assert query(c, "dh", {"input": [1.0, 2.0, 3.0]})[1]["output"] == 3
        (replica,) = containers(docker_client, "dhost", "replica")
        assert replica.attrs["HostConfig"]["NetworkMode"] == "host"
        assert cm.get_query_addr().startswith("127.0.0.1:")
        # On the host's network every port binds loopback, and the RPC port refuses a replica without the secret.
        listening = dict((port, addr) for addr, port in run_json(replica, LISTENING))
        assert is_loopback(listening[health_port(replica)])
        (frontend,) = containers(docker_client, "dhost", "frontend")
        info = next(json.loads(line.split(": ", 1)[1]) for line in frontend.logs().decode().splitlines()
                    if line.startswith("cluster listening: "))
        assert all(info[k].startswith("127.0.0.1:") for k in ("query", "admin", "rpc"))
        forged = run_json(replica, FORGED_HELLO, "127.0.0.1", info["rpc"].rsplit(":", 1)[1], "dh")
        assert forged == {"challenge": "challenge", "closed": True}
        assert query(c, "dh", {"input": [1.0]})[1]["output"] == 1
        c.stop_all()
        assert docker_client.containers.list(all=True, filters=lb.cluster_filter("dhost")) == []
        assert docker_client.volumes.list(filters=lb.cluster_filter("dhost")) == []
        # the module's cluster and an unrelated container are untouched
        assert containers(docker_client, CLUSTER, "frontend")
        bystander.reload()
        assert bystander.status == "running"
        with pytest.raises(ClipperException, match="No running cluster named 'dhost'"):
            ClipperConnection(DockerContainerManager("dhost")).connect()
    finally:
        bystander.remove(force=True)


def test_the_command_line_runs_a_docker_cluster(conn, docker_client):
    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", *args, "--cluster", "dcli", "--docker",
                              "--network-mode", "host"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    try:
        assert "cluster dcli started: query 127.0.0.1:" in cli("start", "--query-port", "0", "--admin-port", "0",
                                                              "--rpc-port", "0")
        c = ClipperConnection(DockerContainerManager("dcli"))
        c.connect()
        create_endpoint(c, "dcount", "doubles", lambda xs: [str(len(x)) for x in xs])
        assert "dcount" in cli("status") and "1/1" in cli("status")
        assert "dcli-dcount-1-0-" in cli("replicas")
        assert json.loads(cli("predict", "dcount", "[1.0, 2.0]"))["output"] == 2
    finally:
        cli("stop")
    assert docker_client.containers.list(all=True, filters=lb.cluster_filter("dcli")) == []


def test_the_docker_manager_passes_the_conformance_kit(docker_client, core_image):
    from clipper_deploy_core.testing.managers import check_manager

    check_manager(lambda name: DockerContainerManager(name, clipper_query_port=0, clipper_management_port=0,
                                                      docker_network="clipper-deploy-conformance-net",
                                                      extra_container_kwargs={"labels": TEST_LABEL}),
                  cluster_name="dconf")


def test_two_frontends_in_the_frontend_container_share_its_port_and_the_replica_containers(docker_client,
                                                                                            core_image):
    cm = DockerContainerManager("dfe", clipper_query_port=0, clipper_management_port=0, frontends=2,
                                docker_network="clipper-deploy-test-net", extra_container_kwargs={"labels": TEST_LABEL})
    c = ClipperConnection(cm)
    c.start_clipper()
    try:
        create_endpoint(c, "dfe", "doubles", lambda xs: [str(sum(x)) for x in xs], num_replicas=2)
        for i in range(40):
            status, reply = query(c, "dfe", {"input": [1.0, float(i)]})
            assert status == 200 and reply["output"] == 1 + i and not reply["default"], reply
        (frontend,) = containers(docker_client, "dfe", "frontend")
        info = json.loads(frontend.exec_run(["cat", "/state/cluster.json"]).output)
        assert info["frontends"] == 2 and len(info["frontend_pids"]) == 2
        # both processes answered some of the 40 (each writes its own counter file), and /metrics sums them
        files = frontend.exec_run(["ls", "/state/metrics"]).output.decode().split()
        assert {f"counter_{pid}.db" for pid in info["frontend_pids"]} <= set(files)
        metrics = urllib.request.urlopen(f"http://{c.get_query_addr()}/metrics", timeout=30).read().decode()
        assert 'clipper_app_requests_total{app="dfe"} 40.0' in metrics
        # answers from both processes: each replica container linked to the worker's TCP listener too
        assert 'clipper_model_live_replicas{model="dfe",version="1"} 2.0' in metrics
    finally:
        c.stop_all()


def test_a_previous_clusters_replicas_are_removed_before_the_admin_port_answers(docker_client, core_image):
    """A restarted cluster removes the replica containers its predecessor left. It must do so before its admin
    port answers: removed any later, they would include the replicas of a deploy made as soon as it answers (which
    died with code 137 and no output)."""
    spec, _ = core_image
    leftover = docker_client.containers.run(
        spec.tag, ["python", "-c", "import time; time.sleep(600)"], detach=True, network_mode="none",
        labels={**TEST_LABEL, lb.CLUSTER: "dleft", lb.ROLE: "replica", lb.MODEL: "old:1"})
    cm = DockerContainerManager("dleft", clipper_query_port=0, clipper_management_port=0,
                                docker_network="clipper-deploy-test-net", extra_container_kwargs={"labels": TEST_LABEL})
    c = ClipperConnection(cm)
    try:
        c.start_clipper()
        assert leftover.id not in [x.id for x in docker_client.containers.list(all=True)]
    finally:
        c.stop_all()
        try:
            leftover.remove(force=True)
        except Exception:  # noqa: BLE001 - removed by the cluster, as it should be
            pass
