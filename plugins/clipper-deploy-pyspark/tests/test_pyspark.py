import json
import subprocess

import numpy as np
import pytest
from clipper_deploy_pyspark import create_endpoint, deploy_pyspark_model
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import HashingTF, Tokenizer
from pyspark.mllib.classification import LogisticRegressionModel, LogisticRegressionWithLBFGS
from pyspark.mllib.regression import LabeledPoint

from clipper_deploy_core import ClipperException, deploy
from clipper_deploy_core.bundle import read_manifest, save_bundle
from clipper_deploy_core.testing import ConformanceCase, check_conformance, seed_signature, signature
from clipper_deploy_core.testing import predict as served


def pixels(n, seed):
    """784-integer pixel vectors of two classes, as in Clipper's tests."""
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, 2, n)
    xs = rng.integers(0, 80, (n, 784))
    xs[ys == 1, :300] += 150
    return xs.tolist(), ys.tolist()


def normalize(x):
    return np.asarray(x, dtype=float) / 255.0


def mllib_predict(spark, model, inputs):
    return [str(model.predict(normalize(x))) for x in inputs]


@pytest.fixture(scope="module")
def mllib_model(spark):
    xs, ys = pixels(120, 0)
    points = spark.sparkContext.parallelize([LabeledPoint(y, normalize(x)) for x, y in zip(xs, ys, strict=True)])
    return LogisticRegressionWithLBFGS.train(points, iterations=20)


DOCS = [(0, "a b c d e spark", 1.0), (1, "b d", 0.0), (2, "spark f g h", 1.0), (3, "hadoop mapreduce", 0.0)]


@pytest.fixture(scope="module")
def pipeline_model(spark):
    """Clipper's own pipeline check: Tokenizer -> HashingTF -> LogisticRegression on four documents."""
    training = spark.createDataFrame(DOCS, ["id", "text", "label"])
    tokenizer = Tokenizer(inputCol="text", outputCol="words")
    hashing = HashingTF(inputCol=tokenizer.getOutputCol(), outputCol="features")
    lr = LogisticRegression(maxIter=10, regParam=0.001)
    return Pipeline(stages=[tokenizer, hashing, lr]).fit(training)


def pipeline_predict(spark, model, inputs):
    rows = [tuple(json.loads(x)) for x in inputs]
    frame = spark.createDataFrame(rows, ["id", "text"])
    out = model.transform(frame).select("probability", "prediction").collect()
    return [json.dumps({"prob": str(r.probability), "prediction": r.prediction}) for r in out]




def test_conformance(spark, mllib_model):
    xs, _ = pixels(4, 5)
    check_conformance(ConformanceCase(framework="pyspark", model=mllib_model, func=mllib_predict, sample_inputs=xs,
                                      expected_outputs=mllib_predict(spark, mllib_model, xs), input_type="integers",
                                      options={"sc": spark.sparkContext}))


def test_mllib_served_equals_in_process_and_rolls_back(conn, spark, mllib_model):
    xs, ys = pixels(16, 1)
    want = [float(p) for p in mllib_predict(spark, mllib_model, xs)]
    assert sum(int(p) == y for p, y in zip(want, ys, strict=True)) >= 14
    create_endpoint(conn, "spark-lr", "integers", mllib_predict, mllib_model, spark.sparkContext)
    assert [served(conn, "spark-lr", {"input": x})["output"] for x in xs[:4]] == want[:4]
    assert [p["output"] for p in served(conn, "spark-lr", {"input_batch": xs})["batch_predictions"]] == want
    manifest = read_manifest(conn.get_model_info("spark-lr", "1")["container_name"])
    assert manifest.model_metadata == {"model_class": "pyspark.mllib.classification.LogisticRegressionModel",
                                       "kind": "mllib"}

    def always_one(spark, model, inputs):
        return ["1.0" for _ in inputs]

    deploy_pyspark_model(conn, "spark-lr", 2, "integers", always_one, mllib_model, spark.sparkContext)
    assert served(conn, "spark-lr", {"input": xs[0]})["output"] == 1.0
    conn.set_model_version("spark-lr", 1)
    assert served(conn, "spark-lr", {"input": xs[1]})["output"] == want[1]


def test_pipeline_on_strings_matches_in_process(conn, spark, pipeline_model):
    queries = [json.dumps([i, text]) for i, text in enumerate(["spark abcd", "hadoop b d", "a b spark", "f g h"])]
    want = [json.loads(s) for s in pipeline_predict(spark, pipeline_model, queries)]
    # The first Spark job on the replica's fresh JVM takes 2.5-3 s here, as long as the app's SLO: a real sample
    # input lets the replica run it before it links (a made-up string cannot pass this pipeline's JSON parsing).
    result = deploy(conn, pipeline_model, pipeline_predict, name="spark-pipeline", input_type="strings",
                    sample_inputs=queries[:1])
    assert result.plugin == "pyspark"
    assert [served(conn, "spark-pipeline", {"input": q})["output"] for q in queries] == want
    batch = served(conn, "spark-pipeline", {"input_batch": queries})["batch_predictions"]
    assert [p["output"] for p in batch] == want


def test_mllib_needs_the_spark_context(tmp_path, mllib_model):
    with pytest.raises(ClipperException, match="needs the SparkContext: pass sc="):
        save_bundle(tmp_path / "b", name="m", version=1, input_type="integers", func=mllib_predict,
                    model=mllib_model, plugin="pyspark")


def test_model_class_is_recorded_and_loads_without_guessing(tmp_path, spark, mllib_model):
    bundle = save_bundle(tmp_path / "b", name="m", version=1, input_type="integers", func=mllib_predict,
                         model=mllib_model, plugin="pyspark", options={"sc": spark.sparkContext})
    from clipper_deploy_core.bundle import load_bundle

    loaded = load_bundle(bundle)
    assert isinstance(loaded.model[1], LogisticRegressionModel)
    assert loaded.model[0] is spark  # the process's one session is reused


def test_stopping_leaves_no_spark_jvm(tmp_path, mllib_model, spark):
    from clipper_deploy_core import ClipperConnection, LocalContainerManager

    c = ClipperConnection(LocalContainerManager("spark-stop", 0, 0, 0, home=tmp_path))
    c.start_clipper()
    try:
        create_endpoint(c, "short-lived", "integers", mllib_predict, mllib_model, spark.sparkContext)
        replica_pid = c.get_all_model_replicas(verbose=True)[0]["pid"]
    finally:
        c.stop_all()
    children = subprocess.run(["pgrep", "-P", str(replica_pid)], capture_output=True, text=True).stdout.split()
    assert children == []
    assert not any(str(tmp_path) in line for line in
                   subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines())


@pytest.mark.parametrize("fn", ['deploy_pyspark_model', 'create_endpoint'])
def test_seed_signatures(fn):
    import clipper_deploy_pyspark

    documented = seed_signature(f"clipper_admin.deployers.pyspark.{fn}")
    if documented is None:
        pytest.skip("Clipper's model-deployers document is not beside this checkout")
    assert signature(getattr(clipper_deploy_pyspark, fn)) == documented
