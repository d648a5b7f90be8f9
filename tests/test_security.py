"""Security findings against a real local cluster: each test here failed on the code before the fix.

RPC: only replicas that prove the cluster's secret are linked, a replica is its connection, frames before the
handshake are capped and the handshake is timed. Admin: every mutation needs the token (loopback too), browser-shaped
requests are refused, deploys take only the cluster's own bundles. Files are private.
"""

import json
import os
import socket
import stat
import struct
import time
import urllib.error
import urllib.request
import warnings

import pytest

from clipper_deploy_core import AdminTokenError, ClipperConnection, ClipperException, LocalContainerManager
from clipper_deploy_core.bundle import bundle_digest
from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.http_client import admin_post, request
from clipper_deploy_core.replica_auth import sign_hello
from clipper_deploy_core.testing import predict, wait_until
from clipper_deploy_core.wire import encode


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    home = tmp_path_factory.mktemp("sec-home")
    os.environ["CLIPPER_DEPLOY_AUTH_TIMEOUT"] = "1"  # read by the cluster process it starts
    try:
        c = ClipperConnection(LocalContainerManager("security", 0, 0, 0, home=home))
        c.start_clipper()
    finally:
        del os.environ["CLIPPER_DEPLOY_AUTH_TIMEOUT"]
    create_endpoint(c, "sec", "doubles", lambda xs: [f"real:{len(x)}" for x in xs])
    yield c
    c.stop_all()


def rpc_addr(conn):
    host, port = conn.cm.info["rpc"].rsplit(":", 1)
    return host, int(port)


def recv_frame(sock):
    head = sock.recv(4, socket.MSG_WAITALL)
    if len(head) < 4:
        return None
    (n,) = struct.unpack("<I", head)
    msg = json.loads(sock.recv(n, socket.MSG_WAITALL))
    if msg.get("nbytes"):
        sock.recv(msg["nbytes"], socket.MSG_WAITALL)
    return msg


def closed_by_peer(sock, timeout=10.0):
    """True once the frontend closes the link (EOF or reset), within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def live_replicas(conn):
    series = conn.inspect_instance().get("clipper_model_live_replicas", [])
    return sum(s["value"] for s in series if s["labels"].get("model") == "sec")


def fake_replica_link(conn, hello):
    sock = socket.create_connection(rpc_addr(conn), timeout=10)
    challenge = recv_frame(sock)
    assert challenge["type"] == "challenge"
    sock.sendall(encode(hello(challenge)))
    return sock


HELLO = {"type": "hello", "model": "sec", "version": "1", "replica_id": 77, "pid": 1}


def test_a_replica_without_the_secret_is_never_linked(conn):
    for forged in (lambda c: HELLO, lambda c: sign_hello("not-the-secret", c, HELLO)):
        sock = fake_replica_link(conn, forged)
        assert closed_by_peer(sock), "a replica without the secret must be hung up on"
        sock.close()
    assert live_replicas(conn) == 1
    outs = [predict(conn, "sec", {"input": [1.0, float(i)]})["output"] for i in range(100)]
    assert outs == ["real:2"] * 100


def test_a_second_hello_with_a_live_replica_id_is_refused_and_unlinks_nothing(conn):
    secret = (conn.cm.dir / "secret").read_text()
    sock = fake_replica_link(conn, lambda c: sign_hello(secret, c, {**HELLO, "replica_id": 0}))
    reply = recv_frame(sock)
    assert reply["type"] == "refused" and "already linked" in reply["reason"]
    assert closed_by_peer(sock)
    sock.close()
    assert live_replicas(conn) == 1
    assert predict(conn, "sec", {"input": [1.0]})["output"] == "real:1"


def test_a_replica_with_the_secret_is_linked_and_then_only_its_own_link_goes(conn):
    secret = (conn.cm.dir / "secret").read_text()
    sock = fake_replica_link(conn, lambda c: sign_hello(secret, c, {**HELLO, "replica_id": 5}))
    assert recv_frame(sock)["type"] == "welcome"
    wait_until(lambda: live_replicas(conn) == 2, what="the second replica to count")
    sock.close()
    wait_until(lambda: live_replicas(conn) == 1, what="only the closed link to go")
    assert predict(conn, "sec", {"input": [1.0]})["output"] == "real:1"


@pytest.mark.parametrize("declared", [1 << 30, 65 * 1024])
def test_frames_before_the_handshake_are_capped_small(conn, declared):
    sock = socket.create_connection(rpc_addr(conn), timeout=10)
    assert recv_frame(sock)["type"] == "challenge"
    sock.sendall(struct.pack("<I", declared) + b"{" * 1000)
    assert closed_by_peer(sock, timeout=5), f"a pre-handshake frame of {declared} bytes must close the link"
    sock.close()


def test_a_link_that_does_not_authenticate_in_time_is_closed(conn):
    sock = socket.create_connection(rpc_addr(conn), timeout=10)
    started = time.monotonic()
    assert recv_frame(sock)["type"] == "challenge"
    assert closed_by_peer(sock, timeout=10)
    assert time.monotonic() - started < 5  # the cluster runs with a 1 s handshake limit


# --- the admin API -------------------------------------------------------------------------------
def admin(conn, path, body=b"{}", headers=None, method="POST"):
    addr = conn.cm.get_admin_addr()
    req = urllib.request.Request(f"http://{addr}/admin/{path}", data=body if method == "POST" else None,
                                 method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


APP = json.dumps({"name": "x", "input_type": "doubles", "default_output": "d", "latency_slo_micros": 100000}).encode()


def test_every_mutation_needs_the_token_from_loopback_too(conn):
    status, text = admin(conn, "add_app", APP)
    assert status == 403 and "X-Clipper-Admin-Token" in json.loads(text)["cause"]
    status, _ = admin(conn, "add_app", APP, {"X-Clipper-Admin-Token": "wrong"})
    assert status == 403
    assert admin(conn, "get_all_applications")[0] == 200  # reading needs no token
    assert admin(conn, "add_app", APP, {"X-Clipper-Admin-Token": conn.cm.admin_token})[0] == 200
    conn.unregister_application("x")


@pytest.mark.parametrize("headers,status,cause", [
    ({"Content-Type": "text/plain"}, 415, "application/json"),           # a form or fetch() without preflight
    ({"Origin": "http://evil.example"}, 403, "Cross-origin"),            # CSRF from a page the user opened
    ({"Origin": "null"}, 403, "Cross-origin"),
    ({"Host": "evil.example:1338"}, 403, "DNS rebinding"),               # a rebinding name resolving to 127.0.0.1
])
def test_browser_shaped_requests_are_refused_even_with_the_token(conn, headers, status, cause):
    got, text = admin(conn, "add_app", APP, {"X-Clipper-Admin-Token": conn.cm.admin_token, **headers})
    assert got == status and cause in json.loads(text)["cause"]
    assert conn.get_app_info("x") is None


def test_the_token_is_private_and_found_by_a_fresh_connection(conn):
    token_file = conn.cm.dir / "admin_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    c2 = ClipperConnection(LocalContainerManager("security", home=conn.cm.home))
    c2.connect()
    c2.register_application("fresh", "doubles", "d", 100000)
    c2.unregister_application("fresh")


def deploy_body(conn, **over):
    bundle = next((conn.cm.dir / "bundles").iterdir())
    body = {"model_name": "sec", "model_version": "1", "bundle_dir": str(bundle), "digest": bundle_digest(bundle),
            "num_replicas": 1, "pkgs_to_install": []}
    return json.dumps({**body, **over}).encode()


@pytest.mark.parametrize("over,cause", [
    ({"digest": ""}, "digest must be"),
    ({"digest": "0" * 64}, "does not match"),
    ({"bundle_dir": "/tmp"}, "bundle store"),
    ({"pkgs_to_install": ["https://evil.example/x.whl"]}, "not a package name"),
    ({"pkgs_to_install": ["x @ https://evil.example/x.whl"]}, "URL"),
    ({"pkgs_to_install": ["./evil"]}, "not a package name"),
    ({"pkgs_to_install": ["--index-url=http://evil.example"]}, "pip option"),
])
def test_deploy_replicas_takes_only_the_clusters_own_bundles(conn, over, cause):
    body = deploy_body(conn, **over)
    if over.get("bundle_dir") == "/tmp":
        body = deploy_body(conn, bundle_dir=str(conn.cm.dir.parent))
    status, text = admin(conn, "deploy_replicas", body, {"X-Clipper-Admin-Token": conn.cm.admin_token})
    assert status == 400 and cause in json.loads(text)["cause"], text


def test_the_cluster_directory_and_its_files_are_private(conn):
    d = conn.cm.dir
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    files = [d / "state.db", d / "secret", d / "admin_token", d / "cluster.log", *(d / "logs").glob("*.log")]
    modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {"0o600"}, modes


def test_insecure_loopback_admin_is_an_explicit_opt_in_that_keeps_the_browser_checks(tmp_path):
    cm = LocalContainerManager("clipper-admin-compat", 0, 0, 0, home=tmp_path, insecure_loopback_admin=True)
    c = ClipperConnection(cm)
    c.start_clipper()
    try:
        assert "--insecure-loopback-admin" in (cm.dir / "cluster.log").read_text()
        assert admin(c, "add_app", APP)[0] == 200  # no token, from loopback
        assert admin(c, "add_app", APP, {"Content-Type": "text/plain"})[0] == 415
        assert admin(c, "add_app", APP, {"Origin": "http://evil.example"})[0] == 403
    finally:
        c.stop_all()


def test_a_wrong_token_fails_connect_with_a_named_error_and_no_warning(conn):
    c2 = ClipperConnection(LocalContainerManager("security", home=conn.cm.home, admin_token="wrong"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it warned, from the import watch connect() set up, before connect() checked
        with pytest.raises(AdminTokenError, match="refuses this admin token.*X-Clipper-Admin-Token"):
            c2.connect()
    assert not c2.connected
    with pytest.raises(ClipperException, match="403.*admin token"):  # and a mutation sent anyway is still refused
        admin_post(conn.cm.info["admin"], "add_app", json.loads(APP), token="wrong")
    c3 = ClipperConnection(LocalContainerManager("security", home=conn.cm.home, admin_token=conn.cm.admin_token))
    c3.connect()  # the right token, given
    assert c3.get_all_apps() is not None


def test_the_admin_ping_answers_probes_and_checks_a_token_sent_with_it(conn):
    url = f"http://{conn.cm.info['admin']}/admin/ping"
    assert request("GET", url) == (200, "PONG")  # probes send no token
    assert request("GET", url, headers={"X-Clipper-Admin-Token": conn.cm.admin_token}) == (200, "PONG")
    status, text = request("GET", url, headers={"X-Clipper-Admin-Token": "wrong"})
    assert status == 403
    assert json.loads(text) == {"error": "Forbidden", "cause": "This cluster refuses the admin token in the "
                                "X-Clipper-Admin-Token header: it is not the token the cluster was started with"}


def test_the_replica_health_endpoint_binds_loopback_by_default(monkeypatch):
    from clipper_deploy_core.replica.health import start_from_env

    monkeypatch.setenv("CLIPPER_HEALTH_PORT", "0")
    monkeypatch.delenv("CLIPPER_HEALTH_HOST", raising=False)
    health = start_from_env()
    try:
        assert health.server.server_address[0] == "127.0.0.1"
    finally:
        health.server.shutdown()


def test_the_cli_opt_in_starts_a_cluster_that_takes_clipper_admins_token_less_calls(tmp_path):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", *args, "--cluster", "cli-insecure"],
                              capture_output=True, text=True, env={**os.environ, "CLIPPER_DEPLOY_HOME": str(tmp_path)},
                              timeout=120)

    started = cli("start", "--insecure-loopback-admin", "--query-port", "0", "--admin-port", "0", "--rpc-port", "0")
    assert started.returncode == 0, started.stderr
    try:
        c = ClipperConnection(LocalContainerManager("cli-insecure", home=tmp_path))
        c.connect()
        assert "WARNING: --insecure-loopback-admin" in (c.cm.dir / "cluster.log").read_text()
        assert admin(c, "add_app", APP)[0] == 200
    finally:
        cli("stop")


@pytest.mark.parametrize("path,body,cause", [
    ("add_app", b"[" * 5000 + b"]" * 5000, "Error parsing JSON"),
    ("add_app", b'{"name": ["x"], "input_type": "doubles", "default_output": "d", "latency_slo_micros": 1}',
     "'name' must be a string"),
    ("add_app", b'{"name": "y", "input_type": "doubles", "default_output": "d", "latency_slo_micros": true}',
     "'latency_slo_micros' must be an integer"),
    ("set_num_replicas", b'{"model_name": "sec", "model_version": 1.5, "num_replicas": 1}', "model_version"),
    ("set_num_replicas", b'{"model_name": "sec", "model_version": "1", "num_replicas": 99999999}', "0 to 10000"),
    ("get_container", b'{"model_name": "sec", "model_version": "1", "replica_id": "0"}', "'replica_id'"),
    ("add_model_links", b'{"app_name": "sec", "model_names": "sec"}', "list of strings"),
    ("get_all_applications", b'{"verbose": "yes"}', "true or false"),
])
def test_malformed_admin_bodies_get_a_400_naming_the_field(conn, path, body, cause):
    status, text = admin(conn, path, body, {"X-Clipper-Admin-Token": conn.cm.admin_token})
    assert status == 400 and cause in json.loads(text)["cause"], text


def test_a_failed_scale_up_keeps_the_record_and_a_crash_loop_says_why(tmp_path):
    import signal
    import subprocess
    import sys

    from clipper_deploy_core.bundle import FUNC_NAME
    from clipper_deploy_core.testing import query

    cm = LocalContainerManager("crashy", 0, 0, 0, home=tmp_path)
    c = ClipperConnection(cm)
    c.start_clipper()
    try:
        create_endpoint(c, "crashy", "doubles", lambda xs: ["ok"] * len(xs), slo_micros=2_000_000)
        bundle = next((cm.dir / "bundles").iterdir())
        (bundle / FUNC_NAME).write_bytes(b"tampered")
        with pytest.raises(ClipperException, match="BundleIntegrityError"):
            c.set_num_replicas("crashy", 2)
        record = admin(c, "get_deployment", json.dumps({"model_name": "crashy", "model_version": "1"}).encode())
        assert json.loads(record[1])["num_replicas"] == 1  # exactly as before the failed scale-up
        assert predict(c, "crashy", {"input": [1.0]})["output"] == "ok"  # the old replica still serves

        # The serving replica dies; each restart fails verification: a crash loop, explained everywhere.
        (rep,) = c.get_all_model_replicas(verbose=True)
        os.kill(rep["pid"], signal.SIGKILL)
        wait_until(lambda: (c.get_all_model_replicas(verbose=True)[0].get("last_error") or "").startswith(
            "BundleIntegrityError"), what="the replica's last error", timeout=60)
        status, reply = query(c, "crashy", {"input": [1.0]})
        assert status == 200 and reply["default"]
        assert ("no live replica: model crashy:1 fails to start: BundleIntegrityError" in reply["default_explanation"]
                and "sha256 mismatch: func.pkl" in reply["default_explanation"]), reply
        states = c.inspect_instance()["clipper_replica_state"]
        assert any(s["labels"]["last_error"].startswith("BundleIntegrityError") for s in states)
        out = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", "replicas", "--cluster", "crashy"],
                             capture_output=True, text=True, env={**os.environ, "CLIPPER_DEPLOY_HOME": str(tmp_path)},
                             timeout=60).stdout
        assert "BundleIntegrityError" in out

        # A restarted cluster finds the record as it was (the version still wants its replica).
        os.kill(cm.info["pid"], signal.SIGKILL)
        wait_until(lambda: cm._read_info() is None, what="the cluster to die")
        c = ClipperConnection(LocalContainerManager("crashy", 0, 0, 0, home=tmp_path))
        c.start_clipper()
        record = admin(c, "get_deployment", json.dumps({"model_name": "crashy", "model_version": "1"}).encode())
        assert json.loads(record[1])["num_replicas"] == 1
    finally:
        c.stop_all()
