
import keras
import numpy as np
import pytest
from clipper_deploy_keras import create_endpoint, deploy_keras_model

from clipper_deploy_core import ClipperException, deploy
from clipper_deploy_core.bundle import read_manifest, save_bundle
from clipper_deploy_core.testing import ConformanceCase, PluginConformance, signature
from clipper_deploy_core.testing import predict as served


def square_model():
    """Clipper's own Keras check: Input(shape=(1,)) multiplied by itself."""
    x = keras.Input(shape=(1,))
    return keras.Model(x, keras.layers.Multiply()([x, x]))


def square_predict(model, inputs):
    return [str(round(float(v))) for v in model.predict(np.asarray(inputs, dtype="float32"), verbose=0)[:, 0]]


def train_classifier():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(300, 4)).astype("float32")
    ys = (xs[:, 0] + 0.5 * xs[:, 1] > 0).astype("int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(xs, ys, epochs=15, verbose=0)
    return model


def classify(model, inputs):
    return [str(int(i)) for i in model.predict(np.asarray(inputs, dtype="float32"), verbose=0).argmax(axis=1)]


def which_backend(model, inputs):
    import keras as k

    return [f"{k.backend.backend()}:{s}" for s in square_predict(model, inputs)]


class TestConformance(PluginConformance):
    @staticmethod
    def case():
        xs = [[3], [0], [19]]
        return ConformanceCase(framework="keras", model=square_model(), func=square_predict, sample_inputs=xs,
                               expected_outputs=["9", "0", "361"], input_type="integers")




def test_clipper_square_check(conn):
    create_endpoint(conn, "keras-square", "ints", square_predict, square_model())
    for x in range(20):
        reply = served(conn, "keras-square", {"input": [x]})
        assert reply["default"] is False and reply["output"] == x * x


def test_trained_classifier_from_object_and_from_h5(conn, tmp_path):
    model = train_classifier()
    xs = np.random.default_rng(1).normal(size=(12, 4)).round(3).tolist()
    want = [int(p) for p in classify(model, xs)]
    result = deploy(conn, model, classify, name="keras-clf")
    assert result.plugin == "keras"
    assert [p["output"] for p in served(conn, "keras-clf", {"input_batch": xs})["batch_predictions"]] == want
    model.save(tmp_path / "model.h5")
    deploy_keras_model(conn, "keras-clf", 2, "doubles", classify, str(tmp_path / "model.h5"))
    assert read_manifest(conn.get_model_info("keras-clf", "2")["container_name"]).model_metadata["file"] == "model.h5"
    assert [p["output"] for p in served(conn, "keras-clf", {"input_batch": xs})["batch_predictions"]] == want


def test_saved_under_tensorflow_served_on_torch(conn, tmp_path):
    assert keras.backend.backend() == "tensorflow"
    path = tmp_path / "square.keras"
    square_model().save(path)
    deploy(conn, str(path), which_backend, name="keras-torch", input_type="integers", framework="keras",
           backend="torch")
    meta = read_manifest(conn.get_model_info("keras-torch", "1")["container_name"]).model_metadata
    assert (meta["saved_backend"], meta["serve_backend"]) == ("tensorflow", "torch")
    assert served(conn, "keras-torch", {"input": [6]})["output"] == "torch:36"


@pytest.mark.parametrize("model,msg", [("missing.keras", "does not exist"), ("model.pkl", "not a Keras model file")])
def test_bad_paths(tmp_path, model, msg):
    with pytest.raises(ClipperException, match=msg):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=classify,
                    model=str(tmp_path / model), plugin="keras")


def test_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ClipperException, match="backend= one of"):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="doubles", func=classify, model=square_model(),
                    plugin="keras", options={"backend": "theano"})


KERAS_SIGNATURES = {  # Clipper's documented signatures (the seed document leaves the Keras section out)
    "deploy_keras_model": "clipper_conn, name, version, input_type, func, model_path_or_object, base_image='default', "
                          "labels=None, registry=None, num_replicas=1, batch_size=-1, pkgs_to_install=None",
    "create_endpoint": "clipper_conn, name, input_type, func, model_path_or_object, default_output='None', version=1, "
                       "slo_micros=3000000, labels=None, registry=None, base_image='default', num_replicas=1, "
                       "batch_size=-1, pkgs_to_install=None",
}


@pytest.mark.parametrize("fn", sorted(KERAS_SIGNATURES))
def test_clipper_signatures(fn):
    import clipper_deploy_keras

    assert signature(getattr(clipper_deploy_keras, fn)) == KERAS_SIGNATURES[fn]
