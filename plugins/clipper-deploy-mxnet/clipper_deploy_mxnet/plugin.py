"""The clipper-deploy hooks for MXNet. mxnet is imported inside the hooks only.

- A ``mx.mod.Module`` is saved as the seed says, ``save_checkpoint(prefix, epoch=0)``, with its data
  shapes recorded. The replica hands the predict function a :class:`RebindingModule`: a module bound
  for batch 1 cannot be grown by MXNet's own reshape, so each new batch shape gets its own bound
  module (sharing the parameters), cached, and ``forward``/``predict`` pick the one that fits.
- A Gluon ``HybridBlock`` is hybridized, run once on zeros of the recorded shape, and exported;
  the replica loads it with ``SymbolBlock.imports``, which takes any batch size. Without
  ``mxnet_data_shapes``, a block whose input feeds a ``Dense`` layer that has run forward (so its weight has
  a shape) gets its input shape from that weight.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import importlib_metadata

from clipper_deploy_core import ClipperException, hookimpl

PREFIX = "mxnet_model"
MODULE, GLUON = "module", "gluon"
MAX_BOUND_SHAPES = 16


@hookimpl
def model_types() -> list[str]:
    return ["mxnet.module.base_module.BaseModule", "mxnet.gluon.block.HybridBlock"]


def _shapes(data_shapes: Any) -> list[dict[str, Any]]:
    """``DataDesc`` objects or ``(name, shape)`` pairs, as JSON."""
    if not data_shapes:
        raise ClipperException("MXNet models need mxnet_data_shapes: DataDesc objects (e.g. data_iter.provide_data) "
                               "or (name, shape) pairs")
    out = []
    for d in data_shapes:
        name, shape = (d.name, d.shape) if hasattr(d, "name") else (d[0], d[1])
        if not isinstance(name, str) or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ClipperException(f"Invalid MXNet data shape {d!r}: expected a name and positive integer dimensions")
        out.append({"name": name, "shape": [int(s) for s in shape]})
    return out


@hookimpl
def save_model(model: Any, model_dir: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    import mxnet as mx

    if set(options) - {"mxnet_data_shapes"}:
        raise ClipperException(f"clipper-deploy-mxnet takes one option, mxnet_data_shapes; got {sorted(options)}")
    given = options.get("mxnet_data_shapes")
    if not given and isinstance(model, mx.gluon.HybridBlock):
        given = _gluon_input_shapes(model)
    shapes = _shapes(given)
    prefix = str(model_dir / PREFIX)
    if isinstance(model, mx.module.BaseModule):
        model.save_checkpoint(prefix, 0)
        form = MODULE
    elif isinstance(model, mx.gluon.HybridBlock):
        model.hybridize()
        model(*[mx.nd.zeros(tuple(s["shape"])) for s in shapes])  # export needs one traced forward pass
        model.export(prefix, epoch=0)
        form = GLUON
    else:
        raise ClipperException(f"clipper-deploy-mxnet takes a mx.mod.Module or a Gluon HybridBlock, "
                               f"not {type(model).__name__}")
    return {"framework_versions": {"mxnet": importlib_metadata.version("mxnet")},
            "metadata": {"form": form, "data_shapes": shapes}}


def _gluon_input_shapes(block: Any) -> list[tuple[str, tuple[int, ...]]]:
    """``[("data", (1, in_units))]`` for a single-input block whose input goes straight into a ``Dense`` layer with a
    known weight (it has run forward, or was built with ``in_units``); else a ``ClipperException`` asking for shapes."""
    import json

    import mxnet as mx

    hint = ("cannot infer this Gluon block's input shape; pass mxnet_data_shapes=[('data', (1, ...))] (the shape of "
            "one input)")
    try:
        out = block(mx.sym.var("data"))
    except Exception as e:  # any block that cannot be traced on one symbol input
        raise ClipperException(f"clipper-deploy-mxnet {hint}: tracing it failed ({type(e).__name__}: {e})") from e
    nodes = json.loads(out.tojson())["nodes"]
    data = next(i for i, n in enumerate(nodes) if n["op"] == "null" and n["name"] == "data")
    first = next((n for n in nodes if any(inp[0] == data for inp in n["inputs"])), None)
    if first is None or first["op"] != "FullyConnected":
        raise ClipperException(f"clipper-deploy-mxnet {hint}: its input feeds {first and first['op']!r}, not a "
                               f"Dense layer")
    weights = {p.name: p.shape for p in block.collect_params().values()}
    shape = weights.get(nodes[first["inputs"][1][0]]["name"], ())
    if len(shape) != 2 or not shape[1]:
        raise ClipperException(f"clipper-deploy-mxnet {hint}: its first Dense layer has not run forward yet")
    return [("data", (1, int(shape[1])))]


class RebindingModule:
    """A ``mx.mod.Module`` stand-in that serves any batch size.

    ``forward(batch)`` and ``predict(data_iter)`` run on a module bound for exactly that batch's
    shapes (bound once, cached, parameters shared); everything else is the last module used.
    """

    def __init__(self, symbol: Any, arg_params: Any, aux_params: Any, data_shapes: list[dict[str, Any]]) -> None:
        self._symbol, self._args, self._aux = symbol, arg_params, aux_params
        self._names = [d["name"] for d in data_shapes]
        self._bound: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()
        self._current = self._module(tuple((d["name"], tuple(d["shape"])) for d in data_shapes))

    def _module(self, shapes: tuple[Any, ...]) -> Any:
        import mxnet as mx

        if shapes in self._bound:
            self._bound.move_to_end(shapes)
            return self._bound[shapes]
        module = mx.mod.Module(symbol=self._symbol, data_names=self._names, label_names=None)
        module.bind(data_shapes=list(shapes), for_training=False)
        module.set_params(self._args, self._aux, allow_missing=True)
        self._bound[shapes] = module
        if len(self._bound) > MAX_BOUND_SHAPES:
            self._bound.popitem(last=False)
        return module

    def _for(self, descs: Any) -> Any:
        self._current = self._module(tuple((d.name if hasattr(d, "name") else d[0],
                                            tuple(d.shape if hasattr(d, "shape") else d[1])) for d in descs))
        return self._current

    def forward(self, data_batch: Any, is_train: bool | None = False) -> None:
        descs = data_batch.provide_data or [(n, a.shape) for n, a in zip(self._names, data_batch.data, strict=True)]
        self._for(descs).forward(data_batch, is_train=False)

    def predict(self, eval_data: Any, *args: Any, **kwargs: Any) -> Any:
        return self._for(eval_data.provide_data).predict(eval_data, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current, name)


@hookimpl
def load_model(model_dir: Path, manifest: Any) -> Any:
    import mxnet as mx

    meta = manifest.model_metadata
    prefix = str(model_dir / PREFIX)
    if meta["form"] == GLUON:
        n = len(meta["data_shapes"])
        names = ["data"] if n == 1 else [f"data{i}" for i in range(n)]  # the names HybridBlock.export gives
        return mx.gluon.nn.SymbolBlock.imports(f"{prefix}-symbol.json", names, f"{prefix}-0000.params")
    symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, 0)
    return RebindingModule(symbol, arg_params, aux_params, meta["data_shapes"])


@hookimpl
def base_image(python_version: str) -> str:
    return f"clipper-deploy/mxnet:py{python_version}-mxnet{importlib_metadata.version('mxnet')}"


@hookimpl
def predict_wrapper(func: Callable[..., Any], model: Any, manifest: Any) -> Callable[[Any], Any]:
    return lambda inputs: func(model, inputs)
