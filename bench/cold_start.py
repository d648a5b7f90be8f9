"""A user's whole script, timed by ``bench/run.py`` from its launch: start a local cluster, build the model, deploy
it, and get the first correct answer (printing ``answered``), then stop the cluster.

    python bench/cold_start.py echo|mlp HOME [PRELOAD]

PRELOAD is ``LocalContainerManager(preload=...)``: ``auto`` (the default: the manager's own default, which warms
torch's replica template at the script's first ``import torch``), ``none`` (``preload=[]``: the first deploy starts
the template), or comma-separated modules (``torch``: the template starts with the cluster).
"""

import json
import sys
import urllib.request

from clipper_deploy_core import ClipperConnection, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint


def echo(xs):
    return [str(len(x)) for x in xs]


def mlp_predict(model, inputs):
    import numpy as np
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    with torch.inference_mode():
        return [str(i) for i in model(torch.from_numpy(np.asarray(inputs, dtype=np.float32))).argmax(dim=1).tolist()]


def main(workload: str, home: str, preload: str = "auto") -> None:
    modules = None if preload == "auto" else [m for m in preload.split(",") if m and m != "none"]
    conn = ClipperConnection(LocalContainerManager("cold", 0, 0, 0, home=home, preload=modules))
    conn.start_clipper()
    try:
        if workload == "echo":
            create_endpoint(conn, "cold", "doubles", echo)
            body = {"input": [float(i) for i in range(10)]}
        else:
            import torch
            from clipper_deploy_pytorch import create_endpoint as torch_endpoint

            torch.set_num_threads(1)
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                        torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
            torch_endpoint(conn, "cold", "doubles", mlp_predict, model)
            body = {"input": [0.5] * 784}
        req = urllib.request.Request(f"http://{conn.get_query_addr()}/cold/predict", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(req, timeout=60).read())
        assert not reply["default"], reply
        print("answered", flush=True)
    finally:
        conn.stop_all()


if __name__ == "__main__":
    main(*sys.argv[1:4])
