"""Choose the plugin for a model by its type, without importing any framework."""

from __future__ import annotations

import sys

from ..exceptions import ClipperException
from .manager import PluginRegistry

CLOSURE_PLUGIN = "python"

#: Top-level module of a model's class -> the distribution that serves it (for "no plugin" errors).
KNOWN_FRAMEWORKS: dict[str, str] = {
    "torch": "clipper-deploy-pytorch",
    "onnx": "clipper-deploy-onnx",
    "onnxruntime": "clipper-deploy-onnx",
    "tensorflow": "clipper-deploy-tensorflow",
    "keras": "clipper-deploy-keras",
    "tf_keras": "clipper-deploy-keras",
    "pyspark": "clipper-deploy-pyspark",
    "mxnet": "clipper-deploy-mxnet",
}


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve_loaded(dotted: str) -> object | None:
    """The object ``dotted`` names, looked up through modules already in ``sys.modules`` only."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is None:
            continue
        obj: object = mod
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        return obj
    return None


def _match_rank(mro: tuple[type, ...], declared: str) -> int | None:
    for rank, cls in enumerate(mro):
        if qualname(cls) == declared:
            return rank
    target = _resolve_loaded(declared)
    if isinstance(target, type) and target in mro:
        return mro.index(target)
    return None


def select_plugin(model: object, registry: PluginRegistry, framework: str | None = None) -> str:
    """Return the name of the plugin that handles ``model`` (``None`` means a plain closure).

    The most specific claim (earliest class in ``type(model).__mro__``) wins. Between equally
    specific claims the higher declared priority wins; a remaining tie is an error that
    ``framework=`` resolves.
    """
    if framework is not None:
        registry.info(framework)
        return framework
    if model is None:
        registry.info(CLOSURE_PLUGIN)
        return CLOSURE_PLUGIN
    mro = type(model).__mro__
    claims: dict[str, tuple[int, int, str]] = {}  # plugin -> (MRO rank, -priority, declared type)
    for info in registry.infos():
        ranks = [(r, -info.priorities.get(t, 0), t) for t in info.model_types
                 if (r := _match_rank(mro, t)) is not None]
        if ranks:
            claims[info.name] = min(ranks)
    if not claims:
        raise ClipperException(_no_plugin_message(model))
    best = min(claim[:2] for claim in claims.values())
    winners = sorted(n for n, claim in claims.items() if claim[:2] == best)
    if len(winners) > 1:
        detail = ", ".join(f"{n} ({registry.info(n).distribution}, via {claims[n][2]})" for n in winners)
        raise ClipperException(
            f"More than one plugin claims model type {qualname(type(model))}: {detail}. "
            f"Choose one with framework=, e.g. framework={winners[0]!r}"
        )
    return winners[0]


def _no_plugin_message(model: object) -> str:
    name = qualname(type(model))
    msg = f"No clipper-deploy plugin claims model type {name}."
    for cls in type(model).__mro__:
        dist = KNOWN_FRAMEWORKS.get(cls.__module__.partition(".")[0])
        if dist:
            return f"{msg} It is a {cls.__module__.partition('.')[0]} model: pip install {dist}"
    return (f"{msg} To serve it with a plain Python function, capture it in the function's closure and "
            f"deploy with model=None, or install a plugin for its framework")
