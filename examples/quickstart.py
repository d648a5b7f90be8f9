"""Quickstart: start a local cluster, deploy a model trained on the spot, query it over HTTP."""

from __future__ import annotations

import json
import math
import random
import urllib.request

from clipper_deploy_core import ClipperConnection, ClipperException, LocalContainerManager, deploy

CLUSTER = "quickstart"


def train_logistic(xs: list[list[float]], ys: list[int], epochs: int = 100, lr: float = 0.5) -> list[float]:
    w = [0.0] * (len(xs[0]) + 1)
    for _ in range(epochs):
        for x, y in zip(xs, ys, strict=True):
            z = w[-1] + sum(wi * xi for wi, xi in zip(w, x, strict=False))
            err = 1 / (1 + math.exp(-z)) - y
            w = [wi - lr * err * xi for wi, xi in zip(w, x, strict=False)] + [w[-1] - lr * err]
    return w


def main() -> None:
    conn = ClipperConnection(LocalContainerManager(CLUSTER))
    try:
        conn.start_clipper()
    except ClipperException:
        conn.connect()  # already running from an earlier run
    rng = random.Random(0)
    xs = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(200)]
    ys = [int(x[0] + 2 * x[1] > 0) for x in xs]
    w = train_logistic(xs, ys)

    def classify(inputs):  # a batch in, one string per input out
        return [json.dumps({"label": int(w[2] + w[0] * x[0] + w[1] * x[1] > 0)}) for x in inputs]

    queries = [[0.9, 0.4], [-0.8, -0.1], [0.1, -0.3], [-0.2, 0.6]]
    result = deploy(conn, None, classify, sample_inputs=queries)
    # Run again, the quickstart deploys the next version: the earlier ones stop, so nothing is left running twice.
    conn.stop_inactive_model_versions([result.name])
    print(f"deployed {result.name}:{result.version} on cluster '{CLUSTER}' (query port {conn.get_query_addr()})")
    url = f"http://{conn.get_query_addr()}/{result.name}/predict"
    for q in queries:
        body = json.dumps({"input": q})
        req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(req, timeout=10).read())
        print(f"  {body} -> {json.dumps(reply)}")
    print("Try it yourself:")
    print(f"  curl -s -X POST -H 'Content-Type: application/json' -d '{{\"input\": [0.5, 0.5]}}' {url}")
    print(f"The cluster keeps running. Stop it with: .venv/bin/clipper-deploy stop --cluster {CLUSTER}")


if __name__ == "__main__":
    main()
