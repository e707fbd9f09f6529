"""The seed protocols, checked decision by decision against direct scipy calls."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from xaikit.errors import StatsError
from xaikit.regions import grid, region_scores
from xaikit.stats import PROTOCOLS, TEST_COLUMNS, cohen_d, run_protocol


def _seed_like(rng, n_a=20, n_b=20):
    """Seed set-up: thirds of random maps, 20 vs 20 images, one third skewed (non-normal) in one group."""
    maps = rng.normal(1.0, 0.2, (n_a + n_b, 24, 24))
    maps[n_a:, :, :8] += rng.exponential(1.0, (n_b, 1, 1))      # skewed shift in col0 for group 1
    labels = np.repeat([0, 1], [n_a, n_b])
    thirds = grid(1, 3, (24, 24))
    a = region_scores(maps, thirds, labels=labels, method="gradient")
    b = region_scores(maps * rng.uniform(0.5, 1.5, (n_a + n_b, 1, 1)), thirds, labels=labels, method="gradcam")
    return pd.concat([a, b], ignore_index=True)


def _reference(scores, alpha, k_alpha, ref_level=0, other=1):
    """The decision tree as a reader of the seeds (and of Sümer et al. 2023, Sec. 4) would write it."""
    out = {}
    for (method, region), cell in scores.groupby(["method", "region"]):
        a = cell.loc[cell.label == ref_level, "mean"].to_numpy()
        b = cell.loc[cell.label == other, "mean"].to_numpy()
        normal = stats.shapiro(a).pvalue > 0.05 and stats.shapiro(b).pvalue > 0.05
        equal_var = stats.levene(a, b).pvalue > 0.05
        p = stats.ttest_ind(a, b).pvalue if normal and equal_var else stats.mannwhitneyu(a, b).pvalue
        out[(method, region)] = (p, p < alpha / k_alpha, "student_t" if normal and equal_var else "mannwhitney")
    return out


@pytest.mark.parametrize("name,alpha,sumer,sizes", [("nimanui", 0.05, False, (20, 20)),
                                                    ("sumer2023", 0.001, True, (20, 20)),
                                                    ("sumer2023", 0.001, True, (15, 25))])
def test_protocols_reproduce_the_seed_decisions(rng, name, alpha, sumer, sizes):
    scores = _seed_like(rng, *sizes)
    res = run_protocol(name, scores)
    assert list(res.columns[:len(TEST_COLUMNS)]) == TEST_COLUMNS and len(res) == 6
    ref = _reference(scores, alpha, 3)
    for _, row in res.iterrows():
        p, sig, test = ref[(row.method, row.region)]
        assert row.p_raw == pytest.approx(p) and bool(row.significant) == sig and row.test == test
        assert row.p_adj == pytest.approx(min(1, 3 * p)) and row.alpha_per_test == pytest.approx(alpha / 3)
    assert set(res["test"]) >= {"mannwhitney"}                      # the skewed third goes non-parametric
    if sumer:
        cell = scores[(scores.method == "gradient") & (scores.region == "col0")]
        d = cohen_d(*(cell.loc[cell.label == g, "mean"] for g in (0, 1)))
        got = res[(res.method == "gradient") & (res.region == "col0")]["effect_size"].iloc[0]
        assert got == pytest.approx(d)
        assert "welch_t" not in set(res["test"])                   # the paper has no Welch branch
    else:
        assert res["effect_size"].isna().all()


def test_protocol_registry_and_errors(rng):
    assert {"nimanui", "sumer2023"} <= set(PROTOCOLS)
    scores = _seed_like(rng)
    with pytest.raises(StatsError, match="unknown protocol .*Known protocols: nimanui"):
        run_protocol("mine", scores)
    three = scores.assign(label=np.arange(len(scores)) % 3)
    with pytest.raises(StatsError, match=r"exactly two groups; 'label' has levels \[0, 1, 2\]. Pass reference="):
        run_protocol("nimanui", three)
    with pytest.raises(StatsError, match=r"reference=7 is not a level of the group column; its levels are \[0, 1, 2\]"):
        run_protocol("sumer2023", three, reference=7)


def test_sumer2023_checks_equal_variances_before_the_t_test(rng):
    """The issue's case: normal groups with unequal variances -- the paper runs Mann-Whitney, not a t-test."""
    z = stats.norm.ppf((np.arange(30) + 0.5) / 30)               # normal quantiles: Shapiro p ~ 1
    a, b = 1.0 + 0.05 * z, 1.1 + 0.5 * z[::-1]
    assert stats.shapiro(a).pvalue > 0.05 and stats.shapiro(b).pvalue > 0.05 and stats.levene(a, b).pvalue < 0.05
    data = pd.DataFrame({"method": "m", "region": "r", "label": [0] * 30 + [1] * 30, "mean": np.r_[a, b]})
    row = run_protocol("sumer2023", data).iloc[0]
    assert row.test == "mannwhitney" and row.p_raw == pytest.approx(stats.mannwhitneyu(a, b).pvalue)
    assert row.levene_p == pytest.approx(stats.levene(a, b).pvalue)
    assert row.shapiro_p_b == pytest.approx(stats.shapiro(b).pvalue)
    assert "Levene p" in row.decision and "unequal variances" in row.decision
    equal = data.assign(mean=np.r_[a, 1.1 + 0.05 * z[::-1]])
    row = run_protocol("sumer2023", equal).iloc[0]
    assert row.test == "student_t" and "Student's t" in row.decision


def test_sumer2023_reference_against_each_syndrome_is_one_family_of_15(rng):
    """Sümer et al. 2023: unaffected (0) vs each of five syndromes x three regions = 15 tests per method."""
    n = 12
    labels = np.repeat(np.arange(6), n)
    maps = rng.normal(1.0, 0.2, (6 * n, 24, 24)) + labels[:, None, None] * 0.05
    maps[labels == 3, :, :8] += rng.exponential(1.0, (n, 1, 1))
    scores = region_scores(maps, grid(1, 3, (24, 24)), labels=labels, method="gradient")
    res = run_protocol("sumer2023", scores, reference=0)
    assert len(res) == 15 and (res["family_size"] == 15).all() and (res["group_a"] == "0").all()
    assert sorted(set(res["group_b"])) == ["1", "2", "3", "4", "5"]
    for level in range(1, 6):
        ref = _reference(scores, 0.001, 15, ref_level=0, other=level)
        for _, row in res[res.group_b == str(level)].iterrows():
            p, sig, test = ref[(row.method, row.region)]
            assert row.p_raw == pytest.approx(p) and bool(row.significant) == sig and row.test == test
            assert row.p_adj == pytest.approx(min(1, 15 * p)) and row.alpha_per_test == pytest.approx(0.001 / 15)
