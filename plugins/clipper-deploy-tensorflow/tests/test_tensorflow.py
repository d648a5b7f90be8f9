from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from clipper_deploy_tensorflow import create_endpoint, deploy_tensorflow_model

from clipper_deploy_core import ClipperException, deploy
from clipper_deploy_core.bundle import read_manifest, save_bundle
from clipper_deploy_core.bundle.check import run_check
from clipper_deploy_core.testing import ConformanceCase, PluginConformance, seed_signature, signature
from clipper_deploy_core.testing import predict as served


def make_data(n=200, seed=0):
    """784-int "pixel" vectors, two classes with different bright regions (Clipper's test shape)."""
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, 2, n)
    xs = rng.integers(0, 60, (n, 784))
    xs[ys == 0, :392] += 150
    xs[ys == 1, 392:] += 150
    return xs.astype(np.int32), ys


def train_tf1_session():
    """Clipper's TF1 logistic regression: pixels:0 in, predict_class:0 out."""
    graph = tf.Graph()
    with graph.as_default():
        pixels = tf.compat.v1.placeholder(tf.float32, [None, 784], name="pixels")
        labels = tf.compat.v1.placeholder(tf.int64, [None])
        w = tf.Variable(tf.zeros([784, 2]))
        b = tf.Variable(tf.zeros([2]))
        logits = tf.matmul(pixels / 255.0, w) + b
        tf.argmax(tf.nn.softmax(logits), 1, name="predict_class")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        step = tf.compat.v1.train.GradientDescentOptimizer(0.5).minimize(loss)
        sess = tf.compat.v1.Session(graph=graph)
        sess.run(tf.compat.v1.global_variables_initializer())
        xs, ys = make_data()
        for _ in range(50):
            sess.run(step, feed_dict={pixels: xs, labels: ys})
    return sess


def predict(sess, inputs):  # the seed's function, unchanged
    preds = sess.run("predict_class:0", feed_dict={"pixels:0": inputs})
    return [str(p) for p in preds]


class Scorer(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.linspace(-1, 1, 784 * 2).reshape(784, 2).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32)])
    def __call__(self, x):
        return tf.argmax(tf.matmul(x / 255.0, self.w), axis=1)


def module_predict(model, inputs):
    return [str(int(p)) for p in model(tf.constant(inputs, dtype=tf.float32)).numpy()]


@pytest.fixture(scope="module")
def sess():
    return train_tf1_session()


@pytest.fixture(scope="module")
def queries():
    xs, ys = make_data(20, seed=1)
    return xs.tolist(), ys.tolist()


class TestConformance(PluginConformance):
    @staticmethod
    def case():
        m = Scorer()
        xs = make_data(5, seed=3)[0].tolist()
        return ConformanceCase(framework="tensorflow", model=m, func=module_predict, sample_inputs=xs,
                               expected_outputs=module_predict(m, xs), input_type="integers")




def test_the_session_learned(sess, queries):
    xs, ys = queries
    assert sum(int(p) == y for p, y in zip(predict(sess, xs), ys, strict=True)) >= 18


def test_tf1_session_served_equals_in_process(conn, sess, queries):
    xs, _ = queries
    want = [int(p) for p in predict(sess, xs)]
    create_endpoint(conn, "tf-session", "integers", predict, sess)
    assert [served(conn, "tf-session", {"input": x})["output"] for x in xs[:5]] == want[:5]
    assert [p["output"] for p in served(conn, "tf-session", {"input_batch": xs})["batch_predictions"]] == want


def test_checkpoint_and_saved_model_directories(conn, sess, queries, tmp_path):
    xs, _ = queries
    want = [int(p) for p in predict(sess, xs)]
    with sess.graph.as_default():
        tf.compat.v1.train.Saver().save(sess, str(tmp_path / "data" / "model.ckpt"))
        builder = tf.compat.v1.saved_model.Builder(str(tmp_path / "data" / "export_dir"))
        builder.add_meta_graph_and_variables(sess, [tf.compat.v1.saved_model.tag_constants.SERVING])
        builder.save()
    create_endpoint(conn, "tf-paths", "integers", predict, str(tmp_path / "data"))  # v1 from the checkpoint dir
    assert [p["output"] for p in served(conn, "tf-paths", {"input_batch": xs})["batch_predictions"]] == want
    deploy_tensorflow_model(conn, "tf-paths", 2, "integers", predict, str(tmp_path / "data" / "export_dir"))
    assert read_manifest_of(conn, "tf-paths", "2")["form"] == "tf1-savedmodel"
    assert [p["output"] for p in served(conn, "tf-paths", {"input_batch": xs})["batch_predictions"]] == want


def read_manifest_of(conn, name, version):
    info = conn.get_model_info(name, version)
    return read_manifest(info["container_name"]).model_metadata


def test_tf_module_served_equals_in_process(conn, queries):
    xs, _ = queries
    model = Scorer()
    want = [int(p) for p in module_predict(model, xs)]
    result = deploy(conn, model, module_predict, name="tf-module", input_type="integers")
    assert result.plugin == "tensorflow"
    assert [p["output"] for p in served(conn, "tf-module", {"input_batch": xs})["batch_predictions"]] == want
    assert read_manifest_of(conn, "tf-module", "1")["form"] == "tf2-savedmodel"


def test_tf2_saved_model_path_gives_the_loaded_object(tmp_path, queries):
    xs, _ = queries
    model = Scorer()
    tf.saved_model.save(model, str(tmp_path / "sm"))
    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="integers", func=module_predict,
                         model=str(tmp_path / "sm"), plugin="tensorflow")
    assert run_check(bundle, "integers", xs[:4]) == module_predict(model, xs[:4])


def _touch(path: Path, returned: Path) -> Path:
    path.write_text("x")
    return returned


@pytest.mark.parametrize("make,msg", [
    (lambda d: d, "missing: checkpoint, *.meta, *.index, *.data*"),
    (lambda d: _touch(d / "model.ckpt.meta", d), "is missing: checkpoint, *.index, *.data*"),
    (lambda d: d / "nope", "does not exist"),
    (lambda d: _touch(d / "f.pb", d / "f.pb"), "is a file"),
])
def test_paths_with_missing_files_name_what_is_missing(tmp_path, make, msg):
    d = tmp_path / "model"
    d.mkdir()
    with pytest.raises(ClipperException, match=msg.replace("*", r"\*").replace(".", r"\.")):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="integers", func=predict, model=str(make(d)),
                    plugin="tensorflow")


@pytest.mark.parametrize("fn", ['deploy_tensorflow_model', 'create_endpoint'])
def test_seed_signatures(fn):
    import clipper_deploy_tensorflow

    documented = seed_signature(f"clipper_admin.deployers.tensorflow.{fn}")
    if documented is None:
        pytest.skip("Clipper's model-deployers document is not beside this checkout")
    assert signature(getattr(clipper_deploy_tensorflow, fn)) == documented
