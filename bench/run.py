"""Serving benchmark: echo and mlp through a local cluster, driven by wrk over 127.0.0.1.

    python bench/run.py [--duration 15] [--workloads echo,mlp] [--no-baseline] [--cold-repeats 3]

Prints, at concurrency 1 and 32: requests/s, p50/p99 latency, non-2xx responses, socket errors and
server CPU time per request; cold start (a user's script launched to its first correct answer, beside the
FastAPI app's launch to first answer), scale-up to a second replica, restart after kill -9, and idle RSS; for mlp the
in-process limit (forward on batches of 1, 8, 32, 128, and the per-request path of parse JSON ->
tensor -> forward -> argmax -> str at batch 1 and 32); and the same wrk runs against a plain
FastAPI + uvicorn app in one process, installed into its own venv by this script.
Needs `wrk` (Debian package) and, for mlp, torch with clipper-deploy-pytorch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
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


DISTINCT_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{{"input": [' .. n .. ', {rest}]}}')
end
"""


def run_wrk(url: str, body: dict, connections: int, duration: int, tmp: Path,
            distinct: bool = False) -> dict[str, float]:
    """wrk on ``url``; with ``distinct``, every request's first number is new (no prediction-cache hit)."""
    script = tmp / "post.lua"
    rest = json.dumps(body["input"][1:])[1:-1]
    script.write_text(DISTINCT_LUA.format(rest=rest) if distinct else LUA.format(body=json.dumps(body)))
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
            out[f"forward only, batch {b} (inferences/s)"] = n / (time.perf_counter() - start)
        import numpy as np
        import orjson

        bodies = [json.dumps({"input": [round(0.001 * (i + j), 3) for i in range(784)]}).encode() for j in range(32)]
        # The fastest plain path (orjson, numpy, one tensor per batch) and the same with the standard json module.
        for label, loads in (("", orjson.loads), (", stdlib json", json.loads)):
            for b in (1, 32):
                n, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    x = torch.from_numpy(np.array([loads(body)["input"] for body in bodies[:b]], dtype=np.float32))
                    [str(int(i)) for i in model(x).argmax(dim=1)]
                    n += b
                out[f"per-request path, batch {b}{label} (req/s)"] = n / (time.perf_counter() - start)
    return out


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError):
            pass
    return total


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def cluster_pids(conn) -> list[int]:
    return [conn.cm.info["pid"]] + [r["pid"] for r in conn.get_all_model_replicas(verbose=True) if r["pid"]]


def measure(url: str, body: dict, duration: int, tmp: Path, pids: list[int]) -> list[tuple[int, dict]]:
    rows = []
    for c in (1, 32):
        before = cpu_seconds(pids)
        r = run_wrk(url, body, c, duration, tmp)
        r["cpu_us_per_req"] = (cpu_seconds(pids) - before) / max(1.0, r["rps"] * duration) * 1e6
        rows.append((c, r))
    return rows


def cold_start(workload: str, home: Path, preload: str = "auto") -> float:
    """Seconds from launching a user's script (bench/cold_start.py: start a cluster, build the model, deploy it)
    to its first correct answer."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "cold_start.py"), workload, str(home),
                             preload],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    if proc.wait() != 0 or line.strip() != "answered":
        raise RuntimeError(f"the {workload} cold start failed")
    return elapsed


def cold_starts(workload: str, home: Path, repeats: int, no_baseline: bool) -> str:
    """Cold starts of ``workload``, each variant run ``repeats`` times, interleaved (this machine's load drifts):
    ours with the default preload (and, for mlp, with ``preload=[]`` and ``preload=["torch"]``), and the FastAPI
    app's. The medians, and ours over FastAPI's."""
    variants = {"default": "auto"}
    if workload == "mlp":
        variants.update({"preload=[]": "none", "preload=['torch']": "torch"})
    times: dict[str, list[float]] = {name: [] for name in [*variants, *([] if no_baseline else ["FastAPI app"])]}
    python = None
    if not no_baseline:
        from clipper_deploy_core.envs import ensure_env

        python = ensure_env(["fastapi", "uvicorn[standard]"])
    for _ in range(repeats):
        for name, preload in variants.items():
            times[name].append(cold_start(workload, home, preload))
        if python is not None:
            times["FastAPI app"].append(fastapi_cold_start(python, workload))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    theirs = medians.get("FastAPI app")
    return ", ".join(f"{name} {m:.2f} s" + (f" ({m / theirs:.2f}x)" if theirs and name in variants else "")
                     for name, m in medians.items())


def fastapi_cold_start(python: str, workload: str) -> float:
    """Seconds from launching the FastAPI app (serving only ``workload``) to its first correct answer."""
    import urllib.request

    port = free_port()
    body = json.dumps({"input": [float(i) for i in range(10)] if workload == "echo" else [0.5] * 784}).encode()
    started = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "uvicorn", "fastapi_app:app", "--port", str(port), "--log-level",
                             "warning", "--no-access-log"], cwd=Path(__file__).parent,
                            env={**os.environ, "BENCH_WORKLOADS": workload})
    try:
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/{workload}/predict", body,
                                             {"Content-Type": "application/json"})
                if not json.loads(urllib.request.urlopen(req, timeout=5).read())["default"]:
                    return time.perf_counter() - started
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the FastAPI app did not start") from None
                time.sleep(0.02)  # polls the starting server, as the peers harness does (every 0.1 s there)
    finally:
        proc.terminate()
        proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cache_cost(off, model, duration: int, tmp: Path) -> str:
    """mlp at c=32 with every input new (all misses: the cache's lookup and fill, never a hit), on the cluster
    with the cache off and on a second one with the default cache, interleaved off/on/off/on."""
    from clipper_deploy_pytorch import create_endpoint as torch_endpoint

    on = ClipperConnection(LocalContainerManager("cached", 0, 0, 0, home=tmp))
    on.start_clipper()
    try:
        torch_endpoint(on, "mlp", "doubles", mlp_predict, model, slo_micros=10_000_000)
        body = {"input": [0.5] * 784}
        runs: dict[str, list[float]] = {"off": [], "on": []}
        for label, conn in (("off", off), ("on", on)) * 2:
            r = run_wrk(f"http://{conn.get_query_addr()}/mlp/predict", body, 32, duration, tmp, distinct=True)
            runs[label].append(r["rps"])
        a, b = (sum(runs[k]) / 2 for k in ("off", "on"))
        return f"{a:.0f} / {b:.0f} req/s ({(b - a) / a:+.1%})"
    finally:
        on.stop_all()


def scale_up_and_restart(conn, name: str) -> tuple[float, float]:
    """Seconds for set_num_replicas(name, 2) to return with the second replica serving, and from kill -9 of a
    replica to its replacement serving."""
    import signal

    from clipper_deploy_core.testing import wait_until

    def ready():
        return [r for r in conn.get_all_model_replicas(verbose=True)
                if r["model_name"] == name and r["status"] == "ready"]

    started = time.perf_counter()
    conn.set_num_replicas(name, 2)
    scale = time.perf_counter() - started
    victim = ready()[0]["pid"]
    started = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    def replaced() -> bool:
        pids = [r["pid"] for r in ready()]  # one snapshot: two calls could see the victim ready, then restarting
        return len(pids) == 2 and victim not in pids

    wait_until(replaced, "the restart", timeout=120)
    return scale, time.perf_counter() - started


def fastapi_baseline(duration: int, tmp: Path, workloads: list[str]) -> list[tuple[str, int, dict]]:
    from clipper_deploy_core.envs import ensure_env

    python = ensure_env(["fastapi", "uvicorn[standard]"])
    port = free_port()
    proc = subprocess.Popen([python, "-m", "uvicorn", "fastapi_app:app", "--port", str(port), "--log-level",
                             "warning", "--no-access-log"], cwd=Path(__file__).parent)
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the FastAPI baseline did not start") from None
                time.sleep(0.1)
        rows = []
        for name, body in (("echo", {"input": [float(i) for i in range(10)]}), ("mlp", {"input": [0.5] * 784})):
            if name in workloads:
                rows += [(name, c, r) for c, r in measure(f"http://127.0.0.1:{port}/{name}/predict", body, duration,
                                                          tmp, [proc.pid])]
        return rows
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--workloads", default="echo,mlp")
    ap.add_argument("--no-baseline", action="store_true", help="skip the FastAPI + uvicorn baseline")
    ap.add_argument("--cold-repeats", type=int, default=3, help="cold starts of each kind, interleaved; medians")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    workloads = args.workloads.split(",")
    rows: list[tuple[str, str, int, dict]] = []
    extra: dict[str, str] = {}
    limit = None
    with tempfile.TemporaryDirectory() as tmp:
        # wrk sends one body over and over: with the prediction cache on, every query after the first would be
        # a hit. The serving figures are taken with it off; its own cost is measured below, on distinct inputs.
        conn = ClipperConnection(LocalContainerManager("bench", 0, 0, 0, home=tmp, cache_size=0))
        conn.start_clipper()
        try:
            if "echo" in workloads:
                create_endpoint(conn, "echo", "doubles", echo, slo_micros=10_000_000)
                extra["idle RSS, cluster + 1 echo replica"] = f"{rss_mib(cluster_pids(conn)):.0f} MiB"
                rows += [("clipper-deploy", "echo", c, r) for c, r in measure(
                    f"http://{conn.get_query_addr()}/echo/predict", {"input": [float(i) for i in range(10)]},
                    args.duration, Path(tmp), cluster_pids(conn))]
                scale, restart = scale_up_and_restart(conn, "echo")
                extra["echo: scale-up 1 -> 2 replicas / restart after kill -9"] = f"{scale:.2f} s / {restart:.2f} s"
            if "mlp" in workloads:
                from clipper_deploy_pytorch import create_endpoint as torch_endpoint

                model = mlp_model()
                torch_endpoint(conn, "mlp", "doubles", mlp_predict, model, slo_micros=10_000_000)
                rows += [("clipper-deploy", "mlp", c, r) for c, r in measure(
                    f"http://{conn.get_query_addr()}/mlp/predict", {"input": [0.5] * 784}, args.duration,
                    Path(tmp), cluster_pids(conn))]
                extra["mlp c=32, distinct inputs, cache off / on (lookup cost)"] = cache_cost(
                    conn, model, args.duration, Path(tmp))
                # One replica per core: while one computes a batch the frontend fills the other's.
                scale, restart = scale_up_and_restart(conn, "mlp")
                extra["mlp: scale-up 1 -> 2 replicas / restart after kill -9"] = f"{scale:.2f} s / {restart:.2f} s"
                rows += [("clipper-deploy", "mlp x2", c, r) for c, r in measure(
                    f"http://{conn.get_query_addr()}/mlp/predict", {"input": [0.5] * 784}, args.duration,
                    Path(tmp), cluster_pids(conn))]
                limit = in_process_limit(model)
        finally:
            conn.stop_all()
        for w in workloads:
            extra[f"cold start, {w} (launch to first correct answer, median of {args.cold_repeats})"] = \
                cold_starts(w, Path(tmp) / "cold", args.cold_repeats, args.no_baseline)
        if not args.no_baseline:
            rows += [("fastapi+uvicorn", n, c, r) for n, c, r in fastapi_baseline(args.duration, Path(tmp), workloads)]
    print(f"\n{'system':16} {'workload':8} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
          f"{'CPU us/req':>10}  socket errors")
    for system, name, c, r in rows:
        print(f"{system:16} {name:8} {c:>4} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['non2xx']:>8} {r['cpu_us_per_req']:>10.0f}  {r['socket_errors'] or '-'}")
    for k, v in extra.items():
        print(f"{k}: {v}")
    if limit:
        print("\nmlp in-process limit (one thread):")
        for k, v in limit.items():
            print(f"  {k:42} {v:>10.0f}")
        ours = {c: max(r["rps"] for s, n, cc, r in rows if s == "clipper-deploy" and n.startswith("mlp") and cc == c)
                for c in (1, 32)}
        base = {c: r["rps"] for s, n, c, r in rows if s == "fastapi+uvicorn" and n == "mlp"}
        print(f"  served mlp at c=32, best of 1 and 2 replicas: {ours[32]:.0f} req/s = "
              f"{ours[32] / limit['per-request path, batch 32 (req/s)']:.0%} of the in-process per-request path at "
              f"batch 32 (orjson), {ours[32] / limit['per-request path, batch 32, stdlib json (req/s)']:.0%} of it "
              f"with the stdlib json" + (f", {ours[32] / base[32]:.1f}x the FastAPI app" if base else ""))


if __name__ == "__main__":
    main()
