"""Serving benchmark: echo and mlp through a local cluster, driven by wrk over 127.0.0.1.

    python bench/run.py [--duration 10] [--workloads echo,mlp]

Prints requests/s, p50/p99 latency and non-2xx counts at concurrency 1 and 32, and for mlp the
in-process limit (the model called directly on batches of 1, 8, 32, 128, and the per-request path
of parse JSON -> tensor -> forward -> argmax -> str). Needs `wrk` (Debian package) and, for mlp, torch.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clipper_deploy_core import ClipperConnection, LocalContainerManager
from clipper_deploy_core.deployers.python import create_endpoint

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
"""


def parse_wrk(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(0) if errors else ""}


def run_wrk(url: str, body: dict, connections: int, duration: int, tmp: Path) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text(LUA.format(body=json.dumps(body)))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def echo(xs):
    return [str(len(x)) for x in xs]


def mlp_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()


def mlp_predict(model, inputs):
    import torch

    torch.set_num_threads(1)
    x = torch.as_tensor(inputs, dtype=torch.float32)
    return [str(int(i)) for i in model(x).argmax(dim=1)]


def in_process_limit(model, seconds: float = 2.0) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    out = {}
    with torch.no_grad():
        for b in (1, 8, 32, 128):
            x = torch.randn(b, 784)
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                model(x)
                n += b
            out[f"forward batch {b} (inferences/s)"] = n / (time.perf_counter() - start)
        body = json.dumps({"input": [0.5] * 784})
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            x = torch.as_tensor([json.loads(body)["input"]], dtype=torch.float32)
            str(int(model(x).argmax(dim=1)[0]))
            n += 1
        out["per-request path, batch 1 (req/s)"] = n / (time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--workloads", default="echo,mlp")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    workloads = args.workloads.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        conn = ClipperConnection(LocalContainerManager("bench", 0, 0, 0, home=tmp))
        conn.start_clipper()
        rows = []
        try:
            if "echo" in workloads:
                create_endpoint(conn, "echo", "doubles", echo, slo_micros=10_000_000)
                for c in (1, 32):
                    rows.append(("echo", c, run_wrk(f"http://{conn.get_query_addr()}/echo/predict",
                                                    {"input": [float(i) for i in range(10)]}, c, args.duration,
                                                    Path(tmp))))
            limit = None
            if "mlp" in workloads:
                from clipper_deploy_pytorch import create_endpoint as torch_endpoint

                model = mlp_model()
                torch_endpoint(conn, "mlp", "doubles", mlp_predict, model, slo_micros=10_000_000)
                for c in (1, 32):
                    rows.append(("mlp", c, run_wrk(f"http://{conn.get_query_addr()}/mlp/predict",
                                                   {"input": [0.5] * 784}, c, args.duration, Path(tmp))))
                limit = in_process_limit(model)
        finally:
            conn.stop_all()
    print(f"\n{'workload':8} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}  socket errors")
    for name, c, r in rows:
        print(f"{name:8} {c:>4} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['non2xx']:>8}  "
              f"{r['socket_errors'] or '-'}")
    if limit:
        print("\nmlp in-process limit (one thread):")
        for k, v in limit.items():
            print(f"  {k:40} {v:>10.0f}")
        served = max(r["rps"] for n, _, r in rows if n == "mlp")
        print(f"  served mlp at best: {served:.0f} req/s = {served / limit['per-request path, batch 1 (req/s)']:.0%} "
              f"of the in-process per-request path")


if __name__ == "__main__":
    main()
