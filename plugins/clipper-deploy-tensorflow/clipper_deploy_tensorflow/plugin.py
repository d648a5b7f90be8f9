"""The clipper-deploy hooks for TensorFlow. tensorflow is imported inside the hooks only.

Forms, recorded in the manifest so that loading needs no guessing:
- ``session``: a TF1 session, saved as a checkpoint with its meta graph (``tf.compat.v1.train.Saver``);
  a checkpoint directory given as a path is copied as it is. Loaded into a fresh graph and session.
- ``tf1-savedmodel``: a SavedModel written from TF1 code; loaded into a session (``serve`` tag).
- ``tf2-savedmodel``: a ``tf.Module`` (saved with ``tf.saved_model.save``) or a TF2 SavedModel path;
  loaded with ``tf.saved_model.load`` and handed to the predict function as that object.
A SavedModel path is TF2 when its meta graph carries an object graph, which TF1 builders never write.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import importlib_metadata

from clipper_deploy_core import ClipperException, hookimpl

SESSION, TF1_SAVED, TF2_SAVED = "session", "tf1-savedmodel", "tf2-savedmodel"
CHECKPOINT_PARTS = {"checkpoint": "checkpoint", "*.meta": "*.meta", "*.index": "*.index", "*.data*": "*.data-*"}


def _tf_distribution() -> dict[str, str]:
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return {dist: importlib_metadata.version(dist)}
        except importlib_metadata.PackageNotFoundError:
            continue
    raise ClipperException("TensorFlow is not installed: pip install tensorflow-cpu")


@hookimpl
def model_types() -> list[str]:
    # Narrow on purpose: keras.Model is a TensorFlow trackable too, and belongs to the keras plugin.
    return ["tensorflow.python.client.session.Session", "tensorflow.Module"]


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _is_tf2_saved_model(path: Path) -> bool:
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    return any(len(mg.object_graph_def.nodes) > 0 for mg in sm.meta_graphs)


def _save_path(src: Path, dest: Path) -> str:
    if not src.exists():
        raise ClipperException(f"TensorFlow model path {src} does not exist")
    if src.is_dir() and (src / "saved_model.pb").is_file():
        shutil.copytree(src, dest / "savedmodel")
        return TF2_SAVED if _is_tf2_saved_model(dest / "savedmodel") else TF1_SAVED
    if (src.is_dir() and any(src.glob("*.meta"))) or (src / "checkpoint").is_file():
        missing = [label for label, pattern in CHECKPOINT_PARTS.items() if not list(src.glob(pattern))]
        if missing:
            raise ClipperException(f"Checkpoint directory {src} is missing: {', '.join(missing)}")
        shutil.copytree(src, dest / "checkpoint")
        return SESSION
    raise ClipperException(
        f"{src} is neither a SavedModel directory (saved_model.pb is missing) nor a checkpoint directory "
        f"(missing: {', '.join(label for label, p in CHECKPOINT_PARTS.items() if not list(src.glob(p)))})"
        if src.is_dir() else f"{src} is a file; give a SavedModel or checkpoint directory")


@hookimpl
def save_model(model: Any, model_dir: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    _quiet()
    if options:
        raise ClipperException(f"clipper-deploy-tensorflow takes no options, got {sorted(options)}")
    import tensorflow as tf

    if isinstance(model, str | os.PathLike):
        form = _save_path(Path(model), model_dir)
    elif isinstance(model, tf.compat.v1.Session):
        (model_dir / "checkpoint").mkdir()
        with model.graph.as_default():
            prefix = str(model_dir / "checkpoint" / "model.ckpt")
            if tf.compat.v1.global_variables():
                tf.compat.v1.train.Saver().save(model, prefix)
            else:  # a graph without variables: the meta graph is the whole model
                tf.compat.v1.train.export_meta_graph(prefix + ".meta")
        form = SESSION
    elif isinstance(model, tf.Module):
        tf.saved_model.save(model, str(model_dir / "savedmodel"))
        form = TF2_SAVED
    else:
        raise ClipperException(f"clipper-deploy-tensorflow takes a tf.compat.v1.Session, a tf.Module or a path, "
                               f"not {type(model).__name__}")
    return {"framework_versions": _tf_distribution(), "metadata": {"form": form}}


@hookimpl
def load_model(model_dir: Path, manifest: Any) -> Any:
    _quiet()
    import tensorflow as tf

    form = manifest.model_metadata["form"]
    if form == TF2_SAVED:
        return tf.saved_model.load(str(model_dir / "savedmodel"))
    graph = tf.Graph()
    sess = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        if form == TF1_SAVED:
            tf.compat.v1.saved_model.loader.load(sess, [tf.compat.v1.saved_model.tag_constants.SERVING],
                                                 str(model_dir / "savedmodel"))
            return sess
        prefix = _checkpoint_prefix(model_dir / "checkpoint")
        meta = Path(prefix + ".meta")
        if not meta.is_file():  # checkpoints written without a meta graph of their own share one
            meta = sorted(meta.parent.glob("*.meta"))[0]
        saver = tf.compat.v1.train.import_meta_graph(str(meta), clear_devices=True)
        if saver is not None and Path(prefix + ".index").is_file():
            saver.restore(sess, prefix)
    return sess


def _checkpoint_prefix(ckpt_dir: Path) -> str:
    """The newest checkpoint's prefix inside ``ckpt_dir``. The ``checkpoint`` file may hold absolute
    paths from the machine that wrote it, so only its base name is trusted."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(str(ckpt_dir))
    if state is not None and state.model_checkpoint_path:
        candidate = ckpt_dir / Path(state.model_checkpoint_path).name
        if Path(str(candidate) + ".index").is_file() or Path(str(candidate) + ".meta").is_file():
            return str(candidate)
    newest = max(ckpt_dir.glob("*.meta"), key=lambda p: p.stat().st_mtime)
    return str(newest)[: -len(".meta")]


@hookimpl
def base_image(python_version: str) -> str:
    version = next(iter(_tf_distribution().values()))
    return f"clipper-deploy/tensorflow:py{python_version}-tf{version}"


@hookimpl
def predict_wrapper(func: Callable[..., Any], model: Any, manifest: Any) -> Callable[[Any], Any]:
    return lambda inputs: func(model, inputs)
