"""Loaders for downloaded layouts (Kermany class folders, RSNA DICOM + boxes, MedMNIST .npz) on tiny fixtures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xaikit.data import ManifestDataset, from_class_folders, from_medmnist, from_rsna, kermany_patient
from xaikit.errors import ManifestError, XaikitError
from xaikit.io import MedicalImage, read_image, write_dicom

REAL_CXR = Path(__file__).resolve().parents[2] / "shared" / "real_cxr"


def _jpeg(path: Path, value: int, size: tuple[int, int] = (40, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path, format="JPEG", quality=95)


@pytest.fixture
def kermany(tmp_path) -> Path:
    """chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}: Kermany's names; person3 has two images in train."""
    root = tmp_path / "chest_xray"
    files = {
        "train/NORMAL": ["IM-0001-0001.jpeg", "NORMAL2-IM-0002-0001.jpeg"],
        "train/PNEUMONIA": ["person3_bacteria_10.jpeg", "person3_virus_11.jpeg"],
        "val/NORMAL": ["IM-0004-0001.jpeg"], "val/PNEUMONIA": ["person5_virus_12.jpeg"],
        "test/NORMAL": ["IM-0006-0001.jpeg"], "test/PNEUMONIA": ["person7_bacteria_13.jpeg"],
    }
    for i, (folder, names) in enumerate(files.items()):
        for name in names:
            _jpeg(root / folder / name, 40 * i)
    (root / "train" / "NORMAL" / ".DS_Store").write_bytes(b"junk")  # hidden files are not images
    return root


def test_kermany_patient_keys():
    assert kermany_patient("person1609_virus_2791") == "person1609"
    assert kermany_patient("IM-0115-0001") == "IM-0115"
    assert kermany_patient("NORMAL2-IM-1427-0001") == "NORMAL2-IM-1427"
    assert kermany_patient("scan_42") is None


def test_class_folders_with_splits_round_trip_through_a_manifest(kermany, tmp_path):
    table = from_class_folders(kermany, csv_path=tmp_path / "kermany.csv")
    assert len(table) == 8
    assert table.groupby("split").size().to_dict() == {"test": 2, "train": 4, "val": 2}
    assert set(table["label"]) == {"NORMAL", "PNEUMONIA"}
    two = table[table["patient_id"] == "person3"]
    assert len(two) == 2 and set(two["split"]) == {"train"}
    assert table["image_id"].is_unique and "train/NORMAL/IM-0001-0001" in set(table["image_id"])
    ds = ManifestDataset(tmp_path / "kermany.csv", split="train")
    assert ds.classes == ["NORMAL", "PNEUMONIA"] and len(ds) == 4
    assert sorted(ds.patient_ids) == ["IM-0001", "NORMAL2-IM-0002", "person3", "person3"]
    sample = ds[0]
    assert sample["image"].shape == (1, 40, 32)


def test_class_folders_without_splits(tmp_path):
    for label, value in (("NORMAL", 10), ("PNEUMONIA", 200)):
        for k in range(2):
            _jpeg(tmp_path / "flat" / label / f"img{k}.png", value)
    table = from_class_folders(tmp_path / "flat", patient_id=None)
    assert (table["split"] == "").all() and len(table) == 4
    assert (table["patient_id"] == table["image_id"]).all()


def test_class_folders_bad_input(tmp_path):
    with pytest.raises(ManifestError, match="not a folder"):
        from_class_folders(tmp_path / "nowhere")
    (tmp_path / "empty" / "NORMAL").mkdir(parents=True)
    with pytest.warns(UserWarning, match="no images"), pytest.raises(ManifestError, match="no images found"):
        from_class_folders(tmp_path / "empty")


@pytest.mark.skipif(not REAL_CXR.is_dir(), reason="../shared/real_cxr not present")
def test_class_folders_on_the_real_kermany_subset():
    table = from_class_folders(REAL_CXR)
    assert table.groupby("label").size().to_dict() == {"NORMAL": 20, "PNEUMONIA": 20}
    assert table["patient_id"].nunique() < len(table)  # some patient has two images: grouped, not split apart


# ---------------------------------------------------------------------- RSNA
@pytest.fixture
def rsna(tmp_path) -> tuple[Path, Path]:
    images = tmp_path / "stage_2_train_images"
    for k, pid in enumerate(["aaa-1", "bbb-2", "ccc-3"]):
        write_dicom(MedicalImage(np.full((64, 80), 100.0 * k), window=(100, 400)), images / f"{pid}.dcm",
                    uid_seed=pid, modality="CR")
    labels = pd.DataFrame({
        "patientId": ["aaa-1", "bbb-2", "bbb-2", "ccc-3"],
        "x": [np.nan, 10.0, 50.0, np.nan], "y": [np.nan, 5.0, 40.0, np.nan],
        "width": [np.nan, 20.0, 100.0, np.nan], "height": [np.nan, 10.0, 100.0, np.nan],
        "Target": [0, 1, 1, 0],
    })
    csv = tmp_path / "stage_2_train_labels.csv"
    labels.to_csv(csv, index=False)
    return images, csv


def test_rsna_boxes_become_lesion_masks(rsna, tmp_path):
    images, csv = rsna
    table = from_rsna(images, csv, tmp_path / "masks", csv_path=tmp_path / "rsna.csv")
    assert table.set_index("patient_id")["label"].to_dict() == {"aaa-1": "normal", "bbb-2": "pneumonia",
                                                                 "ccc-3": "normal"}
    assert table.set_index("patient_id")["n_boxes"].to_dict() == {"aaa-1": 0, "bbb-2": 2, "ccc-3": 0}
    ds = ManifestDataset(tmp_path / "rsna.csv")
    by_id = {ds[i]["id"]: ds[i] for i in range(len(ds))}
    lesion = by_id["bbb-2"]["masks"]["lesion"].numpy()
    expected = np.zeros((64, 80), bool)
    expected[5:15, 10:30] = True
    expected[40:64, 50:80] = True  # the second box runs off the image: clipped
    np.testing.assert_array_equal(lesion, expected)
    assert not by_id["aaa-1"]["masks"]["lesion"].any()


def test_rsna_reports_every_bad_row_or_skips_exactly_them(rsna, tmp_path):
    images, csv = rsna
    labels = pd.read_csv(csv)
    extra = pd.DataFrame({"patientId": ["ddd-4", "eee-5"], "x": [np.nan, 1.0], "y": [np.nan, 1.0],
                          "width": [np.nan, -3.0], "height": [np.nan, 4.0], "Target": [0, 1]})
    pd.concat([labels, extra]).to_csv(csv, index=False)
    (images / "eee-5.dcm").write_bytes((images / "aaa-1.dcm").read_bytes())
    with pytest.raises(ManifestError) as info:
        from_rsna(images, csv, tmp_path / "masks")
    message = str(info.value)
    assert "line 6, patientId=ddd-4: no DICOM" in message and "line 7, patientId=eee-5" in message
    with pytest.warns(UserWarning, match="skipped 2 patient"):
        table = from_rsna(images, csv, tmp_path / "masks", on_error="skip")
    assert sorted(table["patient_id"]) == ["aaa-1", "bbb-2", "ccc-3"]


def test_rsna_missing_columns(tmp_path):
    (tmp_path / "imgs").mkdir()
    pd.DataFrame({"patientId": ["a"], "Target": [0]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['x', 'y', 'width', 'height'\]"):
        from_rsna(tmp_path / "imgs", tmp_path / "labels.csv", tmp_path / "m")


# ---------------------------------------------------------------------- MedMNIST
def _medmnist(path: Path, rng, *, shape=(28, 28)) -> dict[str, np.ndarray]:
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2)[:, None]
    np.savez(path, **arrays)
    return arrays


def test_medmnist_images_are_written_losslessly(tmp_path, rng):
    arrays = _medmnist(tmp_path / "pneumoniamnist.npz", rng)
    table = from_medmnist(tmp_path / "pneumoniamnist.npz", tmp_path / "out", classes=["normal", "pneumonia"],
                          csv_path=tmp_path / "out" / "manifest.csv")
    assert table.groupby("split").size().to_dict() == {"test": 3, "train": 6, "val": 2}
    row = table[table["image_id"] == "val_00001"].iloc[0]
    assert row["label"] == "pneumonia"
    np.testing.assert_array_equal(read_image(row["image_path"]).array, arrays["val_images"][1])
    ds = ManifestDataset(tmp_path / "out" / "manifest.csv", split="train")
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_medmnist_3d_volumes_as_npy(tmp_path, rng):
    arrays = _medmnist(tmp_path / "organmnist3d.npz", rng, shape=(8, 8, 8))
    table = from_medmnist(tmp_path / "organmnist3d.npz", tmp_path / "out")
    first = table.iloc[0]
    assert first["image_path"].endswith(".npy")
    np.testing.assert_array_equal(read_image(first["image_path"]).array, arrays["train_images"][0])


def test_medmnist_bad_input(tmp_path, rng):
    with pytest.raises(ManifestError, match="not found"):
        from_medmnist(tmp_path / "none.npz", tmp_path)
    _medmnist(tmp_path / "chestmnist.npz", rng)
    multi = dict(np.load(tmp_path / "chestmnist.npz"))
    multi["train_labels"] = np.zeros((6, 14), dtype=np.int64)
    np.savez(tmp_path / "multi.npz", **multi)
    with pytest.raises(ManifestError, match="multi-label"):
        from_medmnist(tmp_path / "multi.npz", tmp_path / "o")
    with pytest.raises(ManifestError,
                       match=r"arrays \['val_images', 'val_labels', 'test_images', 'test_labels'\] are missing"):
        np.savez(tmp_path / "partial.npz", train_images=multi["train_images"], train_labels=multi["val_labels"])
        from_medmnist(tmp_path / "partial.npz", tmp_path / "o")
    with pytest.raises(XaikitError, match="has no name"):
        from_medmnist(tmp_path / "chestmnist.npz", tmp_path / "o", classes=["only_one"])
