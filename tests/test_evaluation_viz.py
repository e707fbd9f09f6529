"""Evaluation figures and widgets: built from real score tables, with the traces the reader needs."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from xaikit.errors import ArgumentError
from xaikit.evaluation import curves, randomized_maps, score_many, summarize
from xaikit.saliency import explain
from xaikit.viz.evaluation import (
    metric_forest,
    perturbation_curves,
    randomization_curves,
    randomization_maps,
    rank_heatmap,
)

from evaluation_helpers import inputs, tiny_cnn


@pytest.fixture(scope="module")
def results():
    model, x = tiny_cnn(), inputs(5)
    exps = {"gradient": explain(model, x, "gradient")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = score_many(model, x, exps, {"deletion": {"steps": 4}, "cascading_randomization":
                                            {"similarities": ["spearman_abs"]}}, progress=False)
    return model, x, exps, table, summarize(table, n_boot=50)


def test_randomization_figures(results):
    model, x, exps, table, summary = results
    maps, sims = randomized_maps(model, x[:2], exps["gradient"].select([0, 1]))
    assert list(maps)[0] == "original" and len(maps) == 1 + sims["layer"].nunique()
    fig = randomization_maps(maps, 1)
    assert len(fig.data) == len(maps)
    curves_fig = randomization_curves(summary)
    assert {t.name for t in curves_fig.data} == {"gradient", "random", "sobel"}  # the reference maps drawn
    assert [s.y0 for s in curves_fig.layout.shapes] == [0, 0.5]  # zero and the verdict's threshold
    assert [s.y0 for s in randomization_curves(summary, threshold=None).layout.shapes] == [0]
    assert list(curves_fig.data[0].x) == table.drop_duplicates("layer_index").dropna(subset=["layer_index"]) \
        .sort_values("layer_index")["layer"].tolist()
    with pytest.raises(ArgumentError, match="no maps for stages"):
        randomization_maps(maps, layers=["nope"])


def test_curves_forest_and_ranks(results):
    model, x, exps, table, summary = results
    c = curves(model, x, exps, steps=4)
    fig = perturbation_curves(c)
    # every verdict visible: the controls' curves are drawn in each panel (random dotted, sobel dashed, grey)
    assert [t.name for t in fig.data] == ["gradient", "random", "sobel"] * 2
    assert list(fig.data[0].x) == [0.0, 0.25, 0.5, 0.75, 1.0]
    styles = {t.name: (t.line.dash, t.line.color) for t in fig.data}
    assert styles["random"] == ("dot", "#7f7f7f") and styles["sobel"][0] == "dash"
    random_mean = c[(c["method"] == "random") & (c["curve"] == "deletion")].groupby("fraction")["output"].mean()
    np.testing.assert_allclose(fig.data[1].y, random_mean.to_numpy())
    with pytest.raises(ArgumentError, match="no curves of the random control"):
        perturbation_curves(curves(model, x, exps, steps=4, controls=()))
    assert len(perturbation_curves(curves(model, x, exps, steps=4, controls=()), require_controls=False).data) == 2
    forest = metric_forest(summary, "deletion")
    assert sorted(forest.data[0].y) == ["gradient", "random", "sobel"]
    with pytest.raises(ArgumentError, match="several rows per method"):
        metric_forest(summary, "cascading_randomization")
    heat = rank_heatmap(summary)
    assert heat.data[0].z.shape == (3, 2)


def test_widgets_wire_the_figures(results):
    from xaikit.widgets.evaluation import metric_explorer, randomization_explorer

    model, x, exps, table, summary = results
    maps, _ = randomized_maps(model, x[:1], exps["gradient"].select([0]))
    box = randomization_explorer({"gradient": maps})
    dropdown, slider, _ = box.children[0].children
    slider.value = 1
    assert len(box.children[1].data) == 2
    explorer = metric_explorer(summary)
    explorer.children[0].value = "cascading_randomization"
    assert len(explorer.children[1].data[0].y) == 3
