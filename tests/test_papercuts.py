"""A newcomer's first steps: each message or default here once misled someone."""

import os
import subprocess
import sys

import pytest

from clipper_deploy_core import ClipperConnection, ClipperException, LocalContainerManager, deploy
from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.testing import query


def cli(*args, home):
    return subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "CLIPPER_DEPLOY_HOME": str(home)}, timeout=120)


@pytest.mark.parametrize("manager,extra", [("DockerContainerManager", "docker"),
                                           ("KubernetesContainerManager", "kubernetes")])
def test_a_manager_without_its_extra_names_the_extra(manager, extra):
    module = "docker" if extra == "docker" else "kubernetes"
    where = "clipper_deploy_core.managers." + ("docker" if extra == "docker" else "kubernetes")
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"from {where} import {manager}\n"
            f"try:\n    {manager}('c')\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert f"MissingExtra {manager} needs the '{module}' package: pip install 'clipper-deploy-core[{extra}]'" in \
        out.stdout, out.stdout + out.stderr


def test_a_failed_fresh_process_check_shows_only_the_models_traceback(tmp_path):
    from tests.conftest import RecordingConnection

    def boom(xs):
        return xs

    class Unloadable:
        def __reduce__(self):
            return (int, ("not a number",))  # fails when the fresh process unpickles it

    bad = Unloadable()
    with pytest.raises(ClipperException) as e:
        deploy(RecordingConnection(tmp_path), None, lambda xs: [str(bad) for _ in xs], name="bad")
    assert "ValueError" in str(e.value) and "RuntimeWarning" not in str(e.value)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("papercuts")
    c = ClipperConnection(LocalContainerManager("papercuts", 0, 0, 0, home=home))
    c.start_clipper()
    create_endpoint(c, "len", "doubles", lambda xs: [str(len(x)) for x in xs])
    c.register_application("unlinked", "doubles", "nobody-home", 100_000)
    yield home
    c.stop_all()


def test_cli_predict_says_which_argument_is_not_json(home):
    out = cli("predict", "--cluster", "papercuts", "len", "notjson", home=home)
    assert out.returncode == 2 and "INPUT 'notjson' is not JSON" in out.stderr and "--input" not in out.stderr


def test_cli_predict_exits_non_zero_on_a_default_unless_told(home):
    out = cli("predict", "--cluster", "papercuts", "unlinked", "[1.0]", home=home)
    assert out.returncode == 3 and "default output" in out.stderr
    assert cli("predict", "--cluster", "papercuts", "--allow-default", "unlinked", "[1.0]", home=home).returncode == 0
    assert cli("predict", "--cluster", "papercuts", "len", "[1.0, 2.0]", home=home).returncode == 0


def test_cli_logs_go_to_the_clusters_own_directory(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = cli("logs", "--cluster", "papercuts", home=home)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "clipper_logs").exists()
    collected = home / "clusters" / "papercuts" / "collected-logs"
    assert collected.is_dir() and any(collected.iterdir())
    named = tmp_path / "mine"
    assert cli("logs", "--cluster", "papercuts", "--dir", str(named), home=home).returncode == 0
    assert any(named.iterdir())


def test_an_empty_input_is_called_empty(home):
    c = ClipperConnection(LocalContainerManager("papercuts", home=home))
    c.connect()
    status, reply = query(c, "len", {"input": []})
    assert status == 400 and "got an empty array" in reply["cause"]


def test_the_quickstart_prints_json_and_a_curl_line_and_a_second_run_leaves_one_version(tmp_path):
    import json

    def run():
        out = subprocess.run([sys.executable, "examples/quickstart.py"], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "CLIPPER_DEPLOY_HOME": str(tmp_path)})
        assert out.returncode == 0, out.stderr
        return out.stdout

    try:
        first, second = run(), run()
        for line in (ln for ln in first.splitlines() if " -> " in ln):
            query_, reply = line.strip().split(" -> ")
            assert "input" in json.loads(query_) and "label" in json.loads(reply)["output"]
        assert "curl -s -X POST" in first and "classify:2" in second
        c = ClipperConnection(LocalContainerManager("quickstart", home=tmp_path))
        c.connect()
        assert [m["model_version"] for m in c.get_all_models(verbose=True)] == ["2"]
        assert [r["model_version"] for r in c.get_all_model_replicas(verbose=True)] == ["2"]
    finally:
        cli("stop", "--cluster", "quickstart", home=tmp_path)


def test_new_refuses_a_bad_name_and_an_existing_folder(tmp_path):
    from clipper_deploy_core.templates import write_package

    with pytest.raises(ClipperException, match="lowercase"):
        write_package("plugin", "Bad-Name", tmp_path)
    root = write_package("manager", "edge", tmp_path)
    assert (root / "pyproject.toml").read_text().count('edge = "clipper_deploy_edge_manager:EdgeContainerManager"')
    with pytest.raises(ClipperException, match="already exists"):
        write_package("manager", "edge", tmp_path)
