"""Region figures: overlays and score maps draw what they should."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaikit.errors import ArgumentError
from xaikit.regions import grid, region_scores
from xaikit.stats import compare_groups
from xaikit.viz.regions import region_gallery, region_overlay, region_value_map, static_region_explorer


def test_region_overlay_one_trace_per_region(rng):
    image, regions = rng.random((12, 9)), grid(1, 3, (12, 9))
    fig = region_overlay(image, regions.expand(2), index=1)
    assert [t.name for t in fig.data if t.type == "heatmap"] == ["image", "col0", "col1", "col2"]
    assert [t.name for t in fig.data if t.showlegend] == ["col0", "col1", "col2"]  # swatches in the legend
    np.testing.assert_array_equal(np.asarray(fig.data[2].z).astype(bool), regions["col1"])
    assert fig.data[2].colorscale[0][1] == "rgba(0,0,0,0)"  # outside the region is transparent, not NaN
    with pytest.raises(ArgumentError, match="share a plane"):
        region_overlay(rng.random((5, 5)), regions)


def test_region_value_map_paints_scores(rng):
    maps = rng.random((2, 12, 9))
    regions = grid(1, 3, (12, 9))
    scores = region_scores(maps, regions, image_ids=["x", "y"], method="m")
    fig = region_value_map(maps[1], regions, scores, value="mass_frac", image_id="y")
    z = np.array(fig.data[1].z, float)
    want = scores[(scores.image_id == "y") & (scores.region == "col2")]["mass_frac"].iloc[0]
    assert np.allclose(z[regions["col2"]], want)
    twice = scores.assign(method="n")
    with pytest.raises(ArgumentError, match="method="):
        region_value_map(maps[0], regions, pd.concat([scores, twice]), image_id="x")


def test_region_gallery_panels_follow_their_own_masks(rng):
    images = rng.random((3, 10, 8))
    per_image = grid(2, 1, (10, 8)).expand(3)
    fig = region_gallery(images, per_image, titles=["a", "b", "c"], ncols=2)
    assert len(fig.data) == 3 * 3 + 2  # image + two regions per panel, and one legend swatch per region
    # one legend entry per region: a swatch in the region's own colour (a heatmap's legend item is not)
    assert [t.showlegend for t in fig.data if t.name == "row0"] == [False, True, False, False]
    swatch, heat = next(t for t in fig.data if t.name == "row0" and t.showlegend), fig.data[1]
    assert swatch.marker.color == heat.colorscale[1][1] and swatch.legendgroup == heat.legendgroup
    assert "patient's left" in fig.layout.legend.title.text
    np.testing.assert_array_equal(np.asarray(fig.data[6].z).astype(bool), per_image.as_dict(1)["row0"])
    assert [a.text for a in fig.layout.annotations] == ["a", "b", "c"]
    with pytest.raises(ArgumentError, match="2 region sets for 3 images"):
        region_gallery(images, [grid(1, 2, (10, 8))] * 2)
    with pytest.raises(ArgumentError, match="RegionSet.apply"):
        region_gallery(images, grid(1, 2, (9, 8)))


def test_region_explorer_figure_switches_methods(rng):
    maps = rng.random((8, 6, 6))
    labels = [0, 1] * 4
    a = region_scores(maps, grid(1, 2, (6, 6)), labels=labels, method="saliency")
    b = region_scores(maps ** 3, grid(1, 2, (6, 6)), labels=labels, method="ig")
    scores = pd.concat([a, b], ignore_index=True)
    fig = static_region_explorer(scores, tests=compare_groups(scores, value="mass_frac", n_boot=50))
    menu = fig.layout.updatemenus[0]
    assert [btn.label for btn in menu.buttons] == ["ig", "saliency"]
    n = len(fig.data)
    for k, btn in enumerate(menu.buttons):
        visible = btn.args[0]["visible"]
        assert len(visible) == n and sum(visible) == n // 2  # each button shows exactly its method's traces
        assert visible[:n // 2] == [k == 0] * (n // 2)
    with pytest.raises(ArgumentError, match="empty"):
        static_region_explorer(scores.iloc[:0])
