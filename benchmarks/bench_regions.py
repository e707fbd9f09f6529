"""Benchmark: region_scores on 2000 maps of 224 x 224 px and 12 regions (target: under 1 s).

Runs the shared-region path (one grid for all images) and the per-image path (each image its own
masks, as lung zones are), float32 maps as Explanations hold them, and checks that both agree.

    python benchmarks/bench_regions.py [--n 2000] [--size 224] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from xaikit.regions import RegionSet, grid, region_scores


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((args.n, args.size, args.size)).astype(np.float32)
    shared = grid(3, 4, (args.size, args.size))
    shift = rng.integers(-8, 9, args.n)
    per_image = RegionSet(shared.names, np.stack([np.roll(shared.masks, s, axis=-1) for s in shift]))
    t_shared = _best(lambda: region_scores(maps, shared), args.repeats)
    t_per_image = _best(lambda: region_scores(maps, per_image), args.repeats)
    a = region_scores(maps, shared.expand(args.n))
    b = region_scores(maps, shared)
    agree = np.allclose(a.select_dtypes(float), b.select_dtypes(float), rtol=1e-5, atol=1e-7, equal_nan=True)
    mpix = args.n * args.size**2 / 1e6
    print(f"{args.n} maps of {args.size}x{args.size} px, {len(shared)} regions ({mpix:.0f} Mpixel), "
          f"best of {args.repeats}")
    print(f"  shared regions    : {t_shared:6.3f} s  ({mpix / t_shared:7.1f} Mpixel/s)")
    print(f"  per-image regions : {t_per_image:6.3f} s  ({mpix / t_per_image:7.1f} Mpixel/s)")
    print(f"  per-image / shared: {t_per_image / t_shared:6.2f}x ; shared and expanded agree: {agree}")


if __name__ == "__main__":
    main()
