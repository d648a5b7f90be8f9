"""Discovery, env-var knobs, dispatch by type, and lazy imports."""

import json
import subprocess
import sys

import importlib_metadata
import pytest
import toy_models

from clipper_deploy_core import ClipperException, hookimpl
from clipper_deploy_core.plugin import PluginLoadWarning, PluginRegistry, get_registry, select_plugin
from clipper_deploy_core.plugin.manager import load_plugins

from .conftest import run_python

FRAMEWORK_MODULES = ("torch", "tensorflow", "pyspark", "mxnet", "keras", "onnx", "onnxruntime")


def test_toy_plugin_is_discovered_by_entry_point():
    info = get_registry().info("toy")
    assert info.distribution == "clipper-deploy-toy" and info.version == "0.3.0"
    assert info.model_types == ("toy_models.Polynomial",) and not info.builtin
    assert {"save_model", "load_model", "base_image", "predict_wrapper", "model_types"} <= set(info.hooks)


def test_builtin_closure_plugin_registers_like_any_other():
    info = get_registry().info("python")
    assert info.builtin and info.distribution == "clipper-deploy-core"
    assert info.module == "clipper_deploy_core.default_plugins.python_closure"


def test_plugins_cli_json_lists_versions_and_types():
    out = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", "plugins", "--json"],
                         capture_output=True, text=True, check=True).stdout
    by_name = {p["name"]: p for p in json.loads(out)}
    assert by_name["toy"]["version"] == "0.3.0" and by_name["toy"]["model_types"] == ["toy_models.Polynomial"]
    assert by_name["toy"]["preload"] == ["toy_models"] and by_name["python"]["preload"] == []
    assert by_name["python"]["builtin"] is True
    table = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", "plugins"],
                           capture_output=True, text=True, check=True).stdout
    assert "clipper-deploy-toy" in table and "toy_models.Polynomial" in table


def _ep(name, value):
    """An installed entry point when one has that name, else one not attached to any distribution."""
    for ep in importlib_metadata.entry_points(group="clipper_deploy"):
        if ep.name == name and ep.value == value:
            return ep
    return importlib_metadata.EntryPoint(name=name, value=value, group="clipper_deploy")


def test_a_plugin_that_fails_to_load_warns_by_name_and_the_others_work():
    eps = [_ep("broken", "clipper_deploy_toy.broken"), _ep("toy", "clipper_deploy_toy")]
    with pytest.warns(PluginLoadWarning, match="'broken'.*ImportError"):
        registry = load_plugins(PluginRegistry(), eps)
    assert [i.name for i in registry.infos()] == ["python", "toy"]
    assert select_plugin(toy_models.Polynomial([1]), registry) == "toy"


def test_strict_mode_raises_on_a_broken_plugin(monkeypatch):
    monkeypatch.setenv("CLIPPER_DEPLOY_STRICT_PLUGINS", "1")
    with pytest.raises(ClipperException, match="'broken'.*failed to load"):
        load_plugins(PluginRegistry(), [_ep("broken", "clipper_deploy_toy.broken")])


@pytest.mark.parametrize("env,expected", [
    ({"CLIPPER_DEPLOY_DISABLED_PLUGINS": "toy"}, ["python"]),
    ({"CLIPPER_DEPLOY_DISABLED_PLUGINS": "python,toy"}, []),
    ({"CLIPPER_DEPLOY_LOAD_PLUGINS": ""}, ["python"]),
    ({"CLIPPER_DEPLOY_LOAD_PLUGINS": "toy"}, ["python", "toy"]),
])
def test_env_vars_disable_or_select_plugins(env, expected):
    proc = run_python("import json; from clipper_deploy_core.plugin import get_registry;"
                      "print(json.dumps([i.name for i in get_registry().infos()]))", env=env)
    assert proc.returncode == 0, proc.stderr
    names = json.loads(proc.stdout)
    assert names == expected or (set(names) - {"toy", "python"} and set(expected) <= set(names))


def test_trace_env_var_logs_hook_calls():
    proc = run_python("from clipper_deploy_core.plugin import get_registry; get_registry()",
                      env={"CLIPPER_DEPLOY_TRACE_PLUGINS": "1"})
    assert "model_types" in proc.stderr


def test_subclass_is_claimed_through_its_base():
    assert select_plugin(toy_models.Quadratic([0, 0, 1]), get_registry()) == "toy"


def test_declared_alias_matches_without_importing(monkeypatch):
    class AliasPlugin:
        @hookimpl
        def model_types(self):
            return ["json.JSONDecoder"]  # the class lives in json.decoder

    registry = load_plugins(PluginRegistry(), [])
    registry.register(AliasPlugin(), "alias", "alias-dist", "1.0")
    import json as _json

    assert select_plugin(_json.JSONDecoder(), registry) == "alias"


def test_two_plugins_claiming_a_model_is_an_error_naming_both():
    class Rival:
        @hookimpl
        def model_types(self):
            return ["toy_models.Polynomial"]

    registry = load_plugins(PluginRegistry(), [_ep("toy", "clipper_deploy_toy")])
    registry.register(Rival(), "rival", "clipper-deploy-rival", "9.9")
    with pytest.raises(ClipperException) as e:
        select_plugin(toy_models.Polynomial([1]), registry)
    msg = str(e.value)
    assert "More than one plugin" in msg and "toy (clipper-deploy-toy" in msg and "rival (clipper-deploy-rival" in msg
    assert "framework=" in msg
    assert select_plugin(toy_models.Polynomial([1]), registry, framework="rival") == "rival"


def test_the_most_specific_claim_wins():
    class Specific:
        @hookimpl
        def model_types(self):
            return ["toy_models.Quadratic"]

    registry = load_plugins(PluginRegistry(), [_ep("toy", "clipper_deploy_toy")])
    registry.register(Specific(), "quad", "quad-dist", "1.0")
    assert select_plugin(toy_models.Quadratic([1]), registry) == "quad"
    assert select_plugin(toy_models.Polynomial([1]), registry) == "toy"


def test_no_plugin_names_the_type():
    class Forest:
        pass

    with pytest.raises(ClipperException, match=r"No clipper-deploy plugin claims model type .*Forest.*model=None"):
        select_plugin(Forest(), get_registry())


def test_no_plugin_for_a_known_framework_gives_the_pip_command():
    # Stand-in for torch.nn.Module: the core test venv has no torch; the pytorch plugin's own suite
    # checks the same message with real torch and the plugin disabled.
    fake_module_cls = type("Module", (), {"__module__": "torch.nn.modules.module"})
    with pytest.raises(ClipperException, match="pip install clipper-deploy-pytorch"):
        select_plugin(fake_module_cls(), get_registry())


def test_unknown_framework_name_is_an_error():
    with pytest.raises(ClipperException, match="No clipper-deploy plugin named 'nope'"):
        select_plugin(None, get_registry(), framework="nope")


def test_deploying_a_plain_function_imports_no_framework(tmp_path):
    code = f"""
import sys, json
sys.path.insert(0, {str(tmp_path)!r})
from tests.conftest import RecordingConnection
from clipper_deploy_core import deploy
from clipper_deploy_core.plugin import get_registry
import pathlib
def double(xs):
    return [str(2 * sum(x)) for x in xs]
conn = RecordingConnection(pathlib.Path({str(tmp_path)!r}))
deploy(conn, None, double, sample_inputs=[[1.0, 2.0]])
print(json.dumps({{"plugins": [i.name for i in get_registry().infos()],
                  "loaded": sorted(m for m in {FRAMEWORK_MODULES!r} if m in sys.modules)}}))
"""
    import pathlib

    proc = run_python(code, cwd=pathlib.Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "python" in result["plugins"]
    assert result["loaded"] == [], f"deploying a closure imported {result['loaded']}"


def test_priority_breaks_a_tie_between_equally_specific_claims():
    class Preferred:
        @hookimpl
        def model_types(self):
            return [("toy_models.Polynomial", 10)]

    registry = load_plugins(PluginRegistry(), [_ep("toy", "clipper_deploy_toy")])
    registry.register(Preferred(), "preferred", "preferred-dist", "1.0")
    assert select_plugin(toy_models.Polynomial([1]), registry) == "preferred"
    assert registry.info("preferred").priorities == {"toy_models.Polynomial": 10}


def test_priority_never_beats_specificity():
    class Broad:
        @hookimpl
        def model_types(self):
            return [("builtins.object", 100)]

    registry = load_plugins(PluginRegistry(), [_ep("toy", "clipper_deploy_toy")])
    registry.register(Broad(), "broad", "broad-dist", "1.0")
    assert select_plugin(toy_models.Quadratic([1]), registry) == "toy"


def test_malformed_model_types_are_refused():
    class Bad:
        @hookimpl
        def model_types(self):
            return [("x.Y", "high")]

    with pytest.raises(ClipperException, match="model_types entries are"):
        load_plugins(PluginRegistry(), []).register(Bad(), "bad", "bad-dist", "1.0")
