"""Benchmark: family-wise false-positive rate under the null, with and without correction.

The whole pipeline (maps -> region_scores -> compare_groups -> one family) on null data: random maps,
or maps with a real class effect whose labels are permuted. Holm's and Bonferroni's corrections must
keep the FWER at or below alpha (within the binomial 95 % interval of the estimate); uncorrected and
FDR (which controls another error) are shown for contrast.

    python benchmarks/bench_stats_calibration.py [--reps 1000]
"""
from __future__ import annotations

import argparse
import time

from scipy import stats

from xaikit.stats import null_fwer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args()
    print(f"{args.reps} null families of 2 methods x 6 regions (12 Mann-Whitney tests), 40 images, alpha={args.alpha}")
    print(f"{'mode':16s} {'correction':11s} {'FWER raw':>9s} {'FWER adj':>9s} {'95% CI of adj':>17s}  ok")
    for mode in ("random_maps", "permuted_labels"):
        for correction in ("holm", "bonferroni", "fdr_bh"):
            t0 = time.perf_counter()
            runs = null_fwer(args.reps, mode=mode, correction=correction, alpha=args.alpha, seed=11)
            k = int(runs["any_adj"].sum())
            ci = stats.binomtest(k, args.reps).proportion_ci(0.95)
            ok = ci.low <= args.alpha
            print(f"{mode:16s} {correction:11s} {runs['any_raw'].mean():9.3f} {k / args.reps:9.3f} "
                  f"[{ci.low:.3f}, {ci.high:.3f}]  {'yes' if ok else 'NO'}   ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
