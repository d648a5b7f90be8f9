"""A conformance kit for plugin authors: prove a plugin honours the hook contracts in a few lines.

Either call :func:`check_conformance` from a test, or subclass :class:`PluginConformance`::

    from clipper_deploy_core.testing import ConformanceCase, PluginConformance

    class TestMyPlugin(PluginConformance):
        @staticmethod
        def case():
            model = train_small_model()
            return ConformanceCase(framework="myfw", model=model, func=predict,
                                   sample_inputs=[[1.0, 2.0], [3.0, 4.0]], expected_outputs=["0", "1"])
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bundle import FUNC_NAME, MANIFEST_NAME, load_bundle, read_manifest, save_bundle, verify_bundle
from ..bundle.check import run_check, to_wire
from ..exceptions import BundleIntegrityError
from ..inputs import canonical_input_type, validate_input
from ..plugin import HOOK_API_VERSION, get_registry, select_plugin
from .cluster import local_cluster, outputs, predict, query, seed_signature, signature, wait_until


@dataclass
class ConformanceCase:
    """One model, its predict function, a batch of sample inputs and the outputs they must give."""

    framework: str
    model: Any
    func: Callable[..., Any]
    sample_inputs: Sequence[Any]
    expected_outputs: Sequence[str]
    input_type: str = "doubles"
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str = "conformance"


class ConformanceError(AssertionError):
    """A plugin broke a hook contract."""


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConformanceError(msg)


@contextmanager
def saved_bundle(case: ConformanceCase) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="clipper-conformance-"))
    try:
        yield save_bundle(tmp / "bundle", name=case.name, version=1, input_type=case.input_type, func=case.func,
                          model=case.model, plugin=case.framework, options=case.options)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wire(case: ConformanceCase, inputs: Sequence[Any]) -> list[Any]:
    it = canonical_input_type(case.input_type)
    return [validate_input(it, x) for x in to_wire(it, inputs)]


def check_detection(case: ConformanceCase) -> None:
    """``deploy()`` picks this plugin for this model, and the plugin names itself in ``plugins``."""
    registry = get_registry()
    info = registry.info(case.framework)
    for hook in ("save_model", "load_model", "base_image", "predict_wrapper"):
        _require(hook in info.hooks, f"plugin {case.framework!r} does not implement {hook}")
    if case.model is not None:
        chosen = select_plugin(case.model, registry)
        _require(chosen == case.framework, f"deploy() chose plugin {chosen!r} for {type(case.model)}, "
                                           f"expected {case.framework!r}")
    image = registry.call(case.framework, "base_image", python_version="3.11")
    _require(isinstance(image, str) and bool(image), f"base_image returned {image!r}, expected an image name")


def check_round_trip(case: ConformanceCase) -> None:
    """Save, then load in a fresh process and predict there: outputs equal the expected ones."""
    with saved_bundle(case) as bundle:
        manifest = read_manifest(bundle)
        _require(manifest.plugin.name == case.framework and manifest.plugin.api_version == HOOK_API_VERSION,
                 f"manifest names plugin {manifest.plugin}, expected {case.framework!r}")
        outputs = run_check(bundle, canonical_input_type(case.input_type), case.sample_inputs)
        _require(outputs == list(case.expected_outputs),
                 f"fresh-process outputs {outputs!r} != expected {list(case.expected_outputs)!r}")


def check_predict(case: ConformanceCase) -> None:
    """Loaded in this process, the wrapped predict gives the expected outputs."""
    with saved_bundle(case) as bundle:
        outputs = load_bundle(bundle).predict(_wire(case, case.sample_inputs))
        _require(outputs == list(case.expected_outputs), f"outputs {outputs!r} != {list(case.expected_outputs)!r}")


def check_batch_contract(case: ConformanceCase) -> None:
    """Batches of one, the whole batch and the batch reversed agree input by input."""
    with saved_bundle(case) as bundle:
        loaded = load_bundle(bundle)
        wire = _wire(case, case.sample_inputs)
        expected = list(case.expected_outputs)
        for i, x in enumerate(wire):
            got = loaded.predict([x])
            _require(got == [expected[i]], f"batch of one with input {i} gave {got!r}, expected {[expected[i]]!r}")
        got = loaded.predict(list(reversed(wire)))
        _require(got == expected[::-1], f"the reversed batch gave {got!r}, expected {expected[::-1]!r}")


def check_integrity(case: ConformanceCase) -> None:
    """Every file the plugin writes is hashed: changing, truncating or adding one fails the load."""
    with saved_bundle(case) as bundle:
        manifest = verify_bundle(bundle)
        model_files = [f for f in manifest.files if f != FUNC_NAME]
        for rel in model_files or [FUNC_NAME]:
            path = bundle / rel
            original = path.read_bytes()
            changes = [original + b"\0"] + ([original[: len(original) // 2]] if original else [])
            for tampered in changes:
                path.write_bytes(tampered)
                try:
                    verify_bundle(bundle)
                except BundleIntegrityError:
                    pass
                else:
                    raise ConformanceError(f"changing {rel} was not detected")
            path.write_bytes(original)
        extra = bundle / "model" / "injected.py"
        extra.parent.mkdir(exist_ok=True)
        extra.write_text("print('not part of the bundle')\n")
        try:
            verify_bundle(bundle)
        except BundleIntegrityError:
            pass
        else:
            raise ConformanceError("an extra file in the bundle was not detected")
        _require((bundle / MANIFEST_NAME).is_file(), "manifest missing")


_IMPORT_AND_COUNT_THREADS = ("import importlib, sys, threading\n"
                             "for m in sys.argv[1:]: importlib.import_module(m)\n"
                             "print(threading.active_count())")


def check_preload(case: ConformanceCase) -> None:
    """What ``preload_modules`` declares is recorded in every bundle, imports in a fresh process, and leaves no
    Python thread running there (a template forks after the import, and a fork keeps no threads)."""
    preload = list(get_registry().info(case.framework).preload)
    with saved_bundle(case) as bundle:
        recorded = read_manifest(bundle).preload
        _require(recorded == preload, f"the manifest records preload {recorded!r}, preload_modules says {preload!r}")
    if not preload:
        return
    done = subprocess.run([sys.executable, "-c", _IMPORT_AND_COUNT_THREADS, *preload],
                          capture_output=True, text=True, timeout=600)
    _require(done.returncode == 0, f"importing {preload} in a fresh process failed:\n{done.stderr[-2000:]}")
    threads = int(done.stdout.split()[-1])
    _require(threads == 1, f"importing {preload} left {threads - 1} Python thread(s) running; a replica template "
                           f"forks after the import, so preload_modules must name only modules that start none")


CHECKS: tuple[Callable[[ConformanceCase], None], ...] = (
    check_detection, check_round_trip, check_predict, check_batch_contract, check_integrity, check_preload)


def check_conformance(case: ConformanceCase) -> None:
    """Run every check; raise :class:`ConformanceError` on the first breach."""
    for check in CHECKS:
        check(case)


class PluginConformance:
    """Subclass in a plugin's test suite and implement ``case()``; pytest collects one test per check."""

    @staticmethod
    def case() -> ConformanceCase:
        raise NotImplementedError("return a ConformanceCase")

    def test_detection(self) -> None:
        check_detection(self.case())

    def test_round_trip_in_fresh_process(self) -> None:
        check_round_trip(self.case())

    def test_predict(self) -> None:
        check_predict(self.case())

    def test_batch_contract(self) -> None:
        check_batch_contract(self.case())

    def test_bundle_integrity(self) -> None:
        check_integrity(self.case())

    def test_preload_modules(self) -> None:
        check_preload(self.case())



__all__ = ["CHECKS", "ConformanceCase", "ConformanceError", "PluginConformance", "check_batch_contract",
           "check_conformance", "check_detection", "check_integrity", "check_predict", "check_preload",
           "check_round_trip",
           "local_cluster", "outputs", "predict", "query", "seed_signature", "signature", "wait_until"]
