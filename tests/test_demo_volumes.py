"""The demo's volumes stage (SMOKE): section, tables, figures and NIfTI maps on the scan's grid."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from xaikit.demo import STAGES, run_demo
from xaikit.samples import VOLUME_MODEL, sample_dir

pytestmark = pytest.mark.skipif(not (sample_dir() / "models" / VOLUME_MODEL).is_file(),
                                reason="3D sample model not built (python -m xaikit samples)")


def test_volumes_stage_writes_its_section_and_maps(tmp_path):
    from xaikit.domain import OutOfDomainWarning
    from xaikit.io import read_volume

    assert "volumes" in STAGES
    with warnings.catch_warnings():  # the shipped volume lies inside the 3D model's training domain
        warnings.simplefilter("error", OutOfDomainWarning)
        index = run_demo(tmp_path, smoke=True, stages=["volumes"])
    page = index.read_text()
    assert "8. Volumes" in page and "volume_region_scores.csv" in page
    scores = pd.read_csv(tmp_path / "volume_region_scores.csv")
    assert set(scores["method"]) == {"gradient", "gradcam"} and (scores["volume_mm3"] > 0).all()
    metrics = pd.read_csv(tmp_path / "volume_model_metrics.csv").set_index("metric")
    assert metrics.loc["roc_auc", "ci_low"] <= metrics.loc["roc_auc", "value"] <= metrics.loc["roc_auc", "ci_high"]
    source = read_volume(sample_dir() / "nifti" / "volume.nii.gz")
    for name in ("volume_gradient.nii.gz", "volume_gradcam.nii.gz"):
        back = read_volume(tmp_path / name)
        assert back.shape == source.shape and np.allclose(back.affine, source.affine)
