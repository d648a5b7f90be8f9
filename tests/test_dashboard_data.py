"""The dashboard's JSON and assets on the admin port, over real HTTP (the page itself is tested in a real browser,
in tests/browser)."""

import json
import urllib.error
import urllib.request

import pytest

from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.testing import local_cluster, predict


def get(conn, path, headers=None):
    req = urllib.request.Request(f"http://{conn.cm.get_admin_addr()}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["content-type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["content-type"], e.read()


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with local_cluster("dash-data", tmp_path_factory.mktemp("dash")) as c:
        create_endpoint(c, "sum", "doubles", lambda xs: [str(sum(x)) for x in xs])
        yield c


def test_the_data_has_apps_models_replicas_and_the_counters_the_charts_need(conn):
    for i in range(3):
        predict(conn, "sum", {"input": [float(i)]})
    status, ctype, body = get(conn, "/dashboard/data")  # no token: reading is open
    assert status == 200 and ctype.startswith("application/json")
    data = json.loads(body)
    assert [a["name"] for a in data["apps"]] == ["sum"] and data["apps"][0]["linked_models"] == ["sum"]
    (model,) = data["models"]
    assert (model["name"], model["version"], model["current"]) == ("sum", "1", True)
    (replica,) = model["replicas"]
    assert replica["status"] == "ready" and replica["restarts"] == 0 and replica["batch_cap"] >= 1
    series = data["series"]["apps"]["sum"]
    assert series["requests"] == 3 and series["latency_buckets"][-1] == [None, 3.0]  # +Inf, cumulative
    assert data["series"]["models"]["sum:1"]["predictions"] == 3
    assert data["frontend"]


def test_the_page_and_its_assets_are_served_and_nothing_else(conn):
    assert get(conn, "/dashboard")[:2] == (200, "text/html; charset=utf-8")
    assert get(conn, "/dashboard/assets/dashboard.js")[0] == 200
    status, _, body = get(conn, "/dashboard/assets/secret.txt")
    assert status == 404 and "No dashboard asset named 'secret.txt'" in json.loads(body)["cause"]
    assert get(conn, "/dashboard/assets/..%2Fstate.db")[0] == 404


def test_the_dashboard_keeps_the_admin_ports_host_check(conn):
    status, _, body = get(conn, "/dashboard/data", {"Host": "evil.example"})
    assert status == 403 and "does not name this admin API" in json.loads(body)["cause"]
