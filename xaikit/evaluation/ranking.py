"""From a score table to a verdict: means with bootstrap CIs, paired tests in one family, plain-word sanity checks.

Uses :mod:`xaikit.stats` only (scipy's bootstrap, Friedman + Wilcoxon with Holm over everything tested), so the
ranking carries the same guarantees as every other test the kit runs.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .._resampling import N_BOOT
from ..errors import ArgumentError
from ..stats import bootstrap_ci, compare_paired
from .core import CONTROLS
from .registry import METRICS

__all__ = ["summarize", "rank_methods", "sanity_verdicts", "KEYS", "CONTROL_ROLES", "ROBUSTNESS_THRESHOLDS",
           "controls_compare"]

#: Columns that tell one score apart from another besides the image and the method.
KEYS = ("model", "metric", "layer", "layer_index", "similarity")

#: What the controls mean in each family's verdicts: used only where they mean something (issue 21).
#: ``"floor"``: a method must beat the random map (faithfulness, localization); ``"reference"``: the
#: model-independent maps (random, sobel) show what "does not depend on the weights" looks like (randomization);
#: ``None``: no comparison with a control. Robustness: a map that ignores its input is trivially stable, so
#: "beats random" says nothing; it is judged against a stated threshold (:data:`ROBUSTNESS_THRESHOLDS`).
#: Complexity describes a map and gets no verdict.
CONTROL_ROLES: dict[str, str | None] = {"faithfulness": "floor", "localization": "floor",
                                        "randomization": "reference", "robustness": None, "complexity": None}

#: Stated thresholds of the robustness verdicts: the largest relative change of the map, ``||map(x + d) - map(x)||
#: / ||map(x)||``, under the metric's own input noise (default uniform, +-0.05 per pixel: about 7% of the phantom
#: images' norm). A map that changes by half its own norm or more under such noise is not robust. Measured on the
#: clean sample model (8 held-out pneumonia phantoms, 5 noisy copies): gradcam 0.32, LRP epsilon-plus 0.45,
#: smoothgrad 0.68, gradient 1.00, integrated gradients 1.04. ``local_lipschitz`` has the map's units (no
#: scale-free threshold): it gets a verdict only when the caller states one.
ROBUSTNESS_THRESHOLDS: dict[str, float] = {"max_sensitivity": 0.5, "sensitivity_max": 0.5}


def controls_compare(family: str) -> bool:
    """Whether controls are compared with (ranked beside, tested against) methods on metrics of ``family``."""
    return CONTROL_ROLES.get(family) is not None


def _no_control_metrics(table: pd.DataFrame) -> set:
    """Metrics on which a control is no reference (robustness, complexity): controls are not ranked there."""
    if "family" in table.columns:
        fams = table.groupby("metric")["family"].first().to_dict()
    else:  # a table without the family column: the registry knows the metric's family
        fams = {m: METRICS[m].family for m in table["metric"].unique() if m in METRICS}
    return {m for m, f in fams.items() if not controls_compare(f)}


def _keys(table: pd.DataFrame) -> list[str]:
    return [k for k in KEYS if k in table.columns]


def _filled(values: pd.Series) -> pd.Series:
    """Key column as strings with ``"-"`` where a metric has no such key (NaN would drop the rows from groupby)."""
    return values.astype(object).where(values.notna(), "-").astype(str)


def _require(table: pd.DataFrame, cols: Sequence[str], who: str) -> None:
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ArgumentError(f"{who}: the table lacks columns {missing}; pass a table from score/score_many.")


def summarize(table: pd.DataFrame, *, n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean value per method and metric (layer, similarity) with a bootstrap CI over images, and a rank.

    ``rank`` is 1 for the best method of each metric (direction from ``higher_is_better``); NaN values are
    left out of their cell and counted in ``n_nan``. Controls (:data:`CONTROLS`) are ranked only on metrics
    whose family compares with them (:data:`CONTROL_ROLES`): on robustness and complexity their rank is NaN and
    the methods are ranked among themselves (a map that ignores its input is trivially stable, not the best).
    """
    _require(table, ["method", "metric", "value", "higher_is_better"], "summarize")
    keys = _keys(table)
    rows = []
    for cell, sub in table.groupby([*keys, "method"], sort=False, dropna=False):
        values = sub["value"].to_numpy(float)
        ok = values[np.isfinite(values)]
        lo, hi = bootstrap_ci(np.mean, (ok,), n_boot=n_boot, ci=ci, seed=seed) if len(ok) > 1 else (np.nan, np.nan)
        rows.append({**dict(zip([*keys, "method"], cell)), "n": len(ok), "n_nan": len(values) - len(ok),
                     "mean": ok.mean() if len(ok) else np.nan, "ci_low": lo, "ci_high": hi,
                     "higher_is_better": bool(sub["higher_is_better"].iloc[0]),
                     **({"family": sub["family"].iloc[0]} if "family" in sub.columns else {})})
    out = pd.DataFrame(rows)
    signed = pd.Series(np.where(out["higher_is_better"], -out["mean"], out["mean"]))
    unranked = out["method"].isin(CONTROLS) & out["metric"].isin(_no_control_metrics(table))
    signed[unranked.to_numpy()] = np.nan
    out["rank"] = signed.groupby([_filled(out[k]) for k in keys]).rank(method="min").to_numpy()
    return out


def rank_methods(table: pd.DataFrame, *, correction: str = "holm", n_boot: int = N_BOOT, seed: int = 0,
                 alpha: float = 0.05) -> pd.DataFrame:
    """Paired tests between methods on the same images, per metric: one multiplicity family over all of them.

    :func:`xaikit.stats.compare_paired` per metric (layer, similarity): Friedman with Kendall's W, then
    pairwise Wilcoxon tests with rank-biserial effects (bootstrap CIs); Holm (or ``correction``) over every
    row of every metric. A ``better`` column names the better method of each significant pair. Controls are
    tested only on metrics whose family compares with them (:data:`CONTROL_ROLES`; not robustness, complexity).
    """
    _require(table, ["method", "metric", "value", "image_id"], "rank_methods")
    keys = _keys(table)
    data = table[~(table["method"].isin(CONTROLS) & table["metric"].isin(_no_control_metrics(table)))].copy()
    for k in keys:
        data[k] = _filled(data[k])
    alone = data.groupby("metric")["method"].nunique()
    if (alone < 2).any():  # e.g. one method on robustness: without the controls nothing is left to compare with
        warnings.warn(f"rank_methods: {sorted(alone[alone < 2].index)} have a single method once the controls are "
                      "left out (they are no reference there, see CONTROL_ROLES): not tested; sanity_verdicts "
                      "judges them against stated thresholds.", stacklevel=2)
        data = data[data["metric"].isin(alone[alone >= 2].index)]
    tests = compare_paired(data, "method", by=keys, subject="image_id", value="value", n_boot=n_boot, seed=seed,
                           correction=correction, alpha=alpha)
    higher = table.groupby("metric")["higher_is_better"].first()
    hib = tests["metric"].map(higher).astype(bool)
    pair = tests["test"] == "wilcoxon"
    a_wins = (tests["effect_size"] > 0) == hib
    tests["better"] = np.where(pair & tests["significant"].fillna(False).astype(bool),
                               np.where(a_wins, tests["group_a"], tests["group_b"]), "")
    return tests


VERDICT_COLUMNS = ["method", "check", "family", "judged_against", "passed", "verdict"]


def sanity_verdicts(table: pd.DataFrame, tests: pd.DataFrame | None = None, *, control: str = "random",
                    similarity_threshold: float = 0.5, similarity: str = "spearman_abs",
                    robustness_thresholds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Which method fails which check, in plain words: ``method, check, family, judged_against, passed, verdict``.

    Each family is judged against what means something for it (:data:`CONTROL_ROLES`), named in
    ``judged_against``:

    - randomization checks: failed when the mean ``similarity`` of the maps after the last (fully randomized)
      stage is at or above ``similarity_threshold`` (Adebayo et al. 2018: the map does not depend on the weights);
      the model-independent controls (``random``, ``sobel``) are the reference: their similarity is what "does
      not depend on the weights" looks like (they fail by construction, which shows the check can fail);
    - faithfulness and localization: passed when the paired test against the ``control`` method (from ``tests``,
      the output of :func:`rank_methods`) is significant after the family's correction and in the better
      direction: the random map is their floor;
    - robustness: never against a control (a map that ignores its input is trivially stable): passed when the
      mean value is below the stated threshold (``robustness_thresholds``, default :data:`ROBUSTNESS_THRESHOLDS`);
      a metric without a threshold gets ``passed = None``, "not judged";
    - complexity: no verdict (it describes a map).
    """
    _require(table, ["method", "metric", "value", "family"], "sanity_verdicts")
    thresholds = {**ROBUSTNESS_THRESHOLDS, **dict(robustness_thresholds or {})}
    rows = []
    rand = table[table["family"] == "randomization"]
    if len(rand):
        _require(rand, ["layer_index", "similarity"], "sanity_verdicts")
        rows += _randomization_verdicts(rand, similarity, similarity_threshold)
    rows += _robustness_verdicts(table[table["family"] == "robustness"], thresholds)
    if tests is not None:
        floor = [f for f, role in CONTROL_ROLES.items() if role == "floor"]
        rows += _control_verdicts(table[table["family"].isin(floor)], tests, control)
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def _last_stage_means(rand: pd.DataFrame) -> dict:
    """``{(metric, method): mean similarity after the last stage}`` of one similarity kind."""
    out = {}
    for (metric, method), sub in rand.groupby(["metric", "method"], sort=False):
        last = sub.loc[sub["layer_index"] == sub["layer_index"].max(), "value"]
        out[(metric, method)] = float(np.nanmean(last)) if last.notna().any() else np.nan
    return out


def _randomization_verdicts(rand: pd.DataFrame, kind: str, threshold: float) -> list[dict]:
    rows = []
    means = _last_stage_means(rand[rand["similarity"] == kind])
    for (metric, method), mean in means.items():
        refs = {c: means[(metric, c)] for c in CONTROLS if (metric, c) in means and c != method}
        ref = ", ".join(f"{c} {v:.2f}" for c, v in refs.items()) or "none scored"
        base = {"method": method, "check": metric, "family": "randomization",
                "judged_against": f"{kind} < {threshold}; model-independent maps ({ref})"}
        check = metric.replace("_", " ")
        if not np.isfinite(mean):
            rows.append({**base, "passed": None,
                         "verdict": f"{method}: {check} undefined (constant maps after randomization)."})
            continue
        passed = mean < threshold
        if method in CONTROLS:
            what = ("a model-independent control: it fails by construction, which shows the check can fail"
                    if not passed else "a model-independent control passing: the check is too lax for these maps")
        else:
            what = ("its maps change when the weights are destroyed" if passed else
                    "its maps barely change when the weights are destroyed, so they do not show what the model "
                    "learned")
        rows.append({**base, "passed": passed,
                     "verdict": f"{method} {'passes' if passed else 'FAILS'} the {check} check: {kind} similarity "
                                f"{mean:.2f} after randomizing every layer ({'<' if passed else '>='} {threshold}; "
                                f"model-independent maps: {ref}); {what}."})
    return rows


def _robustness_verdicts(rob: pd.DataFrame, thresholds: Mapping[str, float]) -> list[dict]:
    """Robustness against a stated threshold on the metric itself; controls get no row (they are no reference)."""
    rows = []
    for (metric, method), sub in rob[~rob["method"].isin(CONTROLS)].groupby(["metric", "method"], sort=False):
        values = sub["value"].to_numpy(float)
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        check, limit = metric.replace("_", " "), thresholds.get(metric)
        if limit is None or not np.isfinite(mean):
            why = (f"no stated threshold (it has the map's units); pass robustness_thresholds={{'{metric}': ...}}"
                   if limit is None else "undefined values only")
            rows.append({"method": method, "check": metric, "family": "robustness", "judged_against": "not judged",
                         "passed": None, "verdict": f"{method}: {check} not judged ({why}); mean {mean:.3g}."})
            continue
        passed = mean < limit
        rows.append({"method": method, "check": metric, "family": "robustness",
                     "judged_against": f"stated threshold {limit:g}", "passed": bool(passed),
                     "verdict": f"{method} {'is' if passed else 'is NOT'} robust on {check}: mean {mean:.3g} "
                                f"({'<' if passed else '>='} the stated threshold {limit:g}; n = "
                                f"{int(np.isfinite(values).sum())} images)."})
    return rows


def _control_verdicts(table: pd.DataFrame, tests: pd.DataFrame, control: str) -> list[dict]:
    rows = []
    pairs = tests[(tests["test"] == "wilcoxon") & ((tests["group_a"] == control) | (tests["group_b"] == control))]
    for metric in table["metric"].unique():
        family = table.loc[table["metric"] == metric, "family"].iloc[0]
        for _, t in pairs[pairs["metric"] == metric].iterrows():
            method = t["group_b"] if t["group_a"] == control else t["group_a"]
            if method in CONTROLS:
                continue
            passed = t["better"] == method
            word = "beats" if passed else ("is WORSE than" if t["better"] == control else "does NOT beat")
            adjusted = {"holm": "Holm", "bonferroni": "Bonferroni"}.get(str(t.get("correction")), t.get("correction"))
            rows.append({"method": method, "check": metric, "family": family,
                         "judged_against": f"{control} control (floor)", "passed": bool(passed),
                         "verdict": f"{method} {word} the {control} control on {metric.replace('_', ' ')} "
                                    f"({adjusted}-adjusted p = {t['p_adj']:.3g}, n = {int(t['n_a'])} images)."})
    return rows
