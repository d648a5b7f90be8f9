"""The plain baseline the benchmark compares against: FastAPI + uvicorn, one process, no batching.

``BENCH_WORKLOADS`` (default ``echo,mlp``) says which routes to serve; torch is imported only for mlp, so the
echo app's cold start is FastAPI's own."""

import os

from fastapi import FastAPI
from pydantic import BaseModel

WORKLOADS = os.environ.get("BENCH_WORKLOADS", "echo,mlp").split(",")
app = FastAPI()


class Query(BaseModel):
    input: list[float]


# echo blocks nothing, so it is `async def` (no threadpool hop), as in the peers harness: the fastest FastAPI app.
@app.post("/echo/predict")
async def echo(q: Query) -> dict:
    return {"output": str(len(q.input)), "default": False}


if "mlp" in WORKLOADS:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    MLP = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()

    @app.post("/mlp/predict")
    def mlp(q: Query) -> dict:
        with torch.no_grad():
            y = MLP(torch.as_tensor([q.input], dtype=torch.float32)).argmax(dim=1)
        return {"output": str(int(y[0])), "default": False}
