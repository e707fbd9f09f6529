"""The shortcut lab on the shipped checkpoints: region statistics catch the model that reads the marker."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xaikit.errors import ArgumentError, DatasetError
from xaikit.phantom import draw_chest_set
from xaikit.phantom.dataset import PhantomDataset
from xaikit.samples import MODELS, SHORTCUT, sample_dir
from xaikit.shortcut import LAB_REGIONS, lab_dataset, lab_regions, load_lab_models, shortcut_lab

MODELS_DIR = sample_dir() / "models"
needs_models = pytest.mark.skipif(not all((MODELS_DIR / f).is_file() for f in MODELS.values()),
                                  reason="sample models not built (python -m xaikit samples)")


def test_phantom_dataset_matches_the_plan_and_caches():
    chest = draw_chest_set(6, seed=3, size=64, marker_rate_pos=1.0, marker_rate_neg=0.0)
    ds = PhantomDataset(chest)
    s = ds[1]
    assert s["id"] == chest.image_ids[1] and s["label"] == int(chest.labels[1])
    assert bool(s["masks"]["marker"].any()) == bool(chest.markers[1])
    assert s["image"].dtype == torch.float32 and tuple(s["image"].shape) == (1, 64, 64)
    # 8-bit quantization of the shipped PNGs: 256 levels at most
    assert len(np.unique(s["image"].numpy())) <= 256
    assert ds[1]["image"] is s["image"]  # cached, not redrawn
    sub = ds.subset([1, 3])
    assert sub.ids == [chest.image_ids[1], chest.image_ids[3]] and sub[0]["image"] is s["image"]
    with pytest.raises(ArgumentError, match="indices"):
        PhantomDataset(chest, indices=[7])


def test_lab_regions_split_the_lungs_by_lesion():
    ds = lab_dataset(3)
    samples = [ds[i] for i in range(len(ds))]
    regions = lab_regions(samples)
    assert regions.names == LAB_REGIONS and regions.n_images == 3
    for i, s in enumerate(samples):
        m = {k: v.numpy() for k, v in s["masks"].items()}
        lesion_lung, other = regions["lesion_lung"][i], regions["other_lung"][i]
        assert (m["lesion"] & ~lesion_lung).sum() == 0  # the lesion lies in its lung
        assert (not (lesion_lung & other).any()
                and (lesion_lung | other).sum() == (m["left_lung"] | m["right_lung"]).sum())
        assert regions["marker"][i].any() and s["label"] == 1
    with pytest.raises(DatasetError, match="marker"):
        lab_regions([{"id": "x", "masks": {"lesion": np.zeros((4, 4), bool)}}])


def test_shortcut_set_correlates_marker_with_label():
    from xaikit.samples import shortcut_datasets

    splits = shortcut_datasets()
    table = splits["train"].table
    rates = table.groupby("label")["marker"].mean()
    assert rates[1] > 0.8 and rates[0] < 0.15
    assert set(splits["train"].patient_ids).isdisjoint(splits["test"].patient_ids)
    assert SHORTCUT.marker_rate_pos == 0.9


@needs_models
def test_shortcut_checkpoint_records_its_test_metrics():
    from xaikit.checkpoint import load_checkpoint

    summary = load_checkpoint(MODELS_DIR / MODELS["shortcut"]).summary
    auc, lo, hi = summary["test_metrics"]["roc_auc"]
    assert lo <= auc <= hi and auc > 0.85
    assert summary["training_data"]["marker_rate_pos"] == SHORTCUT.marker_rate_pos


@pytest.fixture(scope="module")
def lab():
    return shortcut_lab(load_lab_models(), lab_dataset(16), methods={"gradient": {"method": "gradient"}},
                        n_boot=200, seed=0)


@needs_models
def test_shortcut_model_relevance_is_enriched_in_the_marker(lab):
    row = lab.summary("marker").set_index("model").loc["shortcut"]
    assert row["p_adj"] < 0.01 and row["significant"]
    assert row["density_ratio_gmean"] > 2.0 and row["effect_size"] > 0.5 and row["ci_low"] > 0
    assert (lab.tests["correction"] == "holm").all() and (lab.tests["family_size"] == len(lab.tests)).all()


@needs_models
def test_clean_model_ignores_the_marker_and_looks_at_the_lesion_lung(lab):
    row = lab.summary("marker").set_index("model").loc["clean"]
    # no enrichment: the two-sided test may find the marker *depleted* (less relevance than its area), never above
    assert row["density_ratio_gmean"] < 1.2 and not (row["significant"] and row["effect_size"] > 0)
    enr = lab.tests[(lab.tests["family"] == "region_enrichment") & (lab.tests["model"] == "clean")].set_index("region")
    assert enr.loc["lesion_lung", "significant"] and enr.loc["lesion_lung", "effect_size"] > 0
    lungs = lab.tests[(lab.tests["family"] == "compare_paired") & (lab.tests["model"] == "clean")]
    assert len(lungs) == 1 and lungs["group_a"].iloc[0] == "lesion_lung" and lungs["significant"].iloc[0]
    assert lungs["effect_size"].iloc[0] > 0
    clean = lab.scores.query("model == 'clean'").pivot(index="image_id", columns="region", values="mass_frac")
    assert (clean["lesion_lung"] > clean["other_lung"]).mean() > 0.75


@needs_models
def test_models_compared_on_the_same_images(lab):
    marker = lab.tests[(lab.tests["within"] == "model") & (lab.tests["region"] == "marker")].iloc[0]
    assert (marker["group_a"], marker["group_b"]) == ("clean", "shortcut")
    assert marker["effect_size"] < 0 and marker["significant"]  # the shortcut model holds more marker mass


@needs_models
def test_lab_figures(lab):
    fig = lab.plot_forest()
    assert len(fig.data[0].x) == len(lab.tests)
    heat = lab.plot_heatmap()
    assert list(heat.data[0].y) == ["clean", "shortcut"] and "marker" in list(heat.data[0].x)
    box = lab.plot_boxplot()
    assert box.layout.yaxis.type == "log"
