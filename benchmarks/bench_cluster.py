"""Cluster benchmark: explain_many on a Dask LocalCluster with 1 and 2 workers vs the local loop.

Clusters are started once (start-up is printed, not counted); each round runs the local loop, 1 worker and
2 workers on the same images (A, B, C, A, B, C ...), without a cache, and the figures are medians over rounds.
Printed: maps per second, the speed-up of 2 workers over 1, the overhead of one worker over the local loop
(shipping batches and results, scheduling), and each worker's peak resident memory next to the saliency
memory budget. On a 2-core machine two workers can at best double one worker's throughput; the local loop
uses both cores through torch's own threads, so expect little gain over it there — the cluster path is for
more cores and more machines.

Usage::

    python benchmarks/bench_cluster.py                 # 16 images x (gradcam, gradient, integrated_gradients)
    python benchmarks/bench_cluster.py --images 64 --rounds 3
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from xaikit.checkpoint import load_checkpoint
from xaikit.cluster import local_cluster
from xaikit.saliency import explain_many

MODEL = "data_samples/models/phantom_small_cnn.pt"
METHODS = {"gradcam": {"method": "gradcam"}, "gradient": {"method": "gradient"},
           "integrated_gradients": {"method": "integrated_gradients", "n_steps": 8}}
BUDGET = 512 * 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_up() -> float:
    """Import what a task needs (torch, xaikit.saliency) and return the resident memory then, in MiB."""
    import psutil

    import xaikit.saliency  # noqa: F401

    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    model = load_checkpoint(MODEL).model
    x = torch.rand(args.images, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    n_maps = args.images * len(METHODS)
    kw = dict(batch_size=args.batch_size, progress=False, memory_budget=BUDGET)
    tic = time.perf_counter()
    with local_cluster(1, 1) as one, local_cluster(2, 1) as two:
        print(f"start-up of both clusters: {time.perf_counter() - tic:.1f} s (not counted below)", flush=True)
        base = {**one.run(_warm_up), **two.run(_warm_up)}
        runs = {"local loop": None, "1 worker": one, "2 workers": two}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for name, client in runs.items():
                tic = time.perf_counter()
                explain_many(model, x, METHODS, executor=client, **kw)
                times[name].append(time.perf_counter() - tic)
                print(f"  round {len(times[name])}: {name:10s} {times[name][-1]:7.2f} s", flush=True)
        peaks = {**one.run(_peak_rss_mib), **two.run(_peak_rss_mib)}
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.images} images x {len(METHODS)} methods = {n_maps} maps, batch {args.batch_size}, "
          f"{args.rounds} interleaved rounds (medians)")
    for name, t in med.items():
        print(f"  {name:10s} {t:7.2f} s  {n_maps / t:7.1f} maps/s")
    print(f"2 workers vs 1 worker: {med['1 worker'] / med['2 workers']:.2f}x throughput")
    print(f"1 worker vs local loop: overhead {med['1 worker'] / med['local loop'] - 1:+.0%} "
          f"(the local loop uses {torch.get_num_threads()} torch threads, a worker 1)")
    print(f"2 workers vs local loop: {med['local loop'] / med['2 workers']:.2f}x throughput")
    for addr, mib in sorted(peaks.items()):
        print(f"  worker {addr}: peak RSS {mib:.0f} MiB, {mib - base[addr]:.0f} MiB above its RSS after imports "
              f"({base[addr]:.0f} MiB); saliency memory budget {BUDGET / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
