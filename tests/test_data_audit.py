"""audit(): confounds by class with effect sizes, duplicates, patient leaks — and no patient id in the table."""
from __future__ import annotations

import importlib
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from xaikit.data import AUDIT_COLUMNS, FEATURES, ManifestDataset, audit, image_features, write_manifest
from xaikit.errors import ArgumentError, ManifestError
from xaikit.samples import sample_dir
from xaikit.viz.audit import audit_figures


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture
def confounded(tmp_path, rng) -> pd.DataFrame:
    """Pneumonia images are larger (96 px vs 64 px): a size confound. One normal image is copied into the
    test split, and patient SECRET-42 has images in train and test."""
    rows = []
    for i in range(24):
        label = "pneumonia" if i % 2 else "normal"
        side = 96 if label == "pneumonia" else 64
        path = _png(tmp_path / "img" / f"i{i:02d}.png", rng.integers(0, 256, (side, side)))
        rows.append({"image_path": path, "label": label, "split": "test" if i >= 18 else "train",
                     "patient_id": f"SECRET-{i}", "image_id": f"i{i:02d}"})
    copy = tmp_path / "img" / "copy.png"
    shutil.copy(rows[0]["image_path"], copy)
    rows.append({**rows[0], "image_path": str(copy), "split": "test", "image_id": "copy"})
    rows[19]["patient_id"] = rows[1]["patient_id"] = "SECRET-42"
    return pd.DataFrame(rows)


def _flags(table: pd.DataFrame) -> set[tuple[str, str]]:
    return set(map(tuple, table.loc[table["flag"], ["check", "feature"]].to_numpy()))


def test_audit_flags_size_confound_duplicates_and_leaks(confounded):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = audit(confounded, progress=False)
    assert list(table.columns) == AUDIT_COLUMNS
    flagged = _flags(table)
    assert {("feature_by_class", "height"), ("feature_by_class", "width"), ("feature_by_class", "file_kb"),
            ("duplicate_images", "pixels"), ("duplicates_across_splits", "pixels"),
            ("patients_across_splits", "patient_id")} <= flagged
    assert ("feature_by_class", "aspect_ratio") not in flagged  # square in both classes: constant, untested
    assert len([w for w in caught if "audit:" in str(w.message)]) == int(table["flag"].sum())
    height = table.set_index("feature").loc["height"]
    assert height["effect_size"] == pytest.approx(-1.0)  # every normal (group_a) is smaller than every pneumonia
    assert "copy = i00" in table.set_index("check").at["duplicate_images", "detail"]
    assert not table.astype(str).apply(lambda col: col.str.contains("SECRET")).any().any()  # privacy


def test_audit_statistics_match_scipy(confounded):
    feats = image_features(confounded, progress=False)
    table = audit(None, features=feats).set_index("feature")
    a = feats.loc[feats["label"] == "normal", "intensity_mean"].to_numpy()
    b = feats.loc[feats["label"] == "pneumonia", "intensity_mean"].to_numpy()
    u, p = stats.mannwhitneyu(a, b, alternative="two-sided")
    row = table.loc["intensity_mean"]
    assert row["statistic"] == pytest.approx(u) and row["p_raw"] == pytest.approx(p)
    assert row["effect_size"] == pytest.approx(2 * u / (len(a) * len(b)) - 1)
    assert row["p_adj"] >= row["p_raw"]
    assert set(FEATURES) <= set(feats.columns)


def test_shipped_sample_set_is_clean():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean set raises no audit warning
        dataset = ManifestDataset(sample_dir() / "manifest.csv")
        table = audit(dataset, progress=False)
    assert not table["flag"].any(), table.loc[table["flag"], "detail"].tolist()
    assert table.set_index("check").at["patients_across_splits", "n_a"] == 0
    figs = audit_figures(table)  # the table carries the per-image features: no image is read again
    assert set(figs) == {"class_balance", "effects", "features"}
    assert sum(t.y.sum() for t in figs["class_balance"].data) == 320
    tested = table[(table["check"] == "feature_by_class") & table["effect_size"].notna()]
    assert len(figs["effects"].data[0].x) == len(tested)


def test_image_features_from_csv_and_dataset_agree(tmp_path, confounded):
    write_manifest(confounded, tmp_path / "m.csv")
    from_csv = image_features(tmp_path / "m.csv", progress=False).sort_values("image_id").reset_index(drop=True)
    from_table = image_features(confounded, progress=False).sort_values("image_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(from_csv[list(FEATURES)], from_table[list(FEATURES)])


def test_audit_multiclass_uses_kruskal(tmp_path, rng):
    rows = [{"image_path": _png(tmp_path / f"{i}.png", rng.integers(0, 60 * (i % 3 + 1), (32, 32))),
             "label": "abc"[i % 3]} for i in range(18)]
    table = audit(pd.DataFrame(rows), progress=False).set_index("feature")
    assert table.at["intensity_mean", "effect_name"] == "epsilon_squared"
    assert table.at["intensity_mean", "flag"]


def test_audit_bad_input(tmp_path, confounded):
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['label'\]"):
        audit(confounded.drop(columns="label"), progress=False)
    missing = confounded.assign(image_path=confounded["image_path"].where(confounded.index != 3, "gone.png"))
    with pytest.raises(ManifestError, match="1 image file\\(s\\) not found.*gone.png"):
        audit(missing, progress=False)
    with pytest.raises(ValueError, match="alpha"):
        audit(confounded, alpha=2, progress=False)


def test_figures_draw_from_the_table_and_never_read_images(confounded, monkeypatch):
    table = audit(confounded, progress=False)
    feats = table.features
    assert table[table["flag"]].features is feats and table.set_index("check").features is feats
    assert "patient_id" not in feats and not feats.astype(str).apply(lambda c: c.str.contains("SECRET")).any().any()

    def no_reading(*_args, **_kwargs):
        raise AssertionError("viz read an image")

    monkeypatch.setattr(importlib.import_module("xaikit.data.audit"), "read_image", no_reading)
    figs = audit_figures(table)
    assert sum(t.y.sum() for t in figs["class_balance"].data) == len(confounded)
    again = audit_figures(table, features=table.features)
    assert again["class_balance"].to_json() == figs["class_balance"].to_json()
    with pytest.raises(ArgumentError, match=r"features= must be the table of xaikit.data.image_features"):
        audit_figures(table, features=confounded)
    with pytest.raises(ArgumentError, match=r"carries no per-image features"):
        audit_figures(pd.DataFrame(table))  # a plain DataFrame of the rows
