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


def _reference(scores, alpha, k_alpha, sumer):
    """The decision trees as a reader of the seeds would write them."""
    out = {}
    for (method, region), cell in scores.groupby(["method", "region"]):
        a = cell.loc[cell.label == 0, "mean"].to_numpy()
        b = cell.loc[cell.label == 1, "mean"].to_numpy()
        normal = stats.shapiro(a).pvalue > 0.05 and stats.shapiro(b).pvalue > 0.05
        if sumer:
            p = stats.ttest_ind(a, b, equal_var=len(a) == len(b)).pvalue if normal else stats.mannwhitneyu(a, b).pvalue
        else:
            equal_var = stats.levene(a, b).pvalue > 0.05
            p = stats.ttest_ind(a, b).pvalue if normal and equal_var else stats.mannwhitneyu(a, b).pvalue
        out[(method, region)] = (p, p < alpha / k_alpha)
    return out


@pytest.mark.parametrize("name,alpha,sumer,sizes", [("nimanui", 0.05, False, (20, 20)),
                                                    ("sumer2023", 0.001, True, (20, 20)),
                                                    ("sumer2023", 0.001, True, (15, 25))])
def test_protocols_reproduce_the_seed_decisions(rng, name, alpha, sumer, sizes):
    scores = _seed_like(rng, *sizes)
    res = run_protocol(name, scores)
    assert list(res.columns[:len(TEST_COLUMNS)]) == TEST_COLUMNS and len(res) == 6
    ref = _reference(scores, alpha, 3, sumer)
    for _, row in res.iterrows():
        p, sig = ref[(row.method, row.region)]
        assert row.p_raw == pytest.approx(p) and bool(row.significant) == sig
        assert row.p_adj == pytest.approx(min(1, 3 * p)) and row.alpha_per_test == pytest.approx(alpha / 3)
    assert set(res["test"]) >= {"mannwhitney"}                      # the skewed third goes non-parametric
    if sumer:
        cell = scores[(scores.method == "gradient") & (scores.region == "col0")]
        d = cohen_d(*(cell.loc[cell.label == g, "mean"] for g in (0, 1)))
        got = res[(res.method == "gradient") & (res.region == "col0")]["effect_size"].iloc[0]
        assert got == pytest.approx(d)
        if sizes[0] != sizes[1]:
            assert "student_t" not in set(res["test"])             # Welch whenever the sizes differ
    else:
        assert res["effect_size"].isna().all()


def test_protocol_registry_and_errors(rng):
    assert {"nimanui", "sumer2023"} <= set(PROTOCOLS)
    scores = _seed_like(rng)
    with pytest.raises(StatsError, match="Unknown protocol"):
        run_protocol("mine", scores)
    three = scores.assign(label=np.arange(len(scores)) % 3)
    with pytest.raises(StatsError, match="exactly two groups"):
        run_protocol("nimanui", three)
