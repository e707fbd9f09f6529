"""The demo's segmentation stage (SMOKE mode) writes its tables and figures with real results."""
from __future__ import annotations

import pandas as pd
import pytest

from xaikit.demo import STAGES, run_demo
from xaikit.samples import MODELS, sample_dir

pytestmark = pytest.mark.skipif(not all((sample_dir() / "models" / MODELS[k]).is_file() for k in ("unet", "heart_box")),
                                reason="segmentation sample models not built (python -m xaikit samples)")


def test_segmentation_stage(tmp_path):
    assert "segmentation" in STAGES
    index = run_demo(tmp_path, smoke=True, stages=["segmentation"])
    page = index.read_text()
    assert "9. Segmentation and boxes" in page
    seg = pd.read_csv(tmp_path / "segmentation_metrics.csv").set_index(["class", "metric"])
    assert seg.loc[("heart", "dice"), "value"] > 0.9 and seg.loc[("lung", "dice"), "value"] > 0.9
    assert (seg["ci_low"] <= seg["value"]).all() and (seg["value"] <= seg["ci_high"]).all()
    boxes = pd.read_csv(tmp_path / "box_metrics.csv").set_index("metric")
    assert {"iou", "hit_rate_50", "map_50"} <= set(boxes.index)
    mass = pd.read_csv(tmp_path / "segmentation_region_mass.csv")
    assert set(mass["region"]) == {"left_lung", "right_lung", "heart", "outside"}
    for _, part in mass.groupby(["target", "method"]):  # mass fractions of a partition sum to 1
        assert part["mass_frac"].sum() == pytest.approx(1.0, abs=1e-6)
    heart = mass[mass["target"].str.startswith("heart")].set_index("region")["density_ratio"]
    assert heart.idxmax() == "heart" and heart["heart"] > 1  # heart logits: relevance densest on the heart
    assert "predicted and true heart boxes" in page and "right edge" in page  # the two overlay figures
