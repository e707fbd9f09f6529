"""``xaikit evaluate``: the method x metric table of a study, planned, resumable, with verdicts and a report.

Layout of ``--out DIR``::

    index.html              the plan, the verdicts, the method x metric table with bootstrap CIs, the figures
    scores.csv              every score (one row per image x method x metric x layer/similarity)
    summary.csv, tests.csv, verdicts.csv    means with CIs and ranks; paired tests (one Holm family); verdicts
    plan.txt                the plan the run started from
    .cache/                 maps (``explain_many``) and scores (``score_many``): a rerun computes only what is missing

Images are named as ``xaikit explain`` names them (running index + SHA-256 of the file), never by file name.
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from .._util import atomic_write
from ..errors import ArgumentError

__all__ = ["DEFAULT_METRICS", "metric_specs", "write_study"]

#: What ``xaikit evaluate`` scores when no ``--metric`` is given: faithfulness, the randomization check, complexity.
DEFAULT_METRICS = ("deletion", "insertion", "cascading_randomization", "sparseness")


def metric_specs(names: list[str], params: list[str]) -> dict[str, dict]:
    """``{metric: {param: value}}`` from ``--metric NAME`` and ``--metric-param NAME:KEY=VALUE`` (JSON values)."""
    from ..evaluation import METRICS, get_metric

    specs: dict[str, dict] = {name: {} for name in (names or DEFAULT_METRICS)}
    for name in specs:
        info = get_metric(name) if name in METRICS else None
        if info is None:
            raise ArgumentError(f"--metric {name!r}: not known. Known metrics: {', '.join(sorted(METRICS))}.")
        if info.needs_masks:
            raise ArgumentError(f"--metric {name}: needs ground-truth masks, which the command line does not read; "
                                "score localization in Python (score_many(..., masks=...)).")
    for item in params:
        name, sep, rest = item.partition(":")
        key, eq, raw = rest.partition("=")
        if not sep or not eq or name not in specs or not key:
            raise ArgumentError(f"--metric-param {item!r}: write METRIC:KEY=VALUE for a metric given with --metric "
                                "(e.g. deletion:steps=16).")
        specs[name][key] = _value(raw)
    return specs


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw  # a word such as blur or uniform


def write_study(out: Path, plan_text: str, table, n_boot: int, n_images: int) -> Path:
    """Summaries, tests, verdicts, figures and ``index.html`` from a score table; returns the page's path."""
    from ..evaluation import rank_methods, sanity_verdicts, summarize
    from ..report import Report

    summary = summarize(table, n_boot=n_boot)
    tests = rank_methods(table, n_boot=n_boot)
    verdicts = sanity_verdicts(table, tests)
    report = Report(out, title="xaikit evaluate")
    kinds, metrics = table["method"].nunique(), table["metric"].nunique()
    report.section("Which maps to trust", f"{n_images} image(s), {kinds} map kinds (the methods and the random and "
                   f"Sobel controls) x {metrics} metric(s). Means with bootstrap CIs over images; paired tests against "
                   "the controls in one Holm family. Images are named by a running index and the SHA-256 of their "
                   "file.")
    report.table(verdicts, "verdicts", caption="Which method fails which check, in plain words.")
    wanted = ("metric", "layer", "similarity", "method", "n", "mean", "ci_low", "ci_high", "rank")
    cols = [c for c in wanted if c in summary.columns]
    report.table(summary[cols], "summary", caption="Method x metric: mean, 95% bootstrap CI, rank (1 = best).",
                 max_rows=80)
    report.table(tests, "tests", caption="Paired tests of the methods (one multiplicity family).", max_rows=40)
    _figures(report, summary)
    report.section("Plan", "What the run was planned to cost before it started (passes of one image's "
                   "forward+backward; time calibrated on one probe pass).")
    report.text(plan_text, kind="note")
    with atomic_write(out / "scores.csv", "w") as fh:
        table.to_csv(fh, index=False, lineterminator="\n")
    return report.write()


def _figures(report, summary) -> None:
    from ..viz.evaluation import metric_forest, randomization_curves, rank_heatmap

    metrics = list(dict.fromkeys(summary["metric"]))
    for metric in metrics:
        if metric.endswith("_randomization"):
            report.figure(randomization_curves(summary, metric), f"figure_{metric}",
                          caption="Similarity to the original maps as the model is randomized, top layer first.")
        else:
            report.figure(metric_forest(summary, metric), f"figure_{metric}",
                          caption=f"{metric}: mean and 95% bootstrap CI per method.")
    if len(metrics) > 1:
        report.figure(rank_heatmap(summary), "figure_ranks", caption="Rank of each method on each metric.")


def executor(args: argparse.Namespace, stack: contextlib.ExitStack):
    """``None`` (this process), a LocalCluster of ``--workers`` processes, or the ``--scheduler``'s client."""
    if args.scheduler and args.workers:
        raise ArgumentError("give --workers N (a cluster on this machine) or --scheduler ADDRESS, not both.")
    if args.scheduler:
        from distributed import Client

        return stack.enter_context(Client(args.scheduler))
    if args.workers:
        if args.workers < 1:
            raise ArgumentError(f"--workers {args.workers}: must be at least 1.")
        from ..cluster import local_cluster

        return stack.enter_context(local_cluster(args.workers))
    return None
