"""The bundle format: manifest, hashes, fresh-process load, and the errors a bad bundle gives."""

import json
import platform

import cloudpickle
import pytest

from clipper_deploy_core import BundleError, BundleIntegrityError, ClipperException, PredictContractError
from clipper_deploy_core.bundle import bundle_digest, load_bundle, read_manifest, save_bundle, verify_bundle
from clipper_deploy_core.bundle.check import run_check


class CenteredLinearModel:
    """A scikit-learn-like model in plain Python: fit() learns means and least-squares weights."""

    def fit(self, xs, ys):
        n, d = len(xs), len(xs[0])
        self.means = [sum(x[j] for x in xs) / n for j in range(d)]
        centered = [[x[j] - self.means[j] for j in range(d)] for x in xs]
        # one gradient-free pass per feature: w_j = cov(x_j, y) / var(x_j)
        ybar = sum(ys) / n
        self.w = [sum(c[j] * (y - ybar) for c, y in zip(centered, ys, strict=True))
                  / (sum(c[j] ** 2 for c in centered) or 1.0) for j in range(d)]
        self.b = ybar
        return self

    def predict(self, xs):
        return [self.b + sum(w * (x[j] - m) for j, (w, m) in enumerate(zip(self.w, self.means, strict=True)))
                for x in xs]


@pytest.fixture(scope="module")
def trained():
    xs = [[float(i), float(i % 7), float(i * i % 11)] for i in range(60)]
    ys = [2.0 * x[0] - x[1] + 0.5 * x[2] + 1.0 for x in xs]
    model = CenteredLinearModel().fit(xs, ys)

    def centered_predict(inputs):
        return [repr(p) for p in model.predict(inputs.tolist())]

    return model, centered_predict, xs[:8]


def test_closure_over_a_model_round_trips_in_a_fresh_process(tmp_path, trained):
    model, predict, sample = trained
    bundle = save_bundle(tmp_path / "b", name="linear", version=1, input_type="doubles", func=predict)
    expected = [repr(p) for p in model.predict(sample)]
    assert run_check(bundle, "doubles", sample) == expected
    assert load_bundle(bundle).predict(sample) == expected


def test_manifest_records_everything_needed_to_load(tmp_path, trained):
    _, predict, _ = trained
    bundle = save_bundle(tmp_path / "b", name="linear", version="7", input_type="d", func=predict,
                         pkgs_to_install=["sympy==1.12"])
    raw = json.loads((bundle / "manifest.json").read_text())
    assert raw["format_version"] == 1
    assert (raw["name"], raw["version"], raw["input_type"]) == ("linear", "7", "doubles")
    assert raw["plugin"] == {"name": "python", "distribution": "clipper-deploy-core", "version": "0.1.0",
                             "api_version": 1}
    assert raw["python_version"] == platform.python_version()
    assert raw["cloudpickle_version"] == cloudpickle.__version__
    assert raw["pkgs_to_install"] == ["sympy==1.12"]
    assert set(raw["files"]) == {"func.pkl"} and len(raw["files"]["func.pkl"]) == 64


def test_toy_framework_model_is_saved_natively_and_recorded(tmp_path):
    from toy_models import Polynomial

    bundle = save_bundle(tmp_path / "b", name="poly", version=1, input_type="doubles",
                         func=lambda m, xs: [str(m(sum(x))) for x in xs], model=Polynomial([1, 2, 3]), plugin="toy")
    m = read_manifest(bundle)
    assert "model/polynomial.json" in m.files
    assert m.framework_versions == {"clipper-deploy-toy": "0.3.0"} and m.model_metadata == {"degree": 2}
    assert run_check(bundle, "doubles", [[1.0, 1.0], [0.5]]) == ["17.0", "2.75"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "extra"])
def test_tampered_bundle_is_refused(tmp_path, trained, damage):
    _, predict, _ = trained
    bundle = save_bundle(tmp_path / "b", name="linear", version=1, input_type="doubles", func=predict)
    pkl = bundle / "func.pkl"
    if damage == "flip":
        data = bytearray(pkl.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pkl.write_bytes(bytes(data))
    elif damage == "truncate":
        pkl.write_bytes(pkl.read_bytes()[:10])
    elif damage == "delete":
        pkl.unlink()
    else:
        (bundle / "sitecustomize.py").write_text("import os\n")
    with pytest.raises(BundleIntegrityError, match="failed its integrity check"):
        load_bundle(bundle)
    with pytest.raises(ClipperException, match="BundleIntegrityError"):
        run_check(bundle, "doubles")


def test_manifest_digest_pins_the_manifest(tmp_path, trained):
    _, predict, _ = trained
    bundle = save_bundle(tmp_path / "b", name="linear", version=1, input_type="doubles", func=predict)
    digest = bundle_digest(bundle)
    verify_bundle(bundle, expected_digest=digest)
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["pkgs_to_install"] = ["evil"]
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleIntegrityError, match="does not match the registered digest"):
        verify_bundle(bundle, expected_digest=digest)


def test_wrong_python_minor_is_refused_with_a_message(tmp_path, trained):
    _, predict, _ = trained
    bundle = save_bundle(tmp_path / "b", name="linear", version=1, input_type="doubles", func=predict)
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["python_version"] = "3.9.18"
    (bundle / "manifest.json").write_text(json.dumps(raw))
    here = ".".join(platform.python_version().split(".")[:2])
    with pytest.raises(BundleError, match=rf"pickled by Python 3\.9 .*this is Python {here}"):
        load_bundle(bundle)


def test_bundle_for_a_missing_plugin_says_what_to_install(tmp_path, trained):
    _, predict, _ = trained
    bundle = save_bundle(tmp_path / "b", name="linear", version=1, input_type="doubles", func=predict)
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["plugin"]["name"] = "sklearn"
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="pip install clipper-deploy-sklearn"):
        load_bundle(bundle)


@pytest.mark.parametrize("edit,msg", [
    (lambda raw: raw.update(format_version=99), "format_version 99 is not supported"),
    (lambda raw: raw.pop("plugin"), "not a valid clipper-deploy manifest"),
    (lambda raw: raw["plugin"].update(api_version=2), "hook API 2"),
])
def test_bad_manifests_are_named(tmp_path, trained, edit, msg):
    _, predict, _ = trained
    bundle = save_bundle(tmp_path / "b", name="linear", version=1, input_type="doubles", func=predict)
    raw = json.loads((bundle / "manifest.json").read_text())
    edit(raw)
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=msg):
        load_bundle(bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(tmp_path)


@pytest.mark.parametrize("pkgs", ["numpy", ["--index-url=http://x"], [""], [3]])
def test_pkgs_to_install_must_be_requirement_strings(tmp_path, pkgs):
    with pytest.raises(ClipperException, match="pkgs_to_install"):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=len, pkgs_to_install=pkgs)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


@pytest.mark.parametrize("func,msg", [
    (lambda xs: "one string", "returned str"),
    (lambda xs: ["a"] * (len(xs) + 1), "Expected model to return 2 outputs, found 3"),
    (lambda xs: [1.0 for _ in xs], "output 0 is float"),
])
def test_output_contract_is_enforced(tmp_path, func, msg):
    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=func)
    with pytest.raises(PredictContractError, match=msg):
        load_bundle(bundle).predict([[1.0], [2.0]])


def test_numpy_array_of_strings_is_accepted(tmp_path):
    import numpy as np

    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles",
                         func=lambda xs: np.array([str(x.sum()) for x in xs]))
    assert load_bundle(bundle).predict([[1.0, 2.0], [3.0, 4.0]]) == ["3.0", "7.0"]


def test_closure_plugin_refuses_a_model_object(tmp_path):
    with pytest.raises(ClipperException, match="takes no model object"):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=len, model=object())


def test_a_bundle_of_another_model_version_is_refused_before_it_ships(tmp_path):
    from clipper_deploy_core import LocalContainerManager

    bundle = save_bundle(tmp_path / "b", name="m", version=2, input_type="doubles", func=len)
    assert verify_bundle(bundle, expected_model=("m", "2")).version == "2"
    with pytest.raises(BundleError, match="bundle is m:2, not m:3"):
        verify_bundle(bundle, expected_model=("m", "3"))
    with pytest.raises(BundleError, match="bundle is m:2, not m:3"):  # what a replica told to serve m:3 sees
        load_bundle(bundle, expected_model=("m", "3"))
    cm = LocalContainerManager("mismatch", home=tmp_path / "home")
    with pytest.raises(BundleError, match="bundle is m:2, not other:2"):
        cm.build_model("other", "2", str(bundle), "img")
    assert not (tmp_path / "home" / "clusters" / "mismatch" / "bundles").exists()  # nothing was copied


def test_a_distribution_installed_from_this_clone_is_built_into_the_image_wheelhouse(tmp_path):
    from pathlib import Path

    from clipper_deploy_core.managers.docker.images import local_source, wheelhouse_for

    root = Path(__file__).resolve().parents[1]
    assert local_source("clipper-deploy-core") == root  # the test venvs install the core editable
    assert local_source("pluggy") is None  # from the index
    given = tmp_path / "given"
    given.mkdir()
    (given / "extra-1.0-py3-none-any.whl").write_bytes(b"kept")
    house = wheelhouse_for(["clipper-deploy-core==0.1.0", "pluggy>=1"], given, tmp_path / "house")
    names = sorted(p.name for p in house.glob("*.whl"))
    assert names[0].startswith("clipper_deploy_core-0.1.0-") and "extra-1.0-py3-none-any.whl" in names
    assert wheelhouse_for(["pluggy>=1"], given, tmp_path / "other") == given
