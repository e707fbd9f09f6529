"""Core tests: correction, group comparisons and enrichment against direct scipy/statsmodels calls."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from xaikit.errors import StatsError
from xaikit.stats import (
    TEST_COLUMNS,
    cohen_d,
    compare_groups,
    correct,
    hedges_g,
    paired_rank_biserial,
    rank_biserial,
    region_enrichment,
)


def _scores(rng, n=30, shift=0.15):
    """Long table: 2 methods x 3 regions x n images, label 1 raises mass_frac in 'lesion' for method 'a'."""
    rows = []
    for i in range(n):
        label = i % 2
        for method in ("a", "b"):
            for region in ("lesion", "lung", "marker"):
                v = rng.normal(0.3, 0.05) + (shift if (label and region == "lesion" and method == "a") else 0)
                rows.append({"image_id": f"im{i}", "patient_id": f"p{i // 2}", "label": label, "method": method,
                             "region": region, "mass_frac": v,
                             "density_ratio": np.exp(rng.normal(0.4 if region == "lesion" else 0, 0.3))})
    return pd.DataFrame(rows)


def test_effect_sizes_match_their_definitions(rng):
    a, b = rng.normal(1, 1, 12), rng.normal(0, 2, 9)
    sp = np.sqrt(((12 - 1) * a.var(ddof=1) + (9 - 1) * b.var(ddof=1)) / (12 + 9 - 2))
    assert cohen_d(a, b) == pytest.approx((a.mean() - b.mean()) / sp)
    assert hedges_g(a, b) == pytest.approx(cohen_d(a, b) * (1 - 3 / (4 * 21 - 9)))
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    assert rank_biserial(a, b) == pytest.approx(2 * wins / (12 * 9) - 1)
    d = np.array([1.0, -2.0, 3.0, 0.0, 4.0])
    assert paired_rank_biserial(d) == pytest.approx((1 + 3 + 4 - 2) / 10)  # ranks of |d| without the zero


@pytest.mark.parametrize("method", ["holm", "fdr_bh", "bonferroni"])
def test_correct_wraps_multipletests(rng, method):
    p = rng.random(12) ** 2
    out = correct(pd.DataFrame({"p_raw": p}), method, alpha=0.05)
    reject, p_adj, *_ = multipletests(p, alpha=0.05, method=method)
    np.testing.assert_allclose(out["p_adj"], p_adj)
    np.testing.assert_array_equal(out["significant"].to_numpy(bool), reject)
    assert (out["correction"] == method).all() and (out["family_size"] == 12).all()


def test_correct_families_nan_and_empty():
    df = pd.DataFrame({"method": ["a", "a", "b", "b"], "p_raw": [0.01, 0.02, 0.03, np.nan]})
    with pytest.warns(UserWarning, match="1 tests have no p-value"):
        out = correct(df, "bonferroni", by="method")
    np.testing.assert_allclose(out["p_adj"], [0.02, 0.04, 0.03, np.nan])
    assert out["significant"].isna().tolist() == [False, False, False, True]
    with pytest.raises(StatsError, match="no test"):
        correct(pd.DataFrame({"p_raw": [np.nan]}))
    with pytest.raises(StatsError, match="empty"):
        correct(pd.DataFrame({"p_raw": []}))
    with pytest.raises(StatsError, match="unknown method"):
        correct(df.fillna(0.5), "magic")


def test_compare_groups_matches_scipy(rng):
    scores = _scores(rng)
    res = compare_groups(scores.drop(columns="patient_id"), "label", n_boot=200)
    assert list(res.columns[:len(TEST_COLUMNS)]) == TEST_COLUMNS and len(res) == 6
    for _, row in res.iterrows():
        cell = scores[(scores.method == row.method) & (scores.region == row.region)]
        a, b = (cell.loc[cell.label == g, "mass_frac"].to_numpy() for g in (0, 1))
        assert row.p_method == "exact"  # small groups without ties: scipy's exact U distribution
        ref = stats.mannwhitneyu(a, b, method="exact")
        assert row.statistic == pytest.approx(ref.statistic) and row.p_raw == pytest.approx(ref.pvalue)
        assert row.effect_size == pytest.approx(rank_biserial(a, b))
        assert row.ci_low <= row.effect_size <= row.ci_high
    np.testing.assert_allclose(res["p_adj"], multipletests(res["p_raw"], method="holm")[1])
    hit = res[(res.method == "a") & (res.region == "lesion")].iloc[0]
    assert hit.significant and hit.effect_size < -0.8  # group_a (label 0) lower
    assert res[(res.region != "lesion")]["significant"].sum() == 0


def test_compare_groups_welch_and_hedges(rng):
    scores = _scores(rng)
    res = compare_groups(scores.drop(columns="patient_id"), "label", test="welch_t", by="region",
                         n_boot=0).set_index("region")
    cell = scores[scores.region == "marker"]
    a, b = (cell.loc[cell.label == g, "mass_frac"].to_numpy() for g in (0, 1))
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert res.loc["marker", "p_raw"] == pytest.approx(ref.pvalue)
    assert res.loc["marker", "effect_name"] == "hedges_g"
    assert res.loc["marker", "effect_size"] == pytest.approx(hedges_g(a, b))
    assert np.isnan(res.loc["marker", "ci_low"])


def test_patient_aggregation_and_cluster_bootstrap(rng):
    scores = _scores(rng)
    scores["label"] = scores["patient_id"].str[1:].astype(int) % 2   # one label per patient
    with pytest.warns(UserWarning, match="not independent"):
        compare_groups(scores, "label", n_boot=0)
    agg = compare_groups(scores, "label", aggregate="patient", n_boot=0)
    assert (agg["n_a"] + agg["n_b"] == scores["patient_id"].nunique()).all()
    cell = scores[(scores.method == "a") & (scores.region == "lung")]
    means = cell.groupby(["label", "patient_id"])["mass_frac"].mean()
    ref = stats.mannwhitneyu(means.loc[0], means.loc[1])
    row = agg[(agg.method == "a") & (agg.region == "lung")].iloc[0]
    assert row.p_raw == pytest.approx(ref.pvalue)
    boot = compare_groups(scores, "label", bootstrap="patient", n_boot=200, by="region")
    assert boot["test"].str.endswith("patient_bootstrap").all()
    assert ((boot["p_raw"] >= 0) & (boot["p_raw"] <= 1)).all() and (boot["ci_low"] <= boot["ci_high"]).all()


def test_compare_groups_bad_input(rng):
    scores = _scores(rng, n=6).drop(columns="patient_id")
    scores.loc[0, "mass_frac"] = np.nan
    with pytest.warns(UserWarning, match="excluded 1 of 36 rows with NaN.*im0"):
        compare_groups(scores, "label", n_boot=0)
    tiny = scores[(scores.label == 0) | (scores.image_id == "im1")]
    with pytest.raises(StatsError, match="at least 2"):
        compare_groups(tiny.dropna(), "label", n_boot=0)
    with pytest.raises(StatsError, match="no column"):
        compare_groups(scores, "sex")
    with pytest.raises(StatsError, match="one level"):
        compare_groups(scores[scores.label == 0].dropna(), "label")
    with pytest.raises(StatsError, match="patient_id"):
        compare_groups(scores, "label", aggregate="patient")


def test_region_enrichment_against_scipy(rng):
    scores = _scores(rng)
    res = region_enrichment(scores[scores.method == "a"], by="region", n_boot=200, seed=1)
    for _, row in res.iterrows():
        x = np.log(scores[(scores.method == "a") & (scores.region == row.region)]["density_ratio"].to_numpy())
        ref = stats.wilcoxon(x)
        assert row.p_raw == pytest.approx(ref.pvalue) and row.statistic == pytest.approx(ref.statistic)
        assert row.effect_size == pytest.approx(paired_rank_biserial(x))
        assert row.estimate == pytest.approx(np.exp(x.mean()))
    lesion = res.set_index("region").loc["lesion"]
    assert lesion.significant and lesion.effect_size > 0.5 and lesion.ci_low > 0
    t = region_enrichment(scores, test="t", n_boot=0).set_index(["method", "region"])
    x = np.log(scores[(scores.method == "b") & (scores.region == "lung")]["density_ratio"].to_numpy())
    assert t.loc[("b", "lung"), "p_raw"] == pytest.approx(stats.ttest_1samp(x, 0).pvalue)
    assert t.loc[("b", "lung"), "effect_size"] == pytest.approx(x.mean() / x.std(ddof=1))


def test_region_enrichment_zero_ratio_and_signed():
    df = pd.DataFrame({"region": ["r"] * 4, "density_ratio": [0.0, 2.0, 3.0, 1.5]})
    with pytest.warns(UserWarning, match="1 of 4 ratios"):
        region_enrichment(df, by="region", n_boot=0)
    with pytest.raises(StatsError, match="negative"):
        region_enrichment(df.assign(density_ratio=[-1.0, 2, 3, 1]), by="region", n_boot=0)


def _six_groups(rng, n=10):
    """Six classes (0 = unaffected, 1-5 = syndromes) x three regions, class k shifted by 0.1 k."""
    rows = [{"label": k, "region": r, "method": "m", "mean": rng.normal(0.1 * k * (i + 1), 1.0)}
            for k in range(6) for _ in range(n) for i, r in enumerate(("eyes", "nose", "mouth"))]
    return pd.DataFrame(rows)


def test_compare_groups_reference_vs_each_is_one_holm_family(rng):
    df = _six_groups(rng)
    res = compare_groups(df, value="mean", reference=0, n_boot=200)
    assert len(res) == 15 and (res["family_size"] == 15).all() and (res["group_a"] == "0").all()
    expected_p = []
    for _, row in res.iterrows():
        cell = df[df.region == row.region]
        a, b = (cell.loc[cell.label == int(g), "mean"].to_numpy() for g in (row.group_a, row.group_b))
        assert row.p_method == "exact"
        expected_p.append(stats.mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue)
        assert row.effect_size == pytest.approx(rank_biserial(a, b)) and row.ci_low <= row.effect_size <= row.ci_high
    assert res["p_raw"].to_numpy() == pytest.approx(expected_p)
    assert res["p_adj"].to_numpy() == pytest.approx(multipletests(expected_p, method="holm")[1])  # over all 15
    assert (res["significant"] == (res["p_adj"] <= 0.05)).all()


def test_compare_groups_all_pairs_family_and_errors(rng):
    df = _six_groups(rng, n=6)
    res = compare_groups(df, value="mean", by="region", test="welch_t", correction="fdr_bh", n_boot=0)
    assert len(res) == 3 * 15 and (res["family_size"] == 45).all()     # C(6, 2) pairs x 3 regions
    assert set(zip(res.group_a, res.group_b)) == {(str(i), str(j)) for i in range(6) for j in range(i + 1, 6)}
    assert res["p_adj"].to_numpy() == pytest.approx(multipletests(res["p_raw"], method="fdr_bh")[1])
    with pytest.raises(StatsError, match=r"reference=9 is not a level of the group column; its levels are \[0, 1"):
        compare_groups(df, value="mean", reference=9)
    with pytest.raises(StatsError, match="pass pairs= or reference=, not both"):
        compare_groups(df, value="mean", reference=0, pairs=[(0, 1)])
