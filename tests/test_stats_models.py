"""Paired comparisons, mixed models, power and alignment against scipy/statsmodels directly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.power import TTestIndPower

from xaikit.errors import StatsError
from xaikit.stats import (
    alignment,
    alignment_summary,
    compare_methods,
    compare_regions,
    detectable_effect,
    mixed_model,
    power_table,
    required_n,
    spearman_ci,
)


def _paired(rng, n=25):
    rows, patient = [], rng.normal(0, 0.1, 8)
    for i in range(n):
        base = 0.3 + patient[i % 8] + rng.normal(0, 0.02)
        for m, shift in (("grad", 0.0), ("ig", 0.02), ("lrp", 0.15)):
            for region in ("lung", "heart"):
                rows.append({"image_id": f"im{i}", "patient_id": f"p{i % 8}", "label": i % 2, "method": m,
                             "region": region, "mass_frac": base + shift * (region == "lung") + rng.normal(0, 0.03)})
    return pd.DataFrame(rows)


def test_compare_methods_friedman_wilcoxon_kendall(rng):
    scores = _paired(rng)
    res = compare_methods(scores, n_boot=100)
    lung = res[res.region == "lung"].set_index(["test", "group_a", "group_b"])
    wide = scores[scores.region == "lung"].pivot(index="image_id", columns="method", values="mass_frac")
    fr = stats.friedmanchisquare(wide.grad, wide.ig, wide.lrp)
    row = lung.loc[("friedman", "all", "")]
    assert row.p_raw == pytest.approx(fr.pvalue) and row.statistic == pytest.approx(fr.statistic)
    ranks = wide.rank(axis=1).sum()
    n, k = wide.shape
    w = 12 * ((ranks - n * (k + 1) / 2) ** 2).sum() / (n**2 * (k**3 - k))   # Kendall's W, no ties
    assert row.effect_size == pytest.approx(w) and row.ci_low <= w <= row.ci_high
    post = lung.loc[("wilcoxon", "grad", "lrp")]
    assert post.p_raw == pytest.approx(stats.wilcoxon(wide.grad, wide.lrp).pvalue)
    assert post.effect_size == pytest.approx(-1.0) and post.significant
    assert len(res) == 2 * (1 + 3)


def test_compare_paired_drops_incomplete_subjects(rng):
    scores = _paired(rng)
    scores = scores[~((scores.image_id == "im0") & (scores.method == "ig"))]
    with pytest.warns(UserWarning, match="1 subjects lack"):
        res = compare_methods(scores, n_boot=0)
    assert (res["n_a"] == 24).all()
    two = compare_regions(scores[scores.method == "grad"], n_boot=0)
    assert list(two["test"]) == ["wilcoxon"] and two["group_a"].iloc[0] == "heart"
    with pytest.raises(StatsError, match="occur more than once"):
        compare_methods(pd.concat([scores, scores]), n_boot=0)


@pytest.mark.filterwarnings("ignore:.*boundary of the parameter space")
def test_mixed_model_matches_statsmodels(rng):
    scores = _paired(rng)
    scores = scores[scores.method == "lrp"]
    res = mixed_model(scores, "mass_frac ~ C(region) * C(label)")
    ref = smf.mixedlm("mass_frac ~ C(region) * C(label)", scores, groups=scores["patient_id"]).fit()
    assert list(res["term"]) == list(ref.fe_params.index)
    np.testing.assert_allclose(res["estimate"], ref.fe_params, rtol=1e-6)
    np.testing.assert_allclose(res["p_raw"], ref.pvalues[ref.fe_params.index], rtol=1e-6)
    assert (res["groups"] == "patient_id").all() and res["n_groups"].iloc[0] == 8
    region_term = res[res.term == "C(region)[T.lung]"].iloc[0]
    assert region_term.ci_low > 0                                          # lung gets more for lrp
    with pytest.raises(StatsError, match="left side"):
        mixed_model(scores, "relevance ~ region")


def test_power_against_statsmodels():
    d = detectable_effect(20, 20, alpha=0.05, power=0.8)
    assert d == pytest.approx(TTestIndPower().solve_power(nobs1=20, ratio=1, alpha=0.05, power=0.8))
    assert detectable_effect(20, 20, n_tests=6) > d                           # a family costs power
    assert required_n(0.5) == 64
    assert required_n(0.5, test="mannwhitney") == int(np.ceil(TTestIndPower().solve_power(0.5, power=0.8, alpha=0.05)
                                                             / (3 / np.pi)))
    assert detectable_effect(required_n(0.4), alpha=0.05) <= 0.4
    tests = pd.DataFrame({"test": ["mannwhitney", "wilcoxon", "friedman"], "n_a": [20, 30, 30],
                          "n_b": [20, np.nan, 30], "p_raw": [0.1, 0.2, 0.3]})
    out = power_table(tests)
    assert out["detectable_d"].iloc[0] == pytest.approx(detectable_effect(20, 20, test="mannwhitney", n_tests=3))
    assert np.isnan(out["detectable_d"].iloc[2])
    with pytest.raises(StatsError):
        detectable_effect(20, test="anova")


def test_alignment_spearman_per_fold(rng):
    regions = [f"r{i}" for i in range(8)]
    expert = pd.DataFrame({"region": regions, "expert_score": np.arange(8.0)})
    rows = []
    for fold in range(3):
        for m, noise in (("good", 0.5), ("bad", 50.0)):
            for img in range(5):
                for i, r in enumerate(regions):
                    rows.append({"method": m, "fold": fold, "image_id": f"{fold}_{img}", "region": r,
                                 "mean": i + rng.normal(0, noise)})
    scores = pd.DataFrame(rows)
    res = alignment(scores, expert, fold="fold")
    assert len(res) == 6
    sub = scores[(scores.method == "good") & (scores.fold == 1)]          # every image's score, not their mean
    ref = stats.spearmanr(sub["mean"], sub["region"].str[1:].astype(float))
    got = res[(res.method == "good") & (res.fold == 1)].iloc[0]
    assert got.statistic == pytest.approx(ref.statistic) and got.p_raw == pytest.approx(ref.pvalue)
    assert (got.n_pairs, got.n_images, got.n_regions) == (40, 5, 8)
    summary = alignment_summary(res).set_index("method")
    assert summary.loc["good", "rho_mean"] > 0.9 and summary.loc["good", "n_folds"] == 3
    assert summary.loc["good", "rho_sd"] == pytest.approx(res[res.method == "good"]["statistic"].std())
    lo, hi = spearman_ci(0.5, 20)
    assert lo < 0.5 < hi and np.isnan(spearman_ci(0.5, 3)).all()      # NaN below 4 regions
    with pytest.raises(StatsError, match=r"do not join on \['region'\]: 8 of 8 score keys have no expert score"):
        alignment(scores, pd.Series({"x": 1.0, "y": 2.0, "z": 3.0}))


def _per_image_expert(rng, n_images=20):
    """The issue's counter-example: experts score each image's regions; the model agrees exactly per pair."""
    rows = [{"image_id": f"img{i}", "region": r, "expert_score": float(rng.uniform(0, 10))}
            for i in range(n_images) for r in ("eyes", "nose", "mouth")]
    expert = pd.DataFrame(rows)
    scores = expert.assign(method="m", mean=np.exp(expert["expert_score"] / 5)).drop(columns="expert_score")
    return scores.sample(frac=1.0, random_state=0), expert   # shuffled: the join, not the row order, pairs them


def test_alignment_pairs_each_image_and_region(rng):
    scores, expert = _per_image_expert(rng)
    res = alignment(scores, expert)
    assert res["statistic"].iloc[0] == pytest.approx(1.0) and res["n_pairs"].iloc[0] == 60
    # what averaging over images before joining on the region gave: far from 1 on the same data
    averaged = scores.groupby("region")["mean"].mean().rename("model").reset_index().merge(expert, on="region")
    assert abs(stats.spearmanr(averaged["model"], averaged["expert_score"]).statistic) < 0.5
    series = expert.set_index(["image_id", "region"])["expert_score"]     # a (image, region) Series works too
    assert alignment(scores, series)["statistic"].iloc[0] == pytest.approx(1.0)


def test_alignment_refuses_tables_that_do_not_join(rng):
    scores, expert = _per_image_expert(rng, n_images=6)
    with pytest.raises(StatsError, match=r"do not join on \['region', 'image_id'\]: 3 of 18 score keys have no "
                                         r"expert score \(.*img5"):
        alignment(scores, expert[expert.image_id != "img5"])
    with pytest.raises(StatsError, match=r"\(method=m\) and the expert table do not join .*: 3 of 18 expert keys "
                                         r"have no score"):
        alignment(scores[scores.image_id != "img0"], expert)
    with pytest.raises(StatsError, match=r"the expert table holds 2 rows that share their \['region', 'image_id'\]"):
        alignment(scores, pd.concat([expert, expert.iloc[:1]]))
    with pytest.raises(StatsError, match=r"alignment: the table has no column\(s\) \['image_id'\]"):
        alignment(scores.drop(columns="image_id"), expert)
    with pytest.raises(StatsError, match=r"the scores table holds 2 rows that share"):
        alignment(pd.concat([scores, scores.iloc[:1]]), expert)
