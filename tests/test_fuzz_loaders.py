"""Fuzz the dataset loaders and writers: hostile RSNA label CSVs, MedMNIST archives and arrays handed to writers.

Each case must give a manifest table (every listed file exists, labels from the loader's classes) or an
XaikitError naming the input, under fuzz_helpers' time and memory cap.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xaikit.data import from_medmnist, from_rsna
from xaikit.io import MedicalImage, write_dicom, write_nifti, write_png

from fuzz_helpers import Tally, assert_clean, run_case

_RSNA_CELLS = {
    "patientId": ["aaa-1", "bbb-2", "", "nope", "../../etc/passwd", "a,b", "ü"],
    "x": ["", "10", "-5", "abc", "nan", "inf", "1e30", "10.5"],
    "y": ["", "5", "-5", "x", "nan", "1e30"],
    "width": ["", "20", "0", "-3", "inf", "w"],
    "height": ["", "10", "0", "-1", "1e30", "h"],
    "Target": ["0", "1", "2", "", "-1", "yes", "1.0", "0.5"],
}


@pytest.fixture(scope="module")
def rsna_images(tmp_path_factory) -> Path:
    images = tmp_path_factory.mktemp("rsna") / "images"
    for k, pid in enumerate(["aaa-1", "bbb-2"]):
        write_dicom(MedicalImage(np.full((16, 20), 100.0 * k), window=(100, 400)), images / f"{pid}.dcm",
                    uid_seed=pid, modality="CR")
    return images


def _rsna_csv(rng: np.random.Generator) -> bytes:
    columns = list(_RSNA_CELLS) if rng.random() < 0.85 else list(rng.choice(list(_RSNA_CELLS), 4, replace=False))
    rows = [[rng.choice(_RSNA_CELLS[c][:2]) if rng.random() < 0.6 else rng.choice(_RSNA_CELLS[c]) for c in columns]
            for _ in range(int(rng.integers(0, 5)))]
    text = pd.DataFrame(rows, columns=columns).to_csv(index=False)
    if rng.random() < 0.1:
        return text.encode("utf-16")
    return text.encode()


def test_hostile_rsna_label_files(rsna_images, tmp_path):
    rng = np.random.default_rng(5)
    tally = Tally()

    def usable(table: pd.DataFrame) -> None:
        assert set(table["label"]) <= {"normal", "pneumonia"}
        assert all(Path(p).is_file() for p in table["image_path"])
        assert all(Path(p).is_file() for p in table["mask_lesion"] if p)

    for k in range(60):
        csv = tmp_path / f"labels{k}.csv"
        csv.write_bytes(_rsna_csv(rng))
        on_error = "skip" if k % 2 else "raise"
        run_case(tally, csv.name, lambda: from_rsna(rsna_images, csv, tmp_path / "masks", on_error=on_error),
                 usable, names=str(csv))
    assert_clean(tally)


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _medmnist_cases() -> dict[str, bytes]:
    img, lab = np.zeros((3, 8, 8), np.uint8), np.array([[0], [1], [0]])
    good = {"train_images": img, "train_labels": lab}
    cases = {
        "good": _npz(good), "float_labels": _npz({**good, "train_labels": lab.astype(float)}),
        "neg_labels": _npz({**good, "train_labels": -lab}),
        "multi": _npz({**good, "train_labels": np.ones((3, 4), int)}),
        "length": _npz({**good, "train_labels": np.array([0, 1])}), "no_labels": _npz({"train_images": img}),
        "empty": _npz({"train_images": img[:0], "train_labels": lab[:0]}),
        "1d_images": _npz({"train_images": np.zeros(3, np.uint8), "train_labels": lab}),
        "5d_images": _npz({"train_images": np.zeros((3, 1, 2, 4, 4), np.uint8), "train_labels": lab}),
        "nan_images": _npz({"train_images": np.full((3, 8, 8), np.nan), "train_labels": lab}),
        "huge_label": _npz({**good, "train_labels": np.array([[0], [10**12], [0]])}),
        "str_labels": _npz({**good, "train_labels": np.array(["a", "b", "c"])}),
        "object": b"PK\x03\x04" + b"\x00" * 40, "not_zip": b"hello world" * 10,
    }
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("train_images.npy", b"\x93NUMPY garbage")
        zf.writestr("train_labels.npy", b"\x93NUMPY garbage")
    cases["bad_members"] = raw.getvalue()
    cases["truncated"] = _npz(good)[:200]
    return cases


@pytest.mark.parametrize("label", sorted(_medmnist_cases()))
def test_hostile_medmnist_archives(tmp_path, label):
    path = tmp_path / f"{label}.npz"
    path.write_bytes(_medmnist_cases()[label])
    tally = Tally()

    def usable(table: pd.DataFrame) -> None:
        assert len(table) == 3 and all(Path(p).is_file() for p in table["image_path"])

    run_case(tally, label, lambda: from_medmnist(path, tmp_path / "out", splits=("train",)), usable, names=str(path))
    assert_clean(tally)


WRITES = [
    ("png 3d", lambda d: write_png(np.zeros((2, 4, 4)), d / "a.png"), "2D"),
    ("png nan", lambda d: write_png(np.full((4, 4), np.nan), d / "b.png"), "NaN"),
    ("png bits", lambda d: write_png(np.zeros((4, 4)), d / "c.png", bits=12), "bits"),
    ("png window", lambda d: write_png(np.zeros((4, 4)), d / "d.png", window=(0, 0)), "window"),
    ("png string", lambda d: write_png("not an image", d / "e.png"), None),
    ("png into a file", lambda d: write_png(np.zeros((4, 4)), d / "file.txt" / "x.png"), "x.png"),
    ("nifti suffix", lambda d: write_nifti(np.zeros((2, 4, 4)), d / "a.nii.zip"), ".nii"),
    ("nifti affine", lambda d: write_nifti(np.zeros((2, 4, 4)), d / "a.nii", affine=np.eye(3)), "affine"),
    ("nifti 4d", lambda d: write_nifti(np.zeros((2, 2, 4, 4)), d / "b.nii"), None),
    ("nifti nan", lambda d: write_nifti(np.full((2, 4, 4), np.nan), d / "c.nii"), None),
    ("dicom 4d", lambda d: write_dicom(np.zeros((2, 2, 4, 4)), d / "a.dcm"), None),
    ("dicom nan", lambda d: write_dicom(np.full((4, 4), np.nan), d / "b.dcm"), "NaN"),
]


@pytest.mark.parametrize("what,call,names", WRITES, ids=[w for w, _, _ in WRITES])
def test_writers_with_bad_input(tmp_path, what, call, names):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    tally = Tally()
    run_case(tally, what, lambda: call(tmp_path), lambda out: Path(out).is_file(), names=names)
    assert_clean(tally)
    if names == "NaN":
        assert tally.outcomes["ok"] == 0, "a NaN image was written as if it were fine"
