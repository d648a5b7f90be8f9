"""Quickstart: train a small model, bundle it with its predict function, load it the way a replica
does (in a fresh process, hashes verified) and show its answers next to the in-process ones."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from clipper_deploy_core.bundle import read_manifest, save_bundle
from clipper_deploy_core.bundle.check import run_check


def train_logistic(xs: list[list[float]], ys: list[int], epochs: int = 200, lr: float = 0.5) -> list[float]:
    import math

    w = [0.0] * (len(xs[0]) + 1)
    for _ in range(epochs):
        for x, y in zip(xs, ys, strict=True):
            z = w[-1] + sum(wi * xi for wi, xi in zip(w, x, strict=False))
            err = 1 / (1 + math.exp(-z)) - y
            w = [wi - lr * err * xi for wi, xi in zip(w, x, strict=False)] + [w[-1] - lr * err]
    return w


def main() -> None:
    rng = random.Random(0)
    xs = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(200)]
    ys = [int(x[0] + 2 * x[1] > 0) for x in xs]
    weights = train_logistic(xs, ys)

    def predict(inputs):  # a batch in, one string per input out
        return [str(int(weights[-1] + weights[0] * x[0] + weights[1] * x[1] > 0)) for x in inputs]

    queries = [[0.9, 0.4], [-0.8, -0.1], [0.1, -0.3], [-0.2, 0.6]]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = save_bundle(Path(tmp) / "bundle", name="quickstart", version=1, input_type="doubles", func=predict)
        manifest = read_manifest(bundle)
        served = run_check(bundle, "doubles", queries)
    local = predict(queries)
    print(f"bundle {manifest.name}:{manifest.version} plugin={manifest.plugin.name} python={manifest.python_version} "
          f"files={len(manifest.files)} (sha256-verified on load)")
    for q, s, here in zip(queries, served, local, strict=True):
        print(f"  input={q}  fresh-process={s}  in-process={here}")
    assert served == local


if __name__ == "__main__":
    main()
