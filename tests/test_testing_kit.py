"""The conformance kit: the toy plugin passes it, and plugins that break a contract fail it."""

import pytest
import toy_models

from clipper_deploy_core import ClipperException, hookimpl
from clipper_deploy_core.bundle import read_manifest, save_bundle
from clipper_deploy_core.plugin import get_registry
from clipper_deploy_core.testing import (
    ConformanceCase,
    ConformanceError,
    PluginConformance,
    check_batch_contract,
    check_conformance,
    check_detection,
    check_preload,
)


def poly_predict(model, xs):
    return [str(model(float(sum(x)))) for x in xs]


def toy_case(**overrides):
    fields = dict(framework="toy", model=toy_models.Polynomial([1.0, -2.0, 0.5]), func=poly_predict,
                  sample_inputs=[[1.0, 2.0], [0.5], [10.0, -3.0, 1.0]],
                  expected_outputs=[str(toy_models.Polynomial([1.0, -2.0, 0.5])(s)) for s in (3.0, 0.5, 8.0)])
    fields.update(overrides)
    return ConformanceCase(**fields)


class TestToyPluginConforms(PluginConformance):
    """What a plugin's own suite looks like: one class, one case."""

    @staticmethod
    def case():
        return toy_case()


def test_check_conformance_runs_everything():
    check_conformance(toy_case())


def test_wrong_expected_outputs_fail():
    with pytest.raises(ConformanceError, match="outputs"):
        check_conformance(toy_case(expected_outputs=["0", "0", "0"]))


class BatchConfused:
    """Answers every input with the first input's prediction: a classic batching bug."""

    @hookimpl
    def model_types(self):
        return []

    @hookimpl
    def save_model(self, model, model_dir, options):
        return {}

    @hookimpl
    def load_model(self, model_dir, manifest):
        return None

    @hookimpl
    def base_image(self, python_version):
        return "confused"

    @hookimpl
    def predict_wrapper(self, func, model, manifest):
        return lambda inputs: [func(inputs[:1])[0]] * len(inputs)


@pytest.fixture
def confused():
    registry = get_registry()
    registry.register(BatchConfused(), "confused", "confused-dist", "0.0.1")
    yield
    registry.unregister("confused")


def test_a_batching_bug_fails_the_batch_contract(confused):
    case = ConformanceCase(framework="confused", model=None, func=lambda xs: [str(sum(x)) for x in xs],
                           sample_inputs=[[1.0], [2.0]], expected_outputs=["1.0", "2.0"])
    with pytest.raises(ConformanceError, match="reversed batch|batch of one"):
        check_batch_contract(case)


def test_a_plugin_that_does_not_claim_its_model_fails_detection(confused):
    case = ConformanceCase(framework="confused", model=toy_models.Polynomial([1]), func=poly_predict,
                           sample_inputs=[[1.0]], expected_outputs=["1"])
    with pytest.raises(ConformanceError, match="chose plugin 'toy'"):
        check_detection(case)


def test_signature_and_seed_signature(tmp_path):
    from clipper_deploy_core.testing import seed_signature, signature

    def f(a, b, c="default", d=None):
        return a

    assert signature(f) == "a, b, c='default', d=None"
    seed = tmp_path / "seed.txt"
    seed.write_text("x.y.f(a, b, c='default', d=None)[source]\nother text\n")
    assert seed_signature("x.y.f", seed) == signature(f)
    assert seed_signature("x.y.g", seed) is None


def test_local_cluster_and_query_helpers(tmp_path):
    from clipper_deploy_core.deployers.python import create_endpoint
    from clipper_deploy_core.testing import local_cluster, outputs, predict, query

    with local_cluster("kit-test", tmp_path) as c:
        create_endpoint(c, "kit", "doubles", lambda xs: [str(len(x)) for x in xs])
        assert predict(c, "kit", {"input": [1.0, 2.0]})["output"] == 2
        assert outputs(c, "kit", [[1.0], [1.0, 2.0, 3.0]]) == [1, 3]
        status, reply = query(c, "kit", b"{broken")
        assert status == 400 and "Error parsing JSON" in reply["cause"]
        with pytest.raises(AssertionError, match="answered 404"):
            predict(c, "nope", {"input": [1.0]})
        pid = c.cm.info["pid"]
    from pathlib import Path

    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"  # gone, or a zombie awaiting its reaper


def test_seed_signatures_are_kept_in_the_repo_and_match_the_document(tmp_path, monkeypatch):
    import json
    from pathlib import Path

    import clipper_deploy_core.testing.cluster as kit
    from clipper_deploy_core.testing import seed_signature

    kept = json.loads((Path(kit.__file__).parent / kit.SEED_SIGNATURES).read_text())
    assert len(kept) == 10 and all(k.startswith("clipper_admin.deployers.") for k in kept)
    monkeypatch.delenv(kit.SEED_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # no shared/ above: the kept signatures answer
    assert seed_signature("clipper_admin.deployers.python.create_endpoint") == kept[
        "clipper_admin.deployers.python.create_endpoint"]
    assert seed_signature("clipper_admin.deployers.nope.f") is None
    document = next((p / "shared" / "seed" / "model-deployers.txt" for p in Path(__file__).resolve().parents
                     if (p / "shared" / "seed" / "model-deployers.txt").is_file()), None)
    if document is not None:  # where the document is at hand, the kept copy says exactly what it says
        assert all(seed_signature(k, document) == v for k, v in kept.items())


class Preloading(BatchConfused):
    """Declares a module to preload; which one is up to the test."""

    def __init__(self, modules, legacy=False):
        self.modules, self.legacy = modules, legacy

    @hookimpl
    def preload_modules(self):
        return [] if self.legacy else self.modules

    @hookimpl
    def save_model(self, model, model_dir, options):
        return {"preload": self.modules} if self.legacy else {}

    @hookimpl
    def predict_wrapper(self, func, model, manifest):
        return func


@pytest.fixture
def preloading():
    registry = get_registry()
    added = []

    def add(modules, legacy=False):
        registry.register(Preloading(modules, legacy), f"preloading{len(added)}", "preloading-dist", "0.0.1")
        added.append(f"preloading{len(added)}")
        return ConformanceCase(framework=added[-1], model=None, func=lambda xs: [str(sum(x)) for x in xs],
                               sample_inputs=[[1.0]], expected_outputs=["1.0"])

    yield add
    for name in added:
        registry.unregister(name)


def test_preload_modules_must_import_and_start_no_thread(preloading, tmp_path, monkeypatch):
    """A template forks after importing what preload_modules names, and the fork keeps no threads: the kit imports
    the modules in a fresh process and fails a module that starts a thread, or that does not import."""
    (tmp_path / "starts_a_thread.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n")
    (tmp_path / "quiet_module.py").write_text("VALUE = 1\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    check_preload(preloading(["quiet_module"]))
    with pytest.raises(ConformanceError, match=r"left 1 Python thread\(s\) running"):
        check_preload(preloading(["starts_a_thread"]))
    with pytest.raises(ConformanceError, match="(?s)failed:.*No module named 'not_installed_here'"):
        check_preload(preloading(["not_installed_here"]))


def test_preload_modules_entries_are_module_names(preloading):
    with pytest.raises(ClipperException, match="preload_modules must be a list of module names"):
        preloading(["torch; import os"])
    with pytest.raises(ClipperException, match="preload_modules must be a list of module names"):
        preloading("torch")


def test_save_models_old_preload_key_is_still_recorded_with_a_warning(preloading, tmp_path):
    case = preloading(["quiet_module"], legacy=True)
    with pytest.warns(DeprecationWarning, match="declare those modules with the preload_modules hook"):
        bundle = save_bundle(tmp_path / "b", name="legacy", version=1, input_type="doubles", func=case.func,
                             model=None, plugin=case.framework)
    assert read_manifest(bundle).preload == ["quiet_module"]
