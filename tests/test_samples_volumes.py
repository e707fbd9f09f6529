"""The volume part of the sample data: the DICOM series rebuilds bit for bit; the 3D sample model is what its
summary says (test metrics with CIs, VolumePreprocess, no wall-clock times) and beats chance on its test split;
the shipped NIfTI volume and DICOM series lie inside its training domain, and the model looks at their lesion."""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch

from xaikit.samples import (
    DICOM_SERIES,
    SAMPLE_VOLUME_SEEDS,
    VOLUME_MODEL,
    VOLUMES,
    build_dicom_series,
    draw_sample_volume,
    sample_dir,
    volume_datasets,
)

SHIPPED = sample_dir()


def test_dicom_series_rebuilds_bit_for_bit_and_reads_as_a_volume(tmp_path):
    from xaikit.io import read_volume

    built = build_dicom_series(tmp_path)
    if not (SHIPPED / "dicom" / DICOM_SERIES).is_dir():
        pytest.skip("data_samples/dicom/ct_series not built (python -m xaikit samples)")
    for path in built:
        shipped = SHIPPED / path.relative_to(tmp_path)
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(shipped.read_bytes()).digest(), shipped
    vol = read_volume(SHIPPED / "dicom" / DICOM_SERIES)
    assert vol.shape == VOLUMES.shape and vol.modality == "CT" and "PatientID" not in vol.meta
    assert np.allclose(vol.spacing, (7.5, 8.0, 10.0))  # the training volumes' grid (VOLUMES.shape over the FOV)
    drawn = draw_sample_volume(SAMPLE_VOLUME_SEEDS["dicom_series"])
    assert np.allclose(vol.array, drawn.image, atol=0.02)  # read back as drawn: the phantom's layout is read_volume's


def test_volume_splits_are_patient_disjoint():
    splits = volume_datasets()
    patients = [set(splits[k].patient_ids) for k in ("train", "val", "test")]
    assert not (patients[0] & patients[1]) and not (patients[0] & patients[2]) and not (patients[1] & patients[2])
    assert sum(len(s) for s in splits.values()) == VOLUMES.n_volumes


def test_shipped_3d_model_summary():
    from xaikit.checkpoint import load_checkpoint
    from xaikit.data import VolumePreprocess
    from xaikit.samples import _without_timings

    path = SHIPPED / "models" / VOLUME_MODEL
    if not path.is_file():
        pytest.skip("3D sample model not built (python -m xaikit samples)")
    ckpt = load_checkpoint(path)
    assert ckpt.arch == "small_cnn3d" and isinstance(ckpt.preprocess, VolumePreprocess)
    assert _without_timings(ckpt.summary) == ckpt.summary
    auc, lo, hi = ckpt.summary["test_metrics"]["roc_auc"]
    assert lo <= auc <= hi and lo > 0.5, "the 3D sample model should beat chance on its test split"
    assert path.stat().st_size < 200_000


def _shipped_3d():
    from xaikit.checkpoint import load_checkpoint
    from xaikit.io import read_volume

    path = SHIPPED / "models" / VOLUME_MODEL
    if not path.is_file() or not (SHIPPED / "dicom" / DICOM_SERIES).is_dir():
        pytest.skip("3D sample model or DICOM series not built (python -m xaikit samples)")
    ckpt = load_checkpoint(path)
    volumes = [read_volume(SHIPPED / "nifti" / "volume.nii.gz"), read_volume(SHIPPED / "dicom" / DICOM_SERIES)]
    return ckpt, volumes


def test_shipped_volume_and_series_lie_in_the_3d_models_domain_and_others_still_warn():
    from xaikit.domain import OutOfDomainWarning, check_domain
    from xaikit.phantom import draw_volume
    from xaikit.saliency import explain

    ckpt, volumes = _shipped_3d()
    x = ckpt.prepare(volumes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        dist = check_domain(ckpt.model, x)
        explain(ckpt.model, x, "gradient", target=1)  # the entry point the notebook and the demo use: no warning
    assert dist.shape == (2,) and (dist < 1.0).all(), dist
    # the same phantom on the old sample grid (48 x 64 x 64: 5-6.25 mm voxels, small lesion) is another population
    old = ckpt.prepare([draw_volume(SAMPLE_VOLUME_SEEDS["nifti"], shape=(48, 64, 64)).as_image()])
    upside_down = x[:1].flip(2)  # the shipped volume with superior and inferior swapped
    for far in (old, upside_down):
        with pytest.warns(OutOfDomainWarning, match=r"explain: 1 of 1 input\(s\) are far .*phantom CT volumes"):
            explain(ckpt.model, far, "gradient", target=1)


def test_the_3d_model_finds_and_looks_at_the_shipped_lesions():
    """Both shipped volumes carry a lesion: the model calls them lesion at its own threshold, and Grad-CAM's
    positive relevance is denser inside the lesion than in the volume as a whole."""
    from xaikit.io import read_volume
    from xaikit.saliency import explain

    ckpt, volumes = _shipped_3d()
    x = ckpt.prepare(volumes)
    with torch.no_grad():
        prob = torch.softmax(ckpt.model.eval()(x), 1)[:, 1].numpy()
    assert (prob > ckpt.summary["decision_threshold"]).all(), prob
    labels = [read_volume(SHIPPED / "nifti" / "volume_labels.nii.gz").array.round().astype(int),
              draw_sample_volume(SAMPLE_VOLUME_SEEDS["dicom_series"]).labels]  # the series' phantom, same layout
    cam = explain(ckpt.model, x, "gradcam", target=1).maps.numpy()
    for k, (volume, lab) in enumerate(zip(volumes, labels)):
        lesion = ckpt.preprocess.geometry(volume).labels(lab) == 6
        positive = np.clip(cam[k], 0, None)
        density = positive[lesion].sum() / positive.sum() / lesion.mean()
        assert lesion.sum() > 50 and density > 2.5, (k, density)  # measured 3.2 and 3.3
