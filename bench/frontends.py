"""Throughput as frontend processes are added: one cluster per count, each frontend pinned to a core of its own.

    python bench/frontends.py [--frontends 1,2,4,8] [--replicas 2] [--duration 10] [--workload echo|mlp]

For each count N, a local cluster with ``frontends=N`` (cache off) serves the workload from the same number of
replicas. Frontend i (every thread of it) is pinned to core i, as ``taskset -p`` would; the replicas and wrk share the
remaining cores (all cores when none remain, as on a 2-core machine, where the figures then say more about
contention than scaling). Prints, at c=32 (wrk -t1; -t2 past 2 frontends), requests/s, requests/s per frontend core,
p50/p99, non-2xx, the frontends' mean batch, and the batch the replicas' predict calls actually saw (batches that
arrive together from several frontends run as one call).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import cloudpickle
import run
from run import LUA, mlp_model, mlp_predict, parse_wrk

cloudpickle.register_pickle_by_value(run)  # replicas cannot import bench/run.py: ship its functions by value

from clipper_deploy_core import ClipperConnection, LocalContainerManager  # noqa: E402
from clipper_deploy_core.deployers.python import create_endpoint  # noqa: E402

TALLY_EVERY = 256


def counted(inner, tally_dir):
    """``inner`` with its calls and inputs tallied per replica process, written every TALLY_EVERY calls."""
    state = {"calls": 0, "items": 0}

    def predict(*args):  # (inputs) for a closure, (model, inputs) for a framework's predict function
        state["calls"] += 1
        state["items"] += len(args[-1])
        if state["calls"] % TALLY_EVERY == 0:
            Path(tally_dir, f"{os.getpid()}.json").write_text(json.dumps(state))
        return inner(*args)

    return predict


def echo(xs):
    return [str(len(x)) for x in xs]


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of ``pid`` onto ``cores`` (sched_setaffinity, what taskset -p does per thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cores)
        except OSError:
            pass  # a thread that ended meanwhile


def batch_means(conn) -> float:
    text = subprocess.run(["curl", "-s", f"http://{conn.get_query_addr()}/metrics"], capture_output=True,
                          text=True).stdout
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("clipper_model_batch_size_sum"):
            total += float(line.split()[-1])
        elif line.startswith("clipper_model_batch_size_count"):
            count += float(line.split()[-1])
    return total / count if count else 0.0


def run(n: int, args: argparse.Namespace, tmp: Path, k: int) -> dict:
    cores = sorted(os.sched_getaffinity(0))
    mine = [{cores[i % len(cores)]} for i in range(n)]
    rest = set(cores[n:]) or set(cores)
    tally = tmp / f"tally-{k}"
    tally.mkdir()
    conn = ClipperConnection(LocalContainerManager(f"fe{k}", 0, 0, 0, home=tmp / f"h{k}", cache_size=0,
                                                   frontends=n))
    conn.start_clipper()
    try:
        if args.workload == "echo":
            func, body = counted(echo, tally), {"input": [float(i) for i in range(10)]}
            create_endpoint(conn, "w", "doubles", func, slo_micros=10_000_000, num_replicas=args.replicas)
        else:
            from clipper_deploy_pytorch import create_endpoint as torch_endpoint

            func, body = counted(mlp_predict, tally), {"input": [0.5] * 784}
            torch_endpoint(conn, "w", "doubles", func, mlp_model(), slo_micros=10_000_000,
                           num_replicas=args.replicas)
        for pid, core in zip(conn.cm.info["frontend_pids"], mine, strict=True):
            pin(pid, core)
        for r in conn.get_all_model_replicas(verbose=True):
            pin(r["pid"], rest)
        script = tmp / "post.lua"
        script.write_text(LUA.format(body=json.dumps(body)))
        threads = 1 if n <= 2 else 2
        out = subprocess.run(["taskset", "-c", ",".join(map(str, sorted(rest))), "wrk", f"-t{threads}", "-c32",
                              f"-d{args.duration}s", "--latency", "-s", str(script),
                              f"http://{conn.get_query_addr()}/w/predict"], capture_output=True, text=True,
                             check=True).stdout
        r = parse_wrk(out)
        check = subprocess.run(["curl", "-s", "-d", json.dumps(body), f"http://{conn.get_query_addr()}/w/predict"],
                               capture_output=True, text=True).stdout
        if json.loads(check)["default"]:
            raise SystemExit(f"the workload answers with its default: {check}")
        calls = items = 0
        for f in tally.iterdir():
            t = json.loads(f.read_text())
            calls, items = calls + t["calls"], items + t["items"]
        r["frontend_batch"] = batch_means(conn)
        r["replica_batch"] = items / calls if calls else 0.0
        return r
    finally:
        conn.stop_all()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frontends", default="1,2")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--workload", choices=("echo", "mlp"), default="echo")
    args = ap.parse_args()
    counts = [int(x) for x in args.frontends.split(",")]
    print(f"{len(os.sched_getaffinity(0))} cores; {args.workload}, {args.replicas} replicas, c=32, "
          f"{args.duration} s per run")
    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for k, n in enumerate(counts):  # a count may repeat, to interleave runs on a noisy machine
            rows.append((n, run(n, args, Path(tmp), k)))
    print(f"\n{'frontends':>9} {'req/s':>9} {'per core':>9} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7} "
          f"{'frontend batch':>14} {'replica batch':>13}")
    for n, r in rows:
        print(f"{n:>9} {r['rps']:>9.0f} {r['rps'] / n:>9.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
              f"{r['non2xx']:>7} {r['frontend_batch']:>14.1f} {r['replica_batch']:>13.1f}")


if __name__ == "__main__":
    main()
