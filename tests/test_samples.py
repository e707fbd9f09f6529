"""The shipped sample data are rebuilt bit for bit by the kit's own code."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from xaikit.data import ManifestDataset
from xaikit.samples import SAMPLES, build_dicom, build_nifti, build_phantom_images, sample_dir

SHIPPED = sample_dir()
pytestmark = pytest.mark.skipif(not (SHIPPED / "manifest.csv").is_file(), reason="data_samples/ not built")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _compare(built: list[Path], out: Path) -> None:
    assert built, "nothing was built"
    for path in built:
        rel = path.relative_to(out)
        shipped = SHIPPED / rel
        assert shipped.is_file(), f"{rel} is built but not shipped: run `python -m xaikit samples`"
        assert _digest(path) == _digest(shipped), f"{rel} differs from the shipped file: rebuild data_samples/"


def test_phantom_images_rebuild_bit_for_bit(tmp_path):
    build_phantom_images(tmp_path, SAMPLES)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 1 + SAMPLES.n_images * 7  # manifest + image + 6 masks each
    _compare(files, tmp_path)


def test_dicom_and_nifti_rebuild_bit_for_bit(tmp_path):
    _compare(build_dicom(tmp_path) + build_nifti(tmp_path), tmp_path)


def test_shipped_manifest_is_valid_and_split_by_patient():
    ds = ManifestDataset(SHIPPED / "manifest.csv")
    assert len(ds) == SAMPLES.n_images and ds.skipped.empty
    assert ds.classes == ["normal", "pneumonia"]
    per_patient = ds.table.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all(), "a patient appears in two splits"
    assert set(ds.table["split"]) == {"train", "val", "test"}
    sizes = {p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()}
    assert sum(sizes) < 20e6


def test_sample_checkpoints_hold_no_wall_clock_times():
    """Training is seeded and deterministic (tests/test_train.py); with no timings in the summary, a rebuild by
    ``python -m xaikit samples`` writes byte-identical checkpoints."""
    from xaikit.checkpoint import load_checkpoint
    from xaikit.samples import MODELS, _without_timings

    raw = {"seconds": 9.5, "best_epoch": 3, "best_epoch_metrics": {"train_seconds": 1.0, "val_roc_auc": 0.9}}
    assert _without_timings(raw) == {"best_epoch": 3, "best_epoch_metrics": {"val_roc_auc": 0.9}}
    for name in MODELS.values():
        path = SHIPPED / "models" / name
        if not path.is_file():
            pytest.skip(f"{name} not built (python -m xaikit samples)")
        summary = load_checkpoint(path).summary
        assert _without_timings(summary) == summary, f"{name}: its summary records wall-clock times"
