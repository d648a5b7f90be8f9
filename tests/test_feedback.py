"""Feedback (``POST /<app>/update``) and the learning policies: ``exp3`` (the paper's bandit) and ``exp4`` (its
ensemble), on a real local cluster over HTTP. The models are pure functions of their input, so a test decides
which of them is right for each piece of feedback."""

import json
import random
import urllib.request

import pytest

from clipper_deploy_core.deployers.python import create_endpoint, deploy_python_closure
from clipper_deploy_core.testing import local_cluster, predict


def post(conn, path, body):
    req = urllib.request.Request(f"http://{conn.get_query_addr()}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(conn, name, **labels):
    samples = conn.inspect_instance().get(name, [])
    return sum(s["value"] for s in samples if all(s["labels"].get(k) == v for k, v in labels.items()))


def column(i):
    """A model that answers the i-th number of its input: the test writes each model's answer into the input."""
    return lambda xs: [str(int(x[i])) for x in xs]


def app_of(conn, app, models, slo=3_000_000):
    """``app`` linked to ``{suffix: predict function}``, each model named ``<app>-<suffix>``."""
    for i, (suffix, fn) in enumerate(models.items()):
        if i == 0:
            create_endpoint(conn, f"{app}-{suffix}", "doubles", fn)
        else:
            deploy_python_closure(conn, f"{app}-{suffix}", "1", "doubles", fn)
    conn.register_application(app, "doubles", "none", slo)
    for suffix in models:
        conn.link_model_to_app(app, f"{app}-{suffix}")


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with local_cluster("feedback", tmp_path_factory.mktemp("feedback")) as c:
        yield c


def test_feedback_is_judged_on_every_linked_model_and_a_policy_that_learns_nothing_says_so(conn):
    app_of(conn, "judged", {"a": column(1), "b": column(2)})
    status, text = post(conn, "/judged/update", {"uid": 7, "input": [0.0, 5.0, 6.0], "label": 5})
    assert status == 200 and text.startswith("Feedback received? true")
    assert "the app's 'default' selection policy learns nothing from feedback" in text
    assert metric(conn, "clipper_app_feedback_total", app="judged") == 1
    assert metric(conn, "clipper_app_model_feedback_total", app="judged", model="judged-a") == 1
    assert metric(conn, "clipper_app_model_feedback_agreed_total", app="judged", model="judged-a") == 1  # 5 == 5
    assert metric(conn, "clipper_app_model_feedback_agreed_total", app="judged", model="judged-b") == 0  # 6 != 5
    # the label matches as a number ("5.0" and 5) or else as text
    post(conn, "/judged/update", {"input": [0.0, 5.0, 6.0], "label": "5.0"})
    assert metric(conn, "clipper_app_model_feedback_agreed_total", app="judged", model="judged-a") == 2


@pytest.mark.parametrize("body,status,cause", [
    ({"input": [1.0]}, 400, "Feedback needs one input and its label"),
    ({"label": 1}, 400, "Feedback needs one input and its label"),
    ({"input_batch": [[1.0]], "label": 1}, 400, "Feedback needs one input and its label"),
    ({"input": [1.0], "label": True}, 400, "label must be a number or a string, got bool"),
    ({"input": [1.0], "label": [1]}, 400, "label must be a number or a string, got list"),
    ({"input": ["x"], "label": 1}, 400, "input"),
])
def test_bad_feedback_gets_a_4xx_naming_what_is_wrong(conn, body, status, cause):
    if "judged" not in conn.get_all_apps():
        app_of(conn, "judged", {"a": column(1), "b": column(2)})
    got, text = post(conn, "/judged/update", body)
    assert got == status and cause in json.loads(text)["cause"], text
    assert post(conn, "/nope/update", {"input": [1.0], "label": 1})[0] == 404


def test_exp3_learns_which_model_is_right_and_sends_it_the_traffic(conn):
    """Model b is right 90 % of the time, model a 50 % (a seeded draw per round). With eta 0.1, b's chance of
    answering passes 80 % within 100 rounds of feedback; then b answers over 80 % of 1,000 real queries."""
    app_of(conn, "bandit", {"a": column(1), "b": column(2)})
    conn.set_selection_policy("bandit", "exp3", eta=0.1)
    rng = random.Random(17)
    passed_at = None
    for rnd in range(1, 101):
        label = rng.randrange(1, 100)
        a = label if rng.random() < 0.5 else label + 100
        b = label if rng.random() < 0.9 else label + 200
        status, text = post(conn, "/bandit/update", {"uid": rnd, "input": [float(rnd), a, b], "label": label})
        assert (status, text) == (200, "Feedback received? true")
        chance = conn.get_app_info("bandit")["selection_policy"]["probabilities"]["bandit-b"]
        if chance > 0.8 and passed_at is None:
            passed_at = rnd
    print(f"exp3: b passed 80 % after {passed_at} rounds")
    assert passed_at is not None and passed_at <= 100, conn.get_app_info("bandit")["selection_policy"]
    batch = predict(conn, "bandit", {"input_batch": [[float(i), 1.0, 2.0] for i in range(1000)]})["batch_predictions"]
    share_b = sum(p["model"] == "bandit-b:1" for p in batch) / len(batch)
    print(f"exp3: b answered {share_b:.1%} of 1,000 queries")
    assert share_b > 0.8, share_b
    assert all(p["output"] == (2 if p["model"] == "bandit-b:1" else 1) for p in batch)  # each model's own answer
    info = conn.get_app_info("bandit")["selection_policy"]
    assert info["feedback"] == 100 and info["weights"]["bandit-b"] > 0.9


def test_exp4_combines_within_the_slo_when_a_model_straggles(conn):
    def slow(xs):
        import time

        time.sleep(1.0)
        return [str(int(x[0])) for x in xs]

    app_of(conn, "team", {"a": column(0), "b": column(0), "slow": slow}, slo=300_000)
    conn.set_selection_policy("team", "exp4")
    reply = predict(conn, "team", {"input": [4.0]})
    assert not reply["default"] and reply["output"] == 4  # the weighted mean of a's and b's 4
    assert reply["model"] == "team-a:1+team-b:1"
    assert "combined 2 of 3 models" in reply["partial_explanation"] and "team-slow:1" in reply["partial_explanation"]


def test_exp4_votes_and_its_ensemble_is_at_least_as_accurate_as_the_best_model(conn):
    """Three classifiers, each wrong on a different third of 30 labelled inputs (each 2/3 accurate): the weighted
    vote is right whenever two agree, here always."""
    truth = ["cat" if i % 2 else "dog" for i in range(30)]

    def classifier(k):
        def f(xs):
            out = []
            for x in xs:
                i = int(x[0])
                right = "cat" if i % 2 else "dog"
                out.append(("dog" if right == "cat" else "cat") if i % 3 == k else right)
            return out
        return f

    app_of(conn, "vote", {"a": classifier(0), "b": classifier(1), "c": classifier(2)})
    conn.set_selection_policy("vote", "exp4", eta=0.2)
    answers = predict(conn, "vote", {"input_batch": [[float(i)] for i in range(30)]})["batch_predictions"]
    ensemble = sum(p["output"] == t for p, t in zip(answers, truth, strict=True)) / 30
    best_single = max(sum(classifier(k)([[float(i)]])[0] == t for i, t in enumerate(truth)) / 30 for k in range(3))
    assert best_single == pytest.approx(2 / 3) and ensemble >= best_single and ensemble == 1.0


def test_learned_weights_survive_a_restart(tmp_path):
    import os
    import signal

    from clipper_deploy_core import ClipperConnection, LocalContainerManager
    from clipper_deploy_core.testing import wait_until

    cm = LocalContainerManager("learned", 0, 0, 0, home=tmp_path)
    c = ClipperConnection(cm)
    c.start_clipper()
    try:
        app_of(c, "keep", {"a": column(1), "b": column(2)})
        c.set_selection_policy("keep", "exp3", eta=0.5)
        for i in range(5):
            post(c, "/keep/update", {"input": [float(i), 1.0, 2.0], "label": 2})
        learned = c.get_app_info("keep")["selection_policy"]["weights"]
        assert learned["keep-b"] > 0.9
        os.kill(cm.info["pid"], signal.SIGKILL)
        wait_until(lambda: cm._read_info() is None, what="the cluster to die")
        c = ClipperConnection(LocalContainerManager("learned", 0, 0, 0, home=tmp_path))
        c.start_clipper()
        assert c.get_app_info("keep")["selection_policy"]["weights"] == learned
        assert c.get_app_info("keep")["selection_policy"]["feedback"] == 5
    finally:
        c.stop_all()
