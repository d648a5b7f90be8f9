"""Several models per app under a selection policy (the Clipper paper's selection layer): linking, the built-in
``default`` and ``weighted`` policies (canary, blue/green, stickiness by uid), their checks, and their persistence.
Everything runs on a real local cluster, over HTTP."""

import collections
import json
import os
import signal
import subprocess
import sys

import pytest

from clipper_deploy_core import ClipperConnection, ClipperException, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint, deploy_python_closure
from clipper_deploy_core.testing import local_cluster, predict, wait_until


def answer_with(tag):
    return lambda xs: [f"{tag}:{sum(x)}" for x in xs]


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with local_cluster("selection", tmp_path_factory.mktemp("selection")) as c:
        yield c


def app_with_two_models(conn, app):
    """``app`` linked to ``<app>-a`` (first) and ``<app>-b``, each answering with its own name."""
    create_endpoint(conn, f"{app}-a", "doubles", answer_with("a"))  # registers an app of that name too
    conn.register_application(app, "doubles", "none", 3_000_000)
    for m in ("a", "b"):
        if m == "b":
            deploy_python_closure(conn, f"{app}-b", "1", "doubles", answer_with("b"))
        conn.link_model_to_app(app, f"{app}-{m}")
    return [f"{app}-a", f"{app}-b"]


def models_answering(conn, app, n, uid=None):
    body = {"input_batch": [[float(i)] for i in range(n)]}
    if uid is not None:
        body["uid"] = uid
    reply = predict(conn, app, body)
    return collections.Counter(p["model"] for p in reply.get("batch_predictions", [reply]))  # one input: no list


def test_several_models_link_and_the_first_answers_as_before(conn):
    assert app_with_two_models(conn, "pair") == conn.get_linked_models("pair")
    reply = predict(conn, "pair", {"input": [1.0, 2.0]})
    assert reply["output"] == "a:3.0" and "model" not in reply  # exactly today's reply
    assert conn.get_app_info("pair")["selection_policy"] == {"name": "default", "params": {}}
    with pytest.raises(ClipperException, match="already linked"):
        conn.link_model_to_app("pair", "pair-b")


def test_weighted_splits_traffic_90_10(conn):
    """2,000 inputs at 90/10: the canary's count is binomial (mean 200, sd 13.4); 140..260 is 4.5 sd either side."""
    app_with_two_models(conn, "canary")
    conn.set_selection_policy("canary", "weighted", weights={"canary-a": 90, "canary-b": 10})
    assert conn.get_app_info("canary")["selection_policy"] == {
        "name": "weighted", "params": {"weights": {"canary-a": 90, "canary-b": 10}},
        "shares": {"canary-a": 0.9, "canary-b": 0.1}}
    counts = models_answering(conn, "canary", 2000)
    assert set(counts) == {"canary-a:1", "canary-b:1"}
    assert 140 <= counts["canary-b:1"] <= 260, counts
    # each answer is that model's own, and says which model gave it
    reply = predict(conn, "canary", {"input": [2.0]})
    assert reply["output"] == f"{reply['model'][7]}:2.0"
    shares = {s["labels"]["model"]: s["value"] for s in conn.inspect_instance()["clipper_app_model_queries_total"]
              if s["labels"]["app"] == "canary"}
    assert sum(shares.values()) == 2001
    assert shares["canary-b:1"] == counts["canary-b:1"] + (reply["model"] == "canary-b:1")


def test_a_uid_sticks_to_one_model_and_stays_there_as_the_canary_grows(conn):
    app_with_two_models(conn, "sticky")
    conn.set_selection_policy("sticky", "weighted", weights={"sticky-a": 95, "sticky-b": 5})
    at_5 = {}
    for u in range(200):
        counts = models_answering(conn, "sticky", 5, uid=f"user-{u}")
        assert len(counts) == 1, f"user-{u} was split: {counts}"
        at_5[u] = next(iter(counts))
    canary = {u for u, m in at_5.items() if m == "sticky-b:1"}
    assert 1 <= len(canary) <= 30  # about 10 of 200
    conn.set_selection_policy("sticky", "weighted", weights={"sticky-a": 80, "sticky-b": 20})
    at_20 = {u: next(iter(models_answering(conn, "sticky", 1, uid=f"user-{u}"))) for u in range(200)}
    assert canary <= {u for u, m in at_20.items() if m == "sticky-b:1"}  # nobody left the canary as it grew
    # blue/green: everything to b, then a rollback to a
    conn.set_selection_policy("sticky", "weighted", weights={"sticky-b": 100})
    assert models_answering(conn, "sticky", 50) == {"sticky-b:1": 50}
    conn.set_selection_policy("sticky", "weighted", weights={"sticky-a": 1})
    assert models_answering(conn, "sticky", 50) == {"sticky-a:1": 50}


@pytest.mark.parametrize("policy,params,message", [
    ("weighted", {}, "needs weights="),
    ("weighted", {"weights": {"nope": 1}}, "weights names model 'nope', which is not linked to this app"),
    ("weighted", {"weights": {"checks-a": -1}}, r"weights\['checks-a'\] must be a number of 0 or more"),
    ("weighted", {"weights": {"checks-a": "9"}}, r"weights\['checks-a'\] must be a number"),
    ("weighted", {"weights": {"checks-a": 0}}, "at least one linked model a weight above 0"),
    ("weighted", {"weights": {"checks-a": 1}, "seed": 3}, "policy 'weighted' takes only weights; got seed"),
    ("default", {"x": 1}, "policy 'default' takes no parameters"),
    ("bandit", {}, r"No selection policy named 'bandit' is installed \(installed: .*default.*weighted"),
])
def test_a_bad_policy_is_refused_with_what_is_wrong(conn, policy, params, message):
    if "checks" not in conn.get_all_apps():
        app_with_two_models(conn, "checks")
    with pytest.raises(ClipperException, match=message):
        conn.set_selection_policy("checks", policy, **params)
    assert conn.get_app_info("checks")["selection_policy"]["name"] == "default"


def test_unlinking_a_model_the_policy_needs_is_refused(conn):
    app_with_two_models(conn, "guarded")
    conn.set_selection_policy("guarded", "weighted", weights={"guarded-b": 100})
    with pytest.raises(ClipperException, match="would break its 'weighted' selection policy"):
        conn.unlink_model_from_app("guarded", "guarded-b")
    conn.unlink_model_from_app("guarded", "guarded-a")  # weight 0: it can go
    assert conn.get_linked_models("guarded") == ["guarded-b"]


def test_the_policy_survives_a_cluster_restart_and_the_command_line_sets_it(tmp_path):
    cm = LocalContainerManager("phoenix", 0, 0, 0, home=tmp_path)
    c = ClipperConnection(cm)
    c.start_clipper()
    try:
        app_with_two_models(c, "reborn")
        env = {**os.environ, "CLIPPER_DEPLOY_HOME": str(tmp_path)}
        out = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", "policy", "--cluster", "phoenix",
                              "reborn", "weighted", "--param", 'weights={"reborn-b": 100}'],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0 and 'reborn: weighted {"weights":{"reborn-b":100}}' in out.stdout, out.stderr
        os.kill(cm.info["pid"], signal.SIGKILL)
        wait_until(lambda: cm._read_info() is None, what="the cluster to die")
        c = ClipperConnection(LocalContainerManager("phoenix", 0, 0, 0, home=tmp_path))
        c.start_clipper()
        wait_until(lambda: c.get_num_replicas("reborn-b") == 1, "the replicas to come back")
        assert c.get_app_info("reborn")["selection_policy"]["params"] == {"weights": {"reborn-b": 100}}
        assert models_answering(c, "reborn", 20) == {"reborn-b:1": 20}
        apps = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", "apps", "--cluster", "phoenix"],
                              capture_output=True, text=True, env=env, timeout=60).stdout
        assert json.dumps({"weights": {"reborn-b": 100}}, separators=(",", ":")) in apps
    finally:
        c.stop_all()


def test_a_third_party_policy_is_found_like_the_built_ins(conn):
    """tests/toy_plugin registers ``round-robin`` under ``clipper_deploy.selection_policies``, as the built-ins are."""
    from clipper_deploy_core.selection.registry import policy_names

    assert {"default", "weighted", "exp3", "exp4", "round-robin"} <= set(policy_names())
    app_with_two_models(conn, "turns")
    conn.set_selection_policy("turns", "round-robin")
    batch = predict(conn, "turns", {"input_batch": [[float(i)] for i in range(6)]})["batch_predictions"]
    assert [p["model"] for p in batch] == ["turns-a:1", "turns-b:1"] * 3
    with pytest.raises(ClipperException, match="takes only skip"):
        conn.set_selection_policy("turns", "round-robin", every=2)
