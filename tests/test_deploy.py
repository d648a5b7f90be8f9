"""deploy() and the seed's Python-closure deployer, against the connection interface."""

import inspect
import sys
import threading

import pytest
import toy_models

from clipper_deploy_core import ClipperException, deploy
from clipper_deploy_core.bundle.check import run_check
from clipper_deploy_core.connection import ConnectionInterface
from clipper_deploy_core.deployers import python as python_deployer
from clipper_deploy_core.testing import seed_signature

from .conftest import read_manifest


def our_signature(func) -> str:
    parts = []
    for p in inspect.signature(func).parameters.values():
        parts.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts)


@pytest.mark.parametrize("fn", ["deploy_python_closure", "create_endpoint"])
def test_seed_signatures_are_kept(fn):
    assert our_signature(getattr(python_deployer, fn)) == seed_signature(f"clipper_admin.deployers.python.{fn}")


def test_recording_connection_implements_the_interface(conn):
    assert isinstance(conn, ConnectionInterface)


def centered_sum(xs):
    return [str(float(sum(x))) for x in xs]


def test_deploy_python_closure_ships_a_loadable_bundle(conn):
    python_deployer.deploy_python_closure(conn, "sum-model", 1, "doubles", centered_sum, num_replicas=2, batch_size=9,
                                          labels=["team-a"])
    meta = conn.models[("sum-model", "1")]
    assert (meta["num_replicas"], meta["batch_size"], meta["labels"]) == (2, 9, ["team-a"])
    assert meta["image"] == f"clipper-deploy/python-closure:py{sys.version_info.major}.{sys.version_info.minor}"
    assert run_check(conn.bundle("sum-model", "1"), "doubles", [[1.1, 2.2, 3.3]]) == [str(1.1 + 2.2 + 3.3)]
    assert conn.apps == {}  # deploy_* registers no app, as in Clipper


def test_create_endpoint_registers_links_and_keeps_defaults(conn):
    python_deployer.create_endpoint(conn, "py-closure-test", "doubles", centered_sum)
    assert conn.apps["py-closure-test"]["default_output"] == "None"
    assert conn.apps["py-closure-test"]["latency_slo_micros"] == 3000000
    assert conn.links == {"py-closure-test": ["py-closure-test"]}
    assert ("py-closure-test", "1") in conn.models


def test_deploy_defaults_name_version_and_input_type(conn):
    first = deploy(conn, None, centered_sum)
    assert (first.name, first.version, first.input_type, first.plugin) == ("centered-sum", "1", "doubles", "python")
    second = deploy(conn, None, centered_sum)
    assert second.version == "2" and conn.links == {"centered-sum": ["centered-sum"]}
    assert read_manifest(conn.bundle("centered-sum", "2")).version == "2"


def test_deploy_picks_the_toy_plugin_by_model_type(conn):
    def poly(model, xs):
        return [str(model(float(sum(x)))) for x in xs]

    result = deploy(conn, toy_models.Quadratic([0, 0, 1]), poly, name="square", sample_inputs=[[1.0, 2.0], [4.0]])
    assert result.plugin == "toy" and result.sample_outputs == ["9.0", "16.0"]
    assert conn.models[("square", "1")]["image"].startswith("clipper-deploy/toy:py")
    assert read_manifest(conn.bundle("square", "1")).plugin.distribution == "clipper-deploy-toy"


def test_bad_input_type_is_refused_before_anything_ships(conn):
    with pytest.raises(ClipperException, match="Invalid input_type 'tensor'"):
        deploy(conn, None, centered_sum, input_type="tensor")
    assert conn.models == {} and conn.apps == {}


@pytest.mark.parametrize("kwargs,msg", [
    ({"name": "Bad_Name"}, "Invalid application name"),
    ({"version": "v1.0"}, "Invalid model version"),
    ({"num_replicas": -1}, "num_replicas"),
    ({"batch_size": 0}, "batch_size"),
    ({"labels": ["a:b"]}, "Invalid label"),
])
def test_bad_arguments_are_refused(conn, kwargs, msg):
    with pytest.raises(ClipperException, match=msg):
        deploy(conn, None, centered_sum, **kwargs)
    assert conn.models == {} and conn.apps == {}


def test_unpicklable_closure_is_refused_with_the_reason(conn):
    lock = threading.Lock()

    def guarded(xs):
        with lock:
            return [str(len(x)) for x in xs]

    with pytest.raises(ClipperException, match=r"cannot be pickled with cloudpickle: TypeError: .*lock"):
        deploy(conn, None, guarded)
    assert conn.models == {} and conn.apps == {}


def test_missing_import_fails_at_once_with_the_fresh_process_traceback(conn, tmp_path, monkeypatch):
    (tmp_path / "only_here.py").write_text("class Scaler:\n    factor = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here

    scaler = only_here.Scaler()

    def scaled(xs):
        return [str(scaler.factor * len(x)) for x in xs]

    with pytest.raises(ClipperException) as e:
        deploy(conn, None, scaled, name="scaled")
    msg = str(e.value)
    assert "failed to load in a fresh Python process" in msg
    assert "Traceback" in msg and "ModuleNotFoundError: No module named 'only_here'" in msg
    assert conn.models == {} and conn.apps == {}


@pytest.mark.parametrize("func,msg", [
    (lambda xs: [str(len(xs))], "Expected model to return 3 outputs, found 1 outputs"),
    (lambda xs: [len(x) for x in xs], "output 0 is int"),
    (lambda xs: ",".join(str(len(x)) for x in xs), "returned str"),
])
def test_sample_input_with_wrong_outputs_refuses_the_deploy(conn, func, msg):
    with pytest.raises(ClipperException, match=msg):
        deploy(conn, None, func, name="bad-outputs", sample_inputs=[[1.0], [2.0, 3.0], [4.0]])
    assert conn.models == {} and conn.apps == {}


def test_sample_inputs_are_checked_against_the_input_type(conn):
    with pytest.raises(ClipperException, match=r"sample input 0\[0\] is str"):
        deploy(conn, None, centered_sum, sample_inputs=[["x"]])


def test_existing_app_with_another_input_type_is_an_error(conn):
    conn.register_application("centered-sum", "strings", "None", 1000)
    with pytest.raises(ClipperException, match="exists with input_type 'strings'"):
        deploy(conn, None, centered_sum)
