"""The hook specifications every clipper-deploy framework plugin implements.

A plugin is a module (or object) registered under the entry-point group ``clipper_deploy``.
Once the core has chosen a plugin for a model (by type at deploy time, by the bundle manifest at
load time) it calls *that plugin's* hooks only, so an implementation never has to check whether a
call is meant for it. Every hook but ``model_types`` and ``preload_modules`` (asked of every plugin) is
``firstresult``: the chosen plugin's answer is the answer.

Plugin modules must not import their framework at module level: ``model_types`` is called for
every deploy, including deploys that have nothing to do with the framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ..bundle.manifest import Manifest

PROJECT = "clipper_deploy"
#: Bumped on an incompatible change to a hook's contract; written into every bundle manifest.
HOOK_API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: What ``predict_wrapper`` returns: a batch in, one output per input out.
PredictFn = Callable[[Any], Sequence[str]]


@hookspec
def model_types() -> Sequence[str | tuple[str, int]]:
    """Declare the model classes this plugin handles, as qualified class names.

    :returns: names such as ``"torch.nn.Module"``, or ``(name, priority)`` pairs. A model is
        claimed when one of these names denotes a class in ``type(model).__mro__``. Aliases work
        (``torch.nn.Module`` matches ``torch.nn.modules.module.Module``), resolved through
        ``sys.modules`` only, so nothing is imported. Across plugins the most specific match
        (earliest in the MRO) wins; between equally specific matches the higher priority
        (default 0) wins; a remaining tie is an error asking the caller for ``framework=``.

    Called: on every ``deploy()`` without ``framework=``, and by ``clipper-deploy plugins``.
    Unlike the other hooks it is called on every plugin; each returns its own list.

    Example::

        @hookimpl
        def model_types():
            return ["sklearn.base.BaseEstimator"]
    """


@hookspec
def preload_modules() -> Sequence[str]:
    """Declare the modules a local cluster's replica template may import once and fork this plugin's replicas
    from, so a replica starts without importing the framework again.

    :returns: module names such as ``["torch"]``; ``[]`` (or no implementation) for none. Name only modules that
        start no thread and choose nothing (such as a backend or a device) at import: a fork keeps the memory but
        not the threads. Every bundle the plugin saves records them in its manifest.

    Called: once per plugin when the registry loads it (for ``clipper-deploy plugins`` and for every deploy). A
    local cluster started with the default ``preload`` warms the template as soon as the deploying process first
    imports one of these modules, so the template imports the framework while the user's script does.
    Like ``model_types``, it is called on every plugin; each returns its own list.

    Example::

        @hookimpl
        def preload_modules():
            return ["torch"]
    """


@hookspec(firstresult=True)
def save_model(model: Any, model_dir: Path, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Write ``model`` into the empty directory ``model_dir`` in the framework's own format.

    :param model: the object passed to ``deploy()`` (or the seed's ``deploy_<fw>_model``).
    :param model_dir: an existing, empty directory inside the bundle; write only inside it.
    :param options: framework-specific deploy arguments (for example ``{"sc": spark_context}``
        for PySpark, ``{"mxnet_data_shapes": [...]}`` for MXNet); ``{}`` when there are none.
    :returns: a mapping with two optional keys, both recorded in the manifest:
        ``"framework_versions"`` (``{"torch": "2.13.0"}``: distribution name to version)
        and ``"metadata"`` (JSON-serialisable facts ``load_model`` needs, such as a concrete class name).
        Raise ``ClipperException`` for a model the plugin cannot save. (Modules to preload are declared by
        ``preload_modules``.)

    Called: once per deploy, in the deploying process, before the bundle's files are hashed.

    Example::

        @hookimpl
        def save_model(model, model_dir, options):
            import joblib, sklearn
            joblib.dump(model, model_dir / "model.joblib")
            return {"framework_versions": {"scikit-learn": sklearn.__version__}}
    """


@hookspec(firstresult=True)
def load_model(model_dir: Path, manifest: Manifest) -> Any:
    """Read back what ``save_model`` wrote and return the object the predict function receives.

    :param model_dir: the bundle's model directory, already verified against its sha256 digests.
    :param manifest: the bundle manifest; ``manifest.model_metadata`` is what ``save_model``
        returned as ``"metadata"``, ``manifest.framework_versions`` its versions.
    :returns: the loaded model, ready for inference (eval mode, on its device). For a plugin with
        no model (the closure plugin) return ``None``.

    Called: once per replica start, and once in the fresh process that checks a bundle before a
    deploy ships it. The framework may be imported here.

    Example::

        @hookimpl
        def load_model(model_dir, manifest):
            import joblib
            return joblib.load(model_dir / "model.joblib")
    """


@hookspec(firstresult=True)
def base_image(python_version: str) -> str:
    """Name the container image a model of this framework is built ``FROM``.

    :param python_version: ``"3.11"``: the Python minor that pickled the predict function. The
        image must run the same minor, since cloudpickle output only loads there.
    :returns: an image reference such as ``"clipper-deploy/pytorch:py3.11"``.

    Called: when a deploy uses ``base_image="default"`` and the container manager builds images.

    Example::

        @hookimpl
        def base_image(python_version):
            return f"clipper-deploy/sklearn:py{python_version}"
    """


@hookspec(firstresult=True)
def predict_wrapper(func: Callable[..., Any], model: Any, manifest: Manifest) -> PredictFn:
    """Combine the user's predict function and the loaded model into a batch predictor.

    :param func: the user's function, unpickled from the bundle.
    :param model: what ``load_model`` returned.
    :param manifest: the bundle manifest.
    :returns: a callable taking one batch (see :mod:`clipper_deploy_core.inputs` for its form)
        and returning one string per input. The core checks that contract on every call and
        reports a breach as a ``PredictContractError``; the wrapper need not check it.

    Called: once per replica start, right after ``load_model``.

    Example::

        @hookimpl
        def predict_wrapper(func, model, manifest):
            return lambda inputs: func(model, inputs)
    """
