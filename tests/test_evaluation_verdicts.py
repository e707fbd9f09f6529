"""Verdicts that cannot mislead: controls only where they mean something (issue 21).

The random map is the floor for faithfulness and localization; model-independent maps are the reference for the
randomization checks; robustness is never compared with a control (a map that ignores its input is trivially
stable: the random control has max-sensitivity 0), it is judged against a stated threshold.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from xaikit.errors import ArgumentError
from xaikit.evaluation import (
    CONTROL_ROLES,
    CONTROLS,
    FAMILIES,
    ROBUSTNESS_THRESHOLDS,
    curves,
    rank_methods,
    sanity_verdicts,
    score_many,
    summarize,
)
from xaikit.saliency import explain
from xaikit.viz.evaluation import metric_forest, rank_heatmap, verdict_figures

from evaluation_helpers import inputs, lesion_masks, tiny_cnn

METRICS = {"deletion": {"steps": 8}, "pointing_game": {}, "max_sensitivity": {"n_samples": 2},
           "local_lipschitz": {"n_samples": 2}, "sparseness": {},
           "cascading_randomization": {"similarities": ["spearman_abs"]}}


@pytest.fixture(scope="module")
def scored():
    model, x = tiny_cnn(), inputs(6)
    exps = {"gradient": explain(model, x, "gradient"),
            "ig": explain(model, x, "integrated_gradients", n_steps=4)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN warnings of constant maps
        table = score_many(model, x, exps, METRICS, masks=lesion_masks(6), progress=False)
        sweep = curves(model, x, exps, ["deletion"], steps=8)
    return table, summarize(table, n_boot=50), rank_methods(table, n_boot=0), sweep


def test_every_family_has_a_stated_role():
    assert set(CONTROL_ROLES) == set(FAMILIES)
    assert CONTROL_ROLES["robustness"] is None and CONTROL_ROLES["faithfulness"] == "floor"


def test_the_random_control_is_trivially_stable(scored):
    """Why robustness cannot be judged against it: max-sensitivity 0 for a map that ignores its input."""
    table, _, _, _ = scored
    rob = table[(table["method"] == "random") & (table["family"] == "robustness")]
    assert len(rob) and np.allclose(rob["value"], 0.0)


def test_no_robustness_verdict_mentions_a_control(scored):
    table, _, tests, _ = scored
    verdicts = sanity_verdicts(table, tests)
    rob = verdicts[verdicts["family"] == "robustness"]
    assert set(rob["check"]) == {"max_sensitivity", "local_lipschitz"}
    assert set(rob["method"]) == {"gradient", "ig"}  # no rows for the controls themselves
    assert not rob["verdict"].str.contains("control|random|sobel|beat|WORSE").any(), rob["verdict"].tolist()
    ms = rob[rob["check"] == "max_sensitivity"].set_index("method")
    for method, row in ms.iterrows():
        mean = table[(table["method"] == method) & (table["metric"] == "max_sensitivity")]["value"].mean()
        assert row["passed"] == (mean < ROBUSTNESS_THRESHOLDS["max_sensitivity"])
        assert row["judged_against"] == "stated threshold 0.5" and f"{mean:.3g}" in row["verdict"]
    lip = rob[rob["check"] == "local_lipschitz"]
    assert lip["passed"].isna().all() and lip["verdict"].str.contains("not judged").all()
    stated = sanity_verdicts(table, tests, robustness_thresholds={"local_lipschitz": 1e9})
    assert stated.loc[stated["check"] == "local_lipschitz", "passed"].all()


def test_floor_and_reference_verdicts_name_what_they_compare_with(scored):
    table, _, tests, _ = scored
    verdicts = sanity_verdicts(table, tests)
    floor = verdicts[verdicts["family"].isin(["faithfulness", "localization"])]
    assert set(floor["check"]) == {"deletion", "pointing_game"}
    assert floor["verdict"].str.contains("the random control").all()
    assert (floor["judged_against"] == "random control (floor)").all()
    rand = verdicts[verdicts["family"] == "randomization"].set_index("method")
    assert rand.loc["gradient", "verdict"].count("model-independent maps: random 1.00, sobel 1.00") == 1
    assert not rand.loc["sobel", "passed"] and "fails by construction" in rand.loc["sobel", "verdict"]
    assert "complexity" not in set(verdicts["family"])  # sparseness describes a map, it judges nothing


def test_controls_are_not_ranked_or_tested_on_robustness_and_complexity(scored):
    table, summary, tests, _ = scored
    no_role = summary["family"].isin(["robustness", "complexity"])
    ctrl = summary["method"].isin(CONTROLS)
    assert summary.loc[no_role & ctrl, "rank"].isna().all()
    # the methods are ranked among themselves: 1 and 2, not 2 and 3 behind a trivially stable random map
    for metric, sub in summary[no_role & ~ctrl].groupby("metric"):
        assert sorted(sub["rank"]) == [1.0, 2.0], metric
    assert summary.loc[~no_role & ctrl, "rank"].notna().all()  # floor and reference: ranked beside the methods
    rob_tests = tests[tests["metric"].isin(["max_sensitivity", "local_lipschitz", "sparseness"])]
    assert len(rob_tests) and not (rob_tests[["group_a", "group_b"]].isin(CONTROLS)).any().any()
    assert tests.loc[tests["metric"] == "deletion", ["group_a", "group_b"]].isin(["random"]).any().any()


def test_rank_heatmap_excludes_controls_from_robustness_columns(scored):
    _, summary, _, _ = scored
    heat = rank_heatmap(summary)
    z = pd.DataFrame(heat.data[0].z, index=heat.data[0].y, columns=heat.data[0].x)
    for metric in ("max_sensitivity", "local_lipschitz", "sparseness"):
        assert z.loc[list(CONTROLS), metric].isna().all(), metric
        assert z[metric].min() == 1.0 and z[metric].idxmin() in ("gradient", "ig")
    # a summary without the family column (an older table): the registry tells the families
    heat = rank_heatmap(summary.drop(columns="family").assign(rank=1.0))
    z = pd.DataFrame(heat.data[0].z, index=heat.data[0].y, columns=heat.data[0].x)
    assert z.loc["random", "max_sensitivity"] != z.loc["random", "max_sensitivity"]  # NaN
    assert z.loc["random", "deletion"] == 1.0


def test_robustness_forest_draws_the_threshold_not_the_controls(scored):
    _, summary, _, _ = scored
    fig = metric_forest(summary, "max_sensitivity")
    assert sorted(fig.data[0].y) == ["gradient", "ig"]
    assert [s.x0 for s in fig.layout.shapes] == [ROBUSTNESS_THRESHOLDS["max_sensitivity"]]
    assert "stated threshold 0.5" in fig.layout.title.text
    deletion = metric_forest(summary, "deletion")
    assert sorted(deletion.data[0].y) == ["gradient", "ig", "random", "sobel"]  # the floor is drawn


def test_verdict_figures_draw_every_verdict_with_what_it_is_judged_against(scored):
    table, summary, tests, sweep = scored
    verdicts = sanity_verdicts(table, tests)
    figs = verdict_figures(summary, verdicts, sweep)
    assert set(figs) == {"curves", "cascading_randomization", "pointing_game", "max_sensitivity", "local_lipschitz"}
    assert set(verdicts["check"]) - {"deletion"} <= set(figs)  # deletion is drawn in "curves"
    assert {t.name for t in figs["curves"].data} == {"gradient", "ig", "random", "sobel"}
    assert {t.name for t in figs["cascading_randomization"].data} == {"gradient", "ig", "random", "sobel"}
    assert 0.5 in [s.y0 for s in figs["cascading_randomization"].layout.shapes]
    assert "random" in figs["pointing_game"].data[0].y  # the floor of a localization verdict
    assert "random" not in figs["max_sensitivity"].data[0].y and len(figs["max_sensitivity"].layout.shapes) == 1
    assert len(figs["local_lipschitz"].layout.shapes) == 0  # not judged: no threshold to draw
    stated = verdict_figures(summary, verdicts, sweep, robustness_thresholds={"local_lipschitz": 2.0})
    assert [s.x0 for s in stated["local_lipschitz"].layout.shapes] == [2.0]
    with pytest.raises(ArgumentError, match="pass curves="):
        verdict_figures(summary, verdicts)
    with pytest.raises(ArgumentError, match="lacks columns"):
        verdict_figures(summary, verdicts.drop(columns="family"))
