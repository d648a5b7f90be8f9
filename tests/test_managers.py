"""Container managers are found by entry points, like framework plugins: the built-ins and a third-party one
(tests/toy_manager, installed by the core session) are listed, selected by name on the command line, and pass
the conformance kit."""

import json
import os
import subprocess
import sys

import pytest

from clipper_deploy_core import ClipperException, LocalContainerManager
from clipper_deploy_core.managers.registry import load_manager, managers
from clipper_deploy_core.testing.managers import check_manager


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_built_ins_and_a_third_party_manager_are_listed():
    listed = {m["name"]: m for m in json.loads(cli("managers", "--json").stdout)}
    assert {n: listed[n]["builtin"] for n in ("local", "docker", "kubernetes", "toy")} == {
        "local": True, "docker": True, "kubernetes": True, "toy": False}
    assert listed["toy"]["distribution"] == "clipper-deploy-toy-manager"
    assert [m.name for m in managers()][:3] == ["docker", "kubernetes", "local"]  # built-ins first
    assert "toy" in cli("managers").stdout


def test_an_unknown_manager_is_named_with_the_installed_ones():
    with pytest.raises(ClipperException, match=r"No container manager named 'nope' is installed \(installed: .*local"):
        load_manager("nope")


def test_the_command_line_selects_a_manager_by_name(tmp_path):
    env = {"TOY_MANAGER_HOME": str(tmp_path)}
    started = cli("start", "--manager", "toy", "--cluster", "toyc", env=env)
    assert started.returncode == 0, started.stderr
    try:
        assert (tmp_path / "clusters" / "toyc" / "cluster.json").is_file()  # the toy manager's own home
        status = cli("status", "--manager", "toy", "--cluster", "toyc", env=env)
        assert status.returncode == 0 and "cluster toyc" in status.stdout, status.stderr
    finally:
        assert cli("stop", "--manager", "toy", "--cluster", "toyc", env=env).returncode == 0


def test_the_local_manager_passes_the_conformance_kit(tmp_path):
    check_manager(lambda name: LocalContainerManager(name, 0, 0, 0, home=tmp_path))


def test_the_third_party_manager_passes_the_conformance_kit(tmp_path, monkeypatch):
    monkeypatch.setenv("TOY_MANAGER_HOME", str(tmp_path))
    toy = load_manager("toy")
    check_manager(lambda name: toy(name))


def test_a_deployment_runs_a_bundle_or_an_image_and_old_state_is_migrated(tmp_path):
    import sqlite3

    from clipper_deploy_core.frontend.state import ClusterState, Deployment

    with pytest.raises(ClipperException, match="exactly one"):
        Deployment("m", "1", "0" * 64, 1, [], bundle="/b", image="img:1")
    # A state file from before images had their own column: the image's tag sat in bundle_dir.
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("CREATE TABLE deployments (name TEXT NOT NULL, version TEXT NOT NULL, bundle_dir TEXT NOT NULL, "
               "digest TEXT NOT NULL, num_replicas INTEGER NOT NULL, pkgs TEXT NOT NULL, PRIMARY KEY (name, version))")
    db.execute("INSERT INTO deployments VALUES ('a', '1', '/store/bundles/a-1', 'd1', 1, '[]')")
    db.execute("INSERT INTO deployments VALUES ('b', '1', 'prod-b:1', 'd2', 2, '[]')")
    db.commit()
    db.close()
    state = ClusterState(tmp_path / "state.db")
    by_name = {d.name: d for d in state.deployments()}
    assert (by_name["a"].bundle, by_name["a"].image) == ("/store/bundles/a-1", None)
    assert (by_name["b"].bundle, by_name["b"].image, by_name["b"].num_replicas) == (None, "prod-b:1", 2)
    state.put_deployment(Deployment("c", "1", "d3", 1, ["x==1"], image="prod-c:1"))
    assert state.get_deployment("c", "1").image == "prod-c:1"


def test_the_local_store_names_a_bundle_by_its_digest_and_deploys_only_from_there(tmp_path):
    """build_model computes the digest once and names the stored copy by it; deploy_model takes it from there."""
    from pathlib import Path

    from clipper_deploy_core.bundle import bundle_digest, save_bundle

    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=lambda xs: xs)
    cm = LocalContainerManager("store", 0, 0, 0, home=tmp_path / "home")
    stored = cm.build_model("m", "1", str(bundle), "base")
    assert Path(stored).name == f"m-1-{bundle_digest(Path(bundle))}"
    with pytest.raises(ClipperException, match="is not a bundle that build_model stored in this cluster"):
        cm.deploy_model("m", "1", "doubles", str(bundle))


def test_the_state_decodes_a_row_once_until_the_next_write_and_hands_out_lists_of_their_own(tmp_path):
    """The query path reads an app, its links, its policy and its current model per query: each is decoded once
    (a model's labels are JSON) and read from memory until a write changes the state."""
    from clipper_deploy_core.frontend.state import ClusterState

    state = ClusterState(tmp_path / "state.db")
    state.add_app("a", "doubles", "d", 100000)
    state.add_model("m", "1", "doubles", ["x"], "c", "/p", -1)
    state.add_link("a", ["m"])
    first = state.current_model("m")
    assert state.current_model("m") is first and state.get_app("a") is state.get_app("a")
    links = state.linked_models("a")
    links.append("mutated by a caller")  # a selection policy is given this list: it must not reach the next caller
    assert state.linked_models("a") == ["m"]
    state.add_model("m", "2", "doubles", ["y"], "c", "/p", -1)  # a write: the next reads decode again
    assert (state.current_model("m").version, state.current_model("m").labels) == ("2", ["y"])
    assert state.get_model("m", "1") == first.__class__(**{**first.__dict__, "is_current": False})
