"""The volume part of the sample data: the DICOM series rebuilds bit for bit; the 3D sample model is what its
summary says (test metrics with CIs, VolumePreprocess, no wall-clock times) and beats chance on its test split."""
from __future__ import annotations

import hashlib

import pytest

from xaikit.samples import DICOM_SERIES, VOLUME_MODEL, VOLUMES, build_dicom_series, sample_dir, volume_datasets

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
    assert vol.shape == (24, 48, 48) and vol.modality == "CT" and "PatientID" not in vol.meta


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
