import json

import mxnet as mx
import numpy as np
import pytest
from clipper_deploy_mxnet import create_endpoint, deploy_mxnet_model

from clipper_deploy_core import ClipperException, deploy
from clipper_deploy_core.bundle import load_bundle, save_bundle
from clipper_deploy_core.testing import ConformanceCase, PluginConformance, seed_signature, signature
from clipper_deploy_core.testing import predict as served


def clipper_symbol():
    """Clipper's MXNet check: FC(128)-ReLU-FC(10)-SoftmaxOutput."""
    data = mx.symbol.Variable("data")
    fc1 = mx.symbol.FullyConnected(data, name="fc1", num_hidden=128)
    act1 = mx.symbol.Activation(fc1, name="relu1", act_type="relu")
    fc2 = mx.symbol.FullyConnected(act1, name="fc2", num_hidden=10)
    return mx.symbol.SoftmaxOutput(fc2, name="softmax")


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, 10, n)
    xs = rng.integers(0, 50, (n, 785)).astype(np.float32)
    for k in range(10):
        xs[ys == k, k * 70:(k + 1) * 70] += 200
    return xs.astype(np.int32), ys  # 785 integer "pixels", as in Clipper's check


def trained_module(batch_size=1):
    """Trained a little, then bound for batch ``batch_size``: the seed's trap when batches are bigger."""
    mx.random.seed(0)
    xs, ys = make_data(300, 0)
    train = mx.io.NDArrayIter(xs.astype(np.float32) / 255.0, ys, batch_size=30, shuffle=True)
    module = mx.mod.Module(clipper_symbol())
    module.fit(train, num_epoch=3, optimizer_params={"learning_rate": 0.5})
    it = mx.io.NDArrayIter(xs[:batch_size].astype(np.float32) / 255.0, batch_size=batch_size)
    return module, it.provide_data


def forward_style(model, inputs):
    """Runs the whole batch through the module."""
    model.forward(mx.io.DataBatch([mx.nd.array(np.asarray(inputs) / 255.0)]), is_train=False)
    return [str(int(i)) for i in model.get_outputs()[0].asnumpy().argmax(axis=1)]


def clipper_style(model, inputs):
    """Clipper's own style: iterate with batch size 1."""
    preds = model.predict(mx.io.NDArrayIter(np.asarray(inputs) / 255.0, batch_size=1))
    return [str(int(i)) for i in preds.asnumpy().argmax(axis=1)]


def reference(module, inputs):
    """In-process answers from a fresh inference module bound for exactly this batch."""
    args, aux = module.get_params()
    fresh = mx.mod.Module(module.symbol, label_names=None)
    fresh.bind(data_shapes=[("data", (len(inputs), 785))], for_training=False)
    fresh.set_params(args, aux, allow_missing=True)
    probs = fresh.predict(mx.io.NDArrayIter(np.asarray(inputs) / 255.0, batch_size=len(inputs)))
    return [str(int(i)) for i in probs.asnumpy().argmax(axis=1)]


@pytest.fixture(scope="module")
def module_and_shapes():
    return trained_module()


class TestConformance(PluginConformance):
    @staticmethod
    def case():
        module, shapes = trained_module()
        xs = make_data(5, 7)[0].tolist()
        return ConformanceCase(framework="mxnet", model=module, func=forward_style, sample_inputs=xs,
                               expected_outputs=reference(module, xs), input_type="integers",
                               options={"mxnet_data_shapes": shapes})




def test_the_module_learned(module_and_shapes):
    module, _ = module_and_shapes
    xs, ys = make_data(50, 3)
    assert sum(int(p) == y for p, y in zip(reference(module, xs.tolist()), ys, strict=True)) >= 45


@pytest.mark.parametrize("style", [forward_style, clipper_style])
@pytest.mark.parametrize("n", [1, 7, 32])
def test_a_module_bound_for_batch_1_serves_any_batch(tmp_path, module_and_shapes, style, n):
    module, shapes = module_and_shapes
    assert shapes[0].shape[0] == 1
    xs = make_data(n, 11)[0].tolist()
    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="integers", func=style, model=module,
                         plugin="mxnet", options={"mxnet_data_shapes": shapes})
    assert load_bundle(bundle).predict(xs) == reference(module, xs)


def test_clipper_mxnet_check_served_equals_in_process(conn, module_and_shapes):
    module, shapes = module_and_shapes
    xs = make_data(32, 4)[0].astype(int).tolist()
    want = [int(p) for p in reference(module, xs)]
    create_endpoint(conn, "mxnet-test", "integers", forward_style, module, shapes)  # batch_size=-1: adaptive
    assert [served(conn, "mxnet-test", {"input": x})["output"] for x in xs[:5]] == want[:5]
    assert [p["output"] for p in served(conn, "mxnet-test", {"input_batch": xs})["batch_predictions"]] == want
    deploy_mxnet_model(conn, "mxnet-test", 2, "integers", clipper_style, module, shapes)
    assert [p["output"] for p in served(conn, "mxnet-test", {"input_batch": xs[:7]})["batch_predictions"]] == want[:7]


class GluonNet(mx.gluon.HybridBlock):
    def __init__(self):
        super().__init__()
        with self.name_scope():
            self.hidden = mx.gluon.nn.Dense(16, activation="relu")
            self.out = mx.gluon.nn.Dense(3)

    def hybrid_forward(self, F, x):
        return self.out(self.hidden(x))


def gluon_predict(model, inputs):
    return [json.dumps([round(float(v), 4) for v in row]) for row in model(mx.nd.array(inputs)).asnumpy()]


def trained_gluon_net(xs, ys, epochs, hybridize=False):
    net = GluonNet()
    net.initialize(mx.init.Xavier())
    if hybridize:
        net.hybridize()
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.05})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(epochs):
        with mx.autograd.record():
            loss = loss_fn(net(mx.nd.array(xs)), mx.nd.array(ys))
        loss.backward()
        trainer.step(len(xs))
    return net


def test_trained_gluon_network_served_equals_in_process(conn):
    mx.random.seed(1)
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(200, 6)).astype(np.float32)
    ys = (xs[:, 0] > 0).astype(np.float32) + (xs[:, 1] > 0)
    net = trained_gluon_net(xs, ys, epochs=20)
    queries = rng.normal(size=(9, 6)).round(3).tolist()
    want = [json.loads(s) for s in gluon_predict(net, queries)]
    result = deploy(conn, net, gluon_predict, name="gluon-net", mxnet_data_shapes=[("data", (1, 6))])
    assert result.plugin == "mxnet"
    assert served(conn, "gluon-net", {"input": queries[0]})["output"] == want[0]
    assert [p["output"] for p in served(conn, "gluon-net", {"input_batch": queries})["batch_predictions"]] == want


def test_a_trained_hybridized_gluon_block_is_deployed_without_data_shapes(conn):
    mx.random.seed(2)
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(100, 6)).astype(np.float32)
    ys = (xs[:, 0] > 0).astype(np.float32)
    net = trained_gluon_net(xs, ys, epochs=10, hybridize=True)
    queries = rng.normal(size=(4, 6)).round(3).tolist()
    want = [json.loads(s) for s in gluon_predict(net, queries)]
    deploy(conn, net, gluon_predict, name="gluon-noshapes")  # no mxnet_data_shapes: (1, 6) from the first Dense
    got = served(conn, "gluon-noshapes", {"input_batch": queries})["batch_predictions"]
    assert [p["output"] for p in got] == want


def test_a_gluon_block_whose_shape_cannot_be_inferred_asks_for_it(tmp_path):
    conv = mx.gluon.nn.HybridSequential()
    conv.add(mx.gluon.nn.Conv2D(2, kernel_size=3))
    conv.initialize()
    with pytest.raises(ClipperException, match="pass mxnet_data_shapes"):
        save_bundle(tmp_path / "b", name="c", version=1, input_type="floats", func=gluon_predict, model=conv,
                    plugin="mxnet")


@pytest.mark.parametrize("shapes,msg", [(None, "need mxnet_data_shapes"), ([("data", (0, 3))], "Invalid MXNet")])
def test_bad_data_shapes(tmp_path, module_and_shapes, shapes, msg):
    with pytest.raises(ClipperException, match=msg):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="integers", func=forward_style,
                    model=module_and_shapes[0], plugin="mxnet", options={"mxnet_data_shapes": shapes})


@pytest.mark.parametrize("fn", ['deploy_mxnet_model', 'create_endpoint'])
def test_seed_signatures(fn):
    import clipper_deploy_mxnet

    documented = seed_signature(f"clipper_admin.deployers.mxnet.{fn}")
    if documented is None:
        pytest.skip("Clipper's model-deployers document is not beside this checkout")
    assert signature(getattr(clipper_deploy_mxnet, fn)) == documented
