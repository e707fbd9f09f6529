"""HTTP service benchmark: latency p50/p95 and throughput of /predict and /explain under concurrent clients.

A real uvicorn server on 127.0.0.1 (a free port) serves the shipped model; N clients (threads with their own
httpx connection) send requests back to back. Rounds alternate predict / explain (A, B, A, B) so both see the
same machine load. Every request must be answered (200, or 503 when the queue is full); the counts are printed.
Nothing is asserted: this prints figures.

Usage::

    python benchmarks/bench_service.py                       # 200 predict + 40 explain (Grad-CAM), 8 clients
    python benchmarks/bench_service.py --requests 400 --clients 16 --queue 8
"""
from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

from xaikit.service import ServiceConfig, create_app

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "data_samples" / "models" / "phantom_small_cnn.pt"
IMAGE = (ROOT / "data_samples" / "images" / "img00000.png").read_bytes()


def _server(queue: int) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(MODEL, ServiceConfig(queue_size=queue)), host="127.0.0.1",
                                           port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def _round(url: str, path: str, n: int, clients: int) -> tuple[list[float], Counter, float]:
    per_client = [n // clients + (k < n % clients) for k in range(clients)]

    def client(count: int):
        out = []
        with httpx.Client(timeout=120) as c:
            for _ in range(count):
                tic = time.perf_counter()
                code = c.post(url + path, files={"file": ("a.png", IMAGE)}).status_code
                out.append((time.perf_counter() - tic, code))
        return out

    tic = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for batch in pool.map(client, per_client) for r in batch]
    wall = time.perf_counter() - tic
    return [t for t, c in results if c == 200], Counter(c for _, c in results), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="predict requests in all (explain: a fifth)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    server, url = _server(args.queue)
    jobs = {"predict": ("/predict", args.requests), "explain gradcam": ("/explain?method=gradcam", args.requests // 5)}
    got = {name: ([], Counter(), 0.0) for name in jobs}
    try:
        _round(url, "/predict", args.clients, args.clients)  # warm-up
        for _ in range(args.rounds):
            for name, (path, n) in jobs.items():  # interleaved: A, B, A, B
                lat, codes, wall = _round(url, path, n // args.rounds, args.clients)
                got[name] = (got[name][0] + lat, got[name][1] + codes, got[name][2] + wall)
    finally:
        server.should_exit = True
    print(f"{args.clients} concurrent clients, queue {args.queue}, {args.rounds} interleaved rounds")
    for name, (lat, codes, wall) in got.items():
        q = statistics.quantiles(lat, n=20) if len(lat) > 1 else [float("nan")] * 19
        print(f"{name:16s} answered {sum(codes.values()):4d} ({dict(codes)})  "
              f"p50 {1000 * statistics.median(lat):7.1f} ms"
              f"  p95 {1000 * q[18]:7.1f} ms  throughput {len(lat) / wall:6.1f} req/s")


if __name__ == "__main__":
    main()
