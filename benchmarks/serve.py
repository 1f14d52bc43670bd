"""In-process against served GACN: latency (p50, p99) and throughput for pairs with 1, 4 and 8
concurrent clients, the server's RSS (tritonserver and its stubs) over the run, and a focus stack.

Run in the [serve] venv (see .ci/serve-tests for how it is made), from the repository root:

    python benchmarks/serve.py --weights ../shared/gacn/GACN.pkl [--requests 8] [--protocol http] [--json out.json]

Both sides run the same backend with the same threads; the served side runs one model instance.
With one client the in-process and served requests alternate (A, B, A, B), so that their ratio
holds on a noisy machine; 4 and 8 clients are served only (one Fuser is one stream of work).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import Fuser  # noqa: E402
from engine.client import RemoteFuser  # noqa: E402
from engine.imageio import read_image  # noqa: E402
from engine.serve.repository import ModelOptions, write_repository  # noqa: E402
from engine.serve.server import TritonServer, free_port  # noqa: E402


class RssSampler(threading.Thread):
    """Peak and last RSS of a process tree, sampled every ``period`` s."""

    def __init__(self, pid: int, period: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.period, self.peak, self.stop_event = pid, period, 0, threading.Event()

    def rss(self) -> int:
        root = psutil.Process(self.pid)
        total = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def run(self):
        while not self.stop_event.wait(self.period):
            self.peak = max(self.peak, self.rss())


def stats(latencies: list[float], wall: float) -> dict:
    lat = np.asarray(latencies) * 1000
    return {"n": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "per_s": len(lat) / wall}


def run_clients(make, work, clients: int, requests: int) -> dict:
    latencies, errors = [], []

    def client():
        try:
            with make() as f:
                for _ in range(requests):
                    t = time.perf_counter()
                    work(f)
                    latencies.append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(repr(e))
    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return stats(latencies, time.perf_counter() - t0)


def interleaved(local, url: str, x, y, n: int) -> tuple[dict, dict]:
    """One client: n in-process and n served pairs, alternating; throughput from the summed latencies."""
    lat = {"local": [], "served": []}
    with RemoteFuser(url, timeout=600) as remote:
        for _ in range(n):
            for side, f in (("local", local), ("served", remote)):
                t = time.perf_counter()
                f.fuse(x, y)
                lat[side].append(time.perf_counter() - t)
    return stats(lat["local"], sum(lat["local"])), stats(lat["served"], sum(lat["served"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "gacn"))
    p.add_argument("--backend", default="openvino")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--requests", type=int, default=8, help="requests per client (1 client: per side, interleaved)")
    p.add_argument("--clients", default="1,4,8")
    p.add_argument("--protocol", choices=("http", "grpc"), default="http")
    p.add_argument("--stack-runs", type=int, default=1)
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    data = Path(args.data)
    a, b = (read_image(data / "pairs" / f"color_lytro_01_{i}.png") for i in (1, 2))
    stack = [read_image(f) for f in sorted((data / "stack9").glob("*.jpg"))]
    big_a, big_b = stack[0], stack[-1]
    cases = {"520x520": (a, b), "1600x1200": (big_a, big_b)}
    results = {"backend": args.backend, "threads": args.threads, "protocol": args.protocol, "pairs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        write_repository(Path(tmp) / "repo", ModelOptions(backend=args.backend, weights=args.weights,
                                                          threads=args.threads).check())
        server = TritonServer(Path(tmp) / "repo", http_port=free_port(), grpc_port=free_port(),
                              metrics_port=free_port(), log_file=Path(tmp) / "triton.log").start()
        try:
            server.wait_ready(300)
            url = server.url if args.protocol == "http" else server.grpc_url
            sampler = RssSampler(server.proc.pid)
            results["server_rss_idle_MiB"] = sampler.rss() / 2**20
            sampler.start()
            with Fuser(args.backend, weights=args.weights, threads=args.threads) as local:
                for name, (x, y) in cases.items():
                    local.fuse(x, y)           # warm both sides on this size
                    with RemoteFuser(url, timeout=600) as f:
                        f.fuse(x, y)
                    row = {}
                    for c in (int(v) for v in args.clients.split(",")):
                        if c == 1:   # in-process and served interleaved (A, B, A, B): the ratio is what counts
                            row["local_1"], row["served_1"] = interleaved(local, url, x, y, args.requests)
                        else:
                            row[f"served_{c}"] = run_clients(lambda: RemoteFuser(url, timeout=600),
                                                             lambda f: f.fuse(x, y), c, args.requests)
                        print(name, c, {k: v for k, v in row.items() if k.endswith(f"_{c}")}, flush=True)
                    results["pairs"][name] = row
                stack_local, stack_served = [], []
                with RemoteFuser(url, timeout=900) as remote:
                    for _ in range(max(1, args.stack_runs)):   # interleaved too
                        for lat, f in ((stack_local, local), (stack_served, remote)):
                            t = time.perf_counter()
                            f.fuse_stack(stack, strategy="calibration", align="auto")
                            lat.append(time.perf_counter() - t)
                results["stack9"] = {"local": stats(stack_local, sum(stack_local)),
                                     "served": stats(stack_served, sum(stack_served))}
                print("stack9", results["stack9"], flush=True)
            sampler.stop_event.set()
            sampler.join()
            results["server_rss_peak_MiB"] = sampler.peak / 2**20
        finally:
            server.stop()
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
