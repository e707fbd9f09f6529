"""Statistics that never lie: degenerate data from issue 15, and hypothesis properties of the stats layer."""
from __future__ import annotations

import itertools
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from xaikit.errors import StatsError
from xaikit.stats import cohen_d, cohen_dz, compare_groups, correct, hedges_g, region_enrichment, run_protocol


def _patients(n_per_group: int, images: int = 3) -> pd.DataFrame:
    """Completely separated groups: label 1 scores ~1 higher; several images per patient."""
    rows = []
    for p in range(2 * n_per_group):
        label = p % 2
        for i in range(images):
            rows.append({"patient_id": f"p{p}", "label": label, "mass_frac": label + 0.1 * i + 0.01 * p})
    return pd.DataFrame(rows)


def test_patient_bootstrap_refuses_too_few_patients():
    # old code: p = 0, "significant", from 2 patients per group (Mann-Whitney on patient means: p = 0.33)
    with pytest.raises(StatsError, match="at least 3 per group.*aggregate='patient'"):
        compare_groups(_patients(2), by=(), bootstrap="patient", n_boot=200)


def test_patient_bootstrap_p_never_below_what_the_patients_can_show():
    res = compare_groups(_patients(3), by=(), bootstrap="patient", n_boot=300).iloc[0]
    exact = stats.mannwhitneyu([0, 0, 0], [1, 1, 1.0], method="exact").pvalue   # separated 3 vs 3
    assert res.p_raw == pytest.approx(2 / math.comb(6, 3)) == pytest.approx(exact)
    assert not res.significant


@pytest.mark.parametrize("test", ["welch_t", "student_t"])
@pytest.mark.parametrize("values", [[0.0] * 5 + [1.0] * 5,                           # pointing hit/miss
                                    [0.1 + 0.2, 0.3, 0.3, 0.3, 0.1 + 0.2] + [0.7] * 5])   # rounding noise only
def test_t_tests_on_constant_groups_are_undefined_not_significant(test, values):
    df = pd.DataFrame({"label": [0] * 5 + [1] * 5, "pointing": values, "method": "m", "region": "lesion"})
    other = df.assign(region="lung", pointing=[0.0, 1, 0, 1, 1, 1, 0, 1, 1, 1])
    with pytest.warns(UserWarning, match="constant within both groups"):
        res = compare_groups(pd.concat([df, other]), value="pointing", test=test, n_boot=0).set_index("region")
    res = res.loc["lesion"]   # was: effect -inf or ~5e16, p <= 1e-34, significant
    assert np.isnan(res.p_raw) and np.isnan(res.effect_size) and pd.isna(res.significant) and np.isnan(res.p_adj)
    # the rank test stays defined on such data (tie-corrected normal approximation)
    mw = compare_groups(df, by=(), value="pointing", n_boot=0).iloc[0]
    assert mw.effect_size == -1.0 and 0 < mw.p_raw < 0.05


def test_effect_sizes_are_nan_not_inf_without_variation():
    assert np.isnan(cohen_d([0, 0, 0.0], [1, 1, 1.0])) and np.isnan(hedges_g([0.3, 0.1 + 0.2], [0.7, 0.7]))
    assert np.isnan(cohen_dz([0.2, 0.2, 0.2]))
    batch = cohen_d(np.array([[0, 0, 0.0], [0, 1, 2.0]]), np.array([[1, 1, 1.0], [1, 2, 3.0]]))
    assert np.isnan(batch[0]) and batch[1] == pytest.approx(-1.0)


def test_correct_refuses_p_values_outside_0_1():
    with pytest.raises(StatsError, match=r"outside \[0, 1\].*rows \[0, 2\]"):
        correct(pd.DataFrame({"p_raw": [-0.5, 0.2, 1.5]}))


def test_protocols_on_constant_data_keep_p_adj_nan():
    data = pd.DataFrame({"method": "m", "region": "r", "label": [0] * 5 + [1] * 5, "mean": [1.0] * 5 + [2.0] * 5})
    for name in ("sumer2023", "nimanui"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # scipy's shapiro warns on constant input
            res = run_protocol(name, data).iloc[0]
        assert (np.isnan(res.p_raw) and np.isnan(res.p_adj)) or res.p_adj >= res.p_raw
        assert not (res.significant and np.isnan(res.p_raw))
    same = data.assign(mean=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_protocol("sumer2023", same).iloc[0]
    assert np.isnan(res.p_adj) == np.isnan(res.p_raw) and not res.significant


def test_one_sample_t_on_a_constant_ratio_is_undefined():
    df = pd.DataFrame({"region": ["lung"] * 6 + ["heart"] * 6, "density_ratio": [2.0] * 6 + [1, 2, 3, 1, 2, 4.0]})
    with pytest.warns(UserWarning, match="undefined without variation"):
        res = region_enrichment(df, by="region", test="t", n_boot=0).set_index("region")
    assert np.isnan(res.loc["lung", "p_raw"]) and np.isnan(res.loc["lung", "effect_size"])  # was p = 0, d_z = inf
    assert 0 < res.loc["heart", "p_raw"] < 1


# ---- properties ---------------------------------------------------------------------------------------------
# values drawn from a small grid so that ties, constant groups and rounding noise all occur
_value = st.sampled_from([0.0, 0.1, 0.2, 0.1 + 0.2, 0.3, 0.5, 1.0, 2.5, 1e-9, 7.0])
_group = st.lists(_value, min_size=2, max_size=7)
_PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _frame(a: list[float], b: list[float], second: list[float] | None = None) -> pd.DataFrame:
    df = pd.DataFrame({"label": [0] * len(a) + [1] * len(b), "mass_frac": a + b, "region": "r1"})
    if second is not None:
        df = pd.concat([df, df.assign(region="r2", mass_frac=(second * 10)[: len(df)])], ignore_index=True)
    return df


def _run(df: pd.DataFrame, **kw) -> tuple[pd.DataFrame, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = compare_groups(df, by="region", **kw)
    return res, [str(w.message) for w in caught]


@_PROPS
@given(a=_group, b=_group, second=st.lists(_value, min_size=4, max_size=4),
       test=st.sampled_from(["mannwhitney", "welch_t", "student_t"]), correction=st.sampled_from(["holm", "fdr_bh"]))
def test_compare_groups_properties(a, b, second, test, correction):
    df = _frame(a, b, second)
    try:
        res, messages = _run(df, test=test, n_boot=0, correction=correction)
    except StatsError as exc:     # a family where every test is undefined: refused with a clear message
        assert "all p_raw are NaN" in str(exc)
        return
    p, q = res["p_raw"].to_numpy(float), res["p_adj"].to_numpy(float)
    ok = ~np.isnan(p)
    assert ((p[ok] >= 0) & (p[ok] <= 1)).all() and ((q[ok] >= p[ok] - 1e-12) & (q[ok] <= 1)).all()
    assert np.isnan(q[~ok]).all() and res["significant"][~ok].isna().all()
    effect = res["effect_size"].to_numpy(float)
    assert not np.isinf(effect).any()
    if np.isnan(effect).any() or (~ok).any():
        assert any("undefined" in m or "constant" in m for m in messages)
    shuffled = df.sample(frac=1.0, random_state=len(a) * 31 + len(b)).reset_index(drop=True)
    again, _ = _run(shuffled, test=test, n_boot=0, correction=correction)
    cols = ["p_raw", "p_adj", "effect_size", "statistic"]
    pd.testing.assert_frame_equal(res[cols], again[cols])


@settings(max_examples=15, deadline=None)
@given(a=_group, b=_group)
def test_bootstrap_ci_is_invariant_to_row_order(a, b):
    df = _frame(a, b)
    res, _ = _run(df, n_boot=50)
    again, _ = _run(df.iloc[::-1].reset_index(drop=True), n_boot=50)
    pd.testing.assert_frame_equal(res[["ci_low", "ci_high"]], again[["ci_low", "ci_high"]])


@_PROPS
@given(p=st.lists(st.one_of(st.floats(0, 1), st.just(float("nan"))), min_size=1, max_size=12),
       method=st.sampled_from(["holm", "fdr_bh", "bonferroni", "hommel", "sidak", "none"]))
def test_correct_properties(p, method):
    df = pd.DataFrame({"p_raw": p})
    if np.isnan(p).all():
        with pytest.raises(StatsError):
            correct(df, method)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = correct(df, method)
        rev = correct(df.iloc[::-1], method).iloc[::-1]
    raw, adj = np.asarray(p), res["p_adj"].to_numpy(float)
    ok = ~np.isnan(raw)
    assert ((adj[ok] >= raw[ok] - 1e-12) & (adj[ok] <= 1)).all() and np.isnan(adj[~ok]).all()
    np.testing.assert_allclose(rev["p_adj"].to_numpy(float), adj)


@_PROPS
@given(p=st.floats(allow_nan=False).filter(lambda v: v < 0 or v > 1))
def test_correct_refuses_any_p_outside_the_unit_interval(p):
    with pytest.raises(StatsError, match="outside"):
        correct(pd.DataFrame({"p_raw": [0.01, p]}))


# ------------------------------------------------------------------------ exact Mann-Whitney p (issue 23)
def _enumerated_mw_p(a: list[float], b: list[float]) -> float:
    """Reference: two-sided permutation p of U, every split of the pooled values enumerated (ties as midranks),
    two-sided as twice the smaller tail (scipy's convention)."""
    pooled = np.array(a + b, float)
    ranks = stats.rankdata(pooled)
    u_of = lambda idx: ranks[list(idx)].sum() - len(a) * (len(a) + 1) / 2  # noqa: E731
    observed = u_of(range(len(a)))
    splits = np.array([u_of(idx) for idx in itertools.combinations(range(len(pooled)), len(a))])
    return float(min(1.0, 2 * min(np.mean(splits <= observed + 1e-9), np.mean(splits >= observed - 1e-9))))


def test_mannwhitney_with_ties_in_small_groups_is_exact():
    df = pd.DataFrame({"label": [0] * 3 + [1] * 3, "mass_frac": [1.0, 1.0, 2.0, 3.0, 3.0, 4.0]})
    row = compare_groups(df, by=(), n_boot=0).iloc[0]
    # scipy's default switches to the normal approximation with ties (p = 0.072 here): not what 6 values can show
    assert row["p_raw"] == pytest.approx(0.1) and row["p_method"] == "permutation_exact"
    assert not row["significant"]


@_PROPS
@given(a=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=2, max_size=6),
       b=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=2, max_size=6))
def test_mannwhitney_p_matches_full_enumeration(a, b):
    df = pd.DataFrame({"label": [0] * len(a) + [1] * len(b), "mass_frac": a + b})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = compare_groups(df, by=(), n_boot=0).iloc[0]
    assert row["p_method"] in ("permutation_exact", "exact")
    assert row["p_raw"] == pytest.approx(_enumerated_mw_p(sorted(a), sorted(b)), abs=1e-9)


# ------------------------------------------------------------------- issue 23: arguments, floods, messages
@pytest.mark.parametrize("kwargs,names", [
    ({"ci": 1.5}, "ci=1.5"), ({"ci": 0}, "ci=0"), ({"ci": "95%"}, "ci='95%'"), ({"n_boot": -5}, "n_boot=-5"),
    ({"n_boot": 2.5}, "n_boot=2.5"), ({"alternative": "bigger"}, "alternative='bigger'"), ({"seed": "x"}, "seed='x'"),
])
def test_compare_groups_refuses_bad_resampling_arguments(kwargs, names):
    df = _frame([0.1, 0.2, 0.3], [0.5, 0.6, 0.7])
    with pytest.raises(StatsError, match=rf"compare_groups: {re.escape(names)}"):
        compare_groups(df, by="region", **kwargs)
    with pytest.raises(StatsError, match=re.escape(names)):
        region_enrichment(df.assign(image_id=[f"i{k}" for k in range(6)], area_frac=0.5), by="region", **kwargs)


def test_mixed_model_on_constant_data_warns_once_per_message():
    from xaikit.stats import mixed_model

    rows = [{"patient_id": f"p{p}", "image_id": f"i{p}{k}", "label": p % 2, "region": r, "mass_frac": 0.5}
            for p in range(8) for k in range(2) for r in ("a", "b")]
    with pytest.raises(StatsError, match=r"mixed_model: ci=2"):
        mixed_model(pd.DataFrame(rows), ci=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = mixed_model(pd.DataFrame(rows))
    messages = [str(w.message) for w in caught]
    assert "is constant (0.5)" in messages[0] and len(messages) == len(set(messages)) and len(messages) < 20
    assert res["p_raw"].isna().all() and (res["estimate"].iloc[1:] == 0).all()   # the result stays honest


def test_all_nan_input_says_so_not_one_level():
    df = _frame([0.1, 0.2], [0.3, 0.4]).assign(mass_frac=np.nan)
    with pytest.raises(StatsError, match=r"compare_groups: all 4 rows have NaN .* nothing is left to test"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compare_groups(df, by="region")


def test_an_undefined_single_test_is_explained_by_compare_groups_not_correct():
    df = _frame([0.3, 0.3, 0.3], [0.7, 0.7, 0.7])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(StatsError, match=r"^compare_groups: no test .*all p_raw are NaN.*test='mannwhitney'"):
            compare_groups(df, by="region", test="welch_t", n_boot=0)
