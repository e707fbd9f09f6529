"""Region figures: overlays and score maps draw what they should."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaikit.errors import ArgumentError
from xaikit.regions import grid, region_scores
from xaikit.viz.regions import region_overlay, region_value_map


def test_region_overlay_one_trace_per_region(rng):
    image, regions = rng.random((12, 9)), grid(1, 3, (12, 9))
    fig = region_overlay(image, regions.expand(2), index=1)
    assert [t.name for t in fig.data] == ["image", "col0", "col1", "col2"]
    np.testing.assert_array_equal(~np.isnan(np.array(fig.data[2].z, float)), regions["col1"])
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
