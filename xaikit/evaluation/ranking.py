"""From a score table to a verdict: means with bootstrap CIs, paired tests in one family, plain-word sanity checks.

Uses :mod:`xaikit.stats` only (scipy's bootstrap, Friedman + Wilcoxon with Holm over everything tested), so the
ranking carries the same guarantees as every other test the kit runs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .._resampling import N_BOOT
from ..errors import ArgumentError
from ..stats import bootstrap_ci, compare_paired
from .core import CONTROLS

__all__ = ["summarise", "rank_methods", "sanity_verdicts", "KEYS"]

#: Columns that tell one score apart from another besides the image and the method.
KEYS = ("metric", "layer", "layer_index", "similarity")


def _keys(table: pd.DataFrame) -> list[str]:
    return [k for k in KEYS if k in table.columns]


def _filled(values: pd.Series) -> pd.Series:
    """Key column as strings with ``"-"`` where a metric has no such key (NaN would drop the rows from groupby)."""
    return values.astype(object).where(values.notna(), "-").astype(str)


def _require(table: pd.DataFrame, cols: Sequence[str], who: str) -> None:
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ArgumentError(f"{who}: the table lacks columns {missing}; pass a table from score/score_many.")


def summarise(table: pd.DataFrame, *, n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean value per method and metric (layer, similarity) with a bootstrap CI over images, and a rank.

    ``rank`` is 1 for the best method of each metric (direction from ``higher_is_better``); NaN values are
    left out of their cell and counted in ``n_nan``.
    """
    _require(table, ["method", "metric", "value", "higher_is_better"], "summarise")
    keys = _keys(table)
    rows = []
    for cell, sub in table.groupby([*keys, "method"], sort=False, dropna=False):
        values = sub["value"].to_numpy(float)
        ok = values[np.isfinite(values)]
        lo, hi = bootstrap_ci(np.mean, (ok,), n_boot=n_boot, ci=ci, seed=seed) if len(ok) > 1 else (np.nan, np.nan)
        rows.append({**dict(zip([*keys, "method"], cell)), "n": len(ok), "n_nan": len(values) - len(ok),
                     "mean": ok.mean() if len(ok) else np.nan, "ci_low": lo, "ci_high": hi,
                     "higher_is_better": bool(sub["higher_is_better"].iloc[0])})
    out = pd.DataFrame(rows)
    signed = np.where(out["higher_is_better"], -out["mean"], out["mean"])
    out["rank"] = pd.Series(signed).groupby([_filled(out[k]) for k in keys]).rank(method="min").to_numpy()
    return out


def rank_methods(table: pd.DataFrame, *, correction: str = "holm", n_boot: int = N_BOOT, seed: int = 0,
                 alpha: float = 0.05) -> pd.DataFrame:
    """Paired tests between methods on the same images, per metric: one multiplicity family over all of them.

    :func:`xaikit.stats.compare_paired` per metric (layer, similarity): Friedman with Kendall's W, then
    pairwise Wilcoxon tests with rank-biserial effects (bootstrap CIs); Holm (or ``correction``) over every
    row of every metric. A ``better`` column names the better method of each significant pair.
    """
    _require(table, ["method", "metric", "value", "image_id"], "rank_methods")
    keys = _keys(table)
    data = table.copy()
    for k in keys:
        data[k] = _filled(data[k])
    tests = compare_paired(data, "method", by=keys, subject="image_id", value="value", n_boot=n_boot, seed=seed,
                           correction=correction, alpha=alpha)
    higher = table.groupby("metric")["higher_is_better"].first()
    hib = tests["metric"].map(higher).astype(bool)
    pair = tests["test"] == "wilcoxon"
    a_wins = (tests["effect_size"] > 0) == hib
    tests["better"] = np.where(pair & tests["significant"].fillna(False).astype(bool),
                               np.where(a_wins, tests["group_a"], tests["group_b"]), "")
    return tests


def sanity_verdicts(table: pd.DataFrame, tests: pd.DataFrame | None = None, *, control: str = "random",
                    similarity_threshold: float = 0.5, similarity: str = "spearman_abs") -> pd.DataFrame:
    """Which method fails which check, in plain words: ``method, check, passed, verdict``.

    - randomisation checks: failed when the mean ``similarity`` of the maps after the last (fully randomised)
      stage is at or above ``similarity_threshold`` (Adebayo et al. 2018: the map does not depend on the weights);
    - every other metric: passed when the paired test against the ``control`` method (from ``tests``, the
      output of :func:`rank_methods`) is significant after the family's correction and in the better direction.
    """
    _require(table, ["method", "metric", "value", "family"], "sanity_verdicts")
    rows = []
    rand = table[table["family"] == "randomisation"]
    if len(rand):
        _require(rand, ["layer_index", "similarity"], "sanity_verdicts")
        rows += _randomisation_verdicts(rand, similarity, similarity_threshold)
    if tests is not None:
        rows += _control_verdicts(table[table["family"] != "randomisation"], tests, control)
    return pd.DataFrame(rows, columns=["method", "check", "passed", "verdict"])


def _randomisation_verdicts(rand: pd.DataFrame, kind: str, threshold: float) -> list[dict]:
    rows = []
    for (metric, method), sub in rand[rand["similarity"] == kind].groupby(["metric", "method"], sort=False):
        last = sub[sub["layer_index"] == sub["layer_index"].max()]
        mean = float(np.nanmean(last["value"])) if last["value"].notna().any() else np.nan
        check = metric.replace("_", " ")
        if not np.isfinite(mean):
            rows.append({"method": method, "check": metric, "passed": None,
                         "verdict": f"{method}: {check} undefined (constant maps after randomisation)."})
            continue
        passed = mean < threshold
        what = ("its maps change when the weights are destroyed" if passed else
                "its maps barely change when the weights are destroyed, so they do not show what the model learned")
        rows.append({"method": method, "check": metric, "passed": passed,
                     "verdict": f"{method} {'passes' if passed else 'FAILS'} the {check} check: {kind} similarity "
                                f"{mean:.2f} after randomising every layer ({'<' if passed else '>='} {threshold}); "
                                f"{what}."})
    return rows


def _control_verdicts(table: pd.DataFrame, tests: pd.DataFrame, control: str) -> list[dict]:
    rows = []
    pairs = tests[(tests["test"] == "wilcoxon") & ((tests["group_a"] == control) | (tests["group_b"] == control))]
    for metric in table["metric"].unique():
        for _, t in pairs[pairs["metric"] == metric].iterrows():
            method = t["group_b"] if t["group_a"] == control else t["group_a"]
            if method in CONTROLS:
                continue
            passed = t["better"] == method
            word = "beats" if passed else ("is WORSE than" if t["better"] == control else "does NOT beat")
            rows.append({"method": method, "check": metric, "passed": bool(passed),
                         "verdict": f"{method} {word} the {control} control on {metric.replace('_', ' ')} "
                                    f"(Holm-adjusted p = {t['p_adj']:.3g}, n = {int(t['n_a'])} images)."})
    return rows
