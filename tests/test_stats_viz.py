"""Statistics figures: what they draw (traces, marks, CIs) and the widget wiring."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaikit.errors import ArgumentError
from xaikit.regions import grid, region_scores
from xaikit.stats import compare_groups
from xaikit.viz.stats import effect_heatmap, forest_plot, region_boxplot, significance_mark


@pytest.fixture
def scored(rng):
    maps = rng.exponential(1.0, (20, 12, 12))
    labels = np.arange(20) % 2
    maps[labels == 1, :6, :4] += 3.0
    regions = grid(2, 3, (12, 12))
    scores = pd.concat([region_scores(maps, regions, labels=labels, method=m) for m in ("a", "b")], ignore_index=True)
    return scores, compare_groups(scores, "label", n_boot=50)


def test_significance_mark():
    assert [significance_mark(p) for p in (0.0005, 0.005, 0.03, 0.2, np.nan)] == ["***", "**", "*", "ns", ""]


def test_region_boxplot_draws_groups_cis_and_marks(scored):
    scores, tests = scored
    fig = region_boxplot(scores, tests=tests, method="a")
    boxes = [t for t in fig.data if t.type == "box"]
    means = [t for t in fig.data if t.type == "scatter"]
    assert [b.name for b in boxes] == ["label=0", "label=1"] and len(means) == 2
    cell = scores[(scores.method == "a") & (scores.region == "row0_col0") & (scores.label == 1)]["mass_frac"]
    i = list(means[1].x).index("row0_col0")
    assert means[1].y[i] == pytest.approx(cell.mean())
    assert means[1].error_y.array[i] > 0
    marks = {a.x: a.text for a in fig.layout.annotations}
    assert marks["row0_col0"] in ("*", "**", "***") and len(marks) == 6
    sub = region_boxplot(scores, method="a", regions=["row0_col0"])
    assert set(sub.data[0].x) == {"row0_col0"}


def test_region_boxplot_leaves_out_nan_and_says_so(scored):
    scores, _ = scored
    holes = scores.copy()
    holes.loc[holes.index[:3], "mass_frac"] = np.nan
    fig = region_boxplot(holes)
    drawn = sum(len(t.y) for t in fig.data if t.type == "box")
    assert drawn == len(holes) - 3 and "3 NaN scores not drawn" in fig.layout.title.text
    # strict JSON in widgets
    assert not any(np.isnan(np.asarray(t.y, float)).any() for t in fig.data if t.type == "box")
    with pytest.raises(ArgumentError, match="every 'mass_frac' score is NaN"):
        region_boxplot(holes.assign(mass_frac=np.nan))


def test_effect_heatmap_and_forest(scored):
    _, tests = scored
    heat = effect_heatmap(tests)
    z = np.array(heat.data[0].z, dtype=float)
    assert z.shape == (2, 6) and heat.data[0].zmid == 0
    row = tests[(tests.method == "a") & (tests.region == "row0_col0")].iloc[0]
    assert z[0, list(heat.data[0].x).index("row0_col0")] == pytest.approx(row.effect_size)
    assert heat.data[0].text[0][0].endswith(significance_mark(row.p_adj))
    forest = forest_plot(tests)
    assert len(forest.data[0].x) == len(tests)
    assert list(forest.data[0].marker.symbol).count("circle") == int(tests["significant"].sum())
    assert "a · row0_col0 · 0 vs 1" in list(forest.data[0].y)


def test_region_explorer_redraws_on_pick(scored):
    pytest.importorskip("anywidget")
    from xaikit.widgets.regions import region_explorer

    scores, tests = scored
    box = region_explorer(scores, tests)
    (method, value), regions, fig = box.children[0].children, box.children[1], box.children[2]
    value.value = "density_ratio"
    assert fig.layout.yaxis.title.text == "density_ratio"
    regions.value = ("row1_col2",)
    assert set(fig.data[0].x) == {"row1_col2"}
    method.value = "b"
    assert "(b)" in fig.layout.title.text


def test_forest_labels_skip_empty_fields():
    import numpy as np
    import pandas as pd

    from xaikit.viz.stats import forest_plot

    tests = pd.DataFrame({"model": ["clean", np.nan], "method": ["gradient", "ig"], "region": ["marker", ""],
                          "group_a": ["", "clean"], "group_b": ["", "shortcut"], "effect_size": [0.3, -1.0],
                          "ci_low": [0.0, -1.0], "ci_high": [0.5, -1.0], "p_raw": [0.1, 0.01],
                          "p_adj": [0.2, 0.02], "significant": [False, True], "effect_name": ["rb", "rb"]})
    fig = forest_plot(tests, label=("model", "method", "region", "group_a", "group_b"))
    assert list(fig.data[0].y) == ["clean · gradient · marker", "ig · clean vs shortcut"]
