"""ManifestDataset: the sample contract, lazy reading, every bad row reported, explicit skipping, splits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from xaikit._util import sha256_file
from xaikit.data import ManifestDataset, Preprocess, patient_leaks, patient_split, read_manifest, write_manifest
from xaikit.data import manifest as manifest_module
from xaikit.errors import DatasetError, ManifestError, XaikitError
from xaikit.samples import sample_dir

SAMPLES = sample_dir()


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    """Four 16 x 20 images with lung masks, patients p0..p3, labels a/b."""
    for i in range(4):
        _png(tmp_path / "img" / f"{i}.png", np.full((16, 20), 50 * i))
        _png(tmp_path / "mask" / f"{i}.png", np.pad(np.full((4, 4), 255), ((2, 10), (3, 13))))
    return tmp_path


def _csv(folder: Path, rows: list[dict], name: str = "m.csv") -> Path:
    path = folder / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _rows(n: int = 4) -> list[dict]:
    return [{"image_path": f"img/{i}.png", "label": "ab"[i % 2], "split": "train" if i < 2 else "test",
             "patient_id": f"p{i}", "mask_lung": f"mask/{i}.png"} for i in range(n)]


def test_sample_contract_on_the_shipped_manifest():
    ds = ManifestDataset(SAMPLES / "manifest.csv", split="test", preprocess=Preprocess(size=64))
    sample = ds[0]
    assert set(sample) == {"image", "label", "id", "patient_id", "masks", "meta"}
    assert sample["image"].dtype == torch.float32 and tuple(sample["image"].shape) == (1, 64, 64)
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert set(sample["masks"]) == {"left_lung", "right_lung", "heart", "lesion", "marker", "body"}
    assert all(m.dtype == torch.bool and tuple(m.shape) == (64, 64) for m in sample["masks"].values())
    assert sample["id"] == ds.table.at[0, "id"] and sample["patient_id"].startswith("P")
    assert sample["meta"]["original_height"] == 224 and sample["meta"]["split"] == "test"
    batch = next(iter(DataLoader(ds, batch_size=4)))  # the sample dict collates as is
    assert tuple(batch["image"].shape) == (4, 1, 64, 64) and len(batch["id"]) == 4
    assert ds.classes == ["normal", "pneumonia"] and len(ds) == 52


def test_images_are_read_lazily(folder, monkeypatch):
    calls = []
    real = manifest_module.read_image
    monkeypatch.setattr(manifest_module, "read_image", lambda path, **kw: calls.append(path) or real(path, **kw))
    ds = ManifestDataset(_csv(folder, _rows()))
    assert calls == []
    ds[2]
    assert [Path(c).name for c in calls] == ["2.png", "2.png"]  # the image and its one mask


def test_paths_are_relative_to_the_csv_not_the_working_folder(folder, tmp_path_factory, monkeypatch):
    csv = _csv(folder, _rows())
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    ds = ManifestDataset(csv)
    np.testing.assert_array_equal(ds[3]["image"][0].numpy(), np.full((16, 20), 150.0))
    mask = ds[0]["masks"]["lung"].numpy()
    assert mask.sum() == 16 and mask[2:6, 3:7].all()


def test_every_bad_row_is_reported_at_once_and_nothing_is_changed(folder):
    rows = _rows()
    rows[0]["label"] = "zebra"
    rows[1]["image_path"] = "img/missing.png"
    rows[2]["mask_lung"] = "mask/gone.png"
    rows.append({**rows[3]})  # duplicate id
    rows.append({**rows[3], "image_path": "", "label": ""})
    csv = _csv(folder, rows)
    before = sha256_file(csv)
    with pytest.raises(ManifestError) as info:
        ManifestDataset(csv, classes=["a", "b"])
    message = str(info.value)
    assert "5 of 6 rows are bad" in message
    for needle in ("row 1 (line 2), label='zebra': unknown label", "row 2 (line 3), image_path='img/missing.png'",
                   "row 3 (line 4), mask_lung='mask/gone.png'", "row 5 (line 6), image_path='img/3'",
                   "row 6 (line 7), image_path='': empty path", "on_error='skip'"):
        assert needle in message, needle
    assert set(info.value.problems["row"]) == {1, 2, 3, 5, 6}
    assert sha256_file(csv) == before


def test_skip_reports_exactly_what_was_skipped(folder):
    rows = _rows()
    rows[1]["image_path"] = "img/missing.png"
    with pytest.warns(UserWarning, match="Skipped 1 of 4 manifest rows"):
        ds = ManifestDataset(_csv(folder, rows), on_error="skip")
    assert len(ds) == 3 and ds.skipped[["row", "column"]].values.tolist() == [[2, "image_path"]]
    assert "skipped_rows=1" in repr(ds)
    bad = [{**r, "label": "zebra"} for r in _rows()]
    with pytest.raises(ManifestError, match="Every row is bad"):
        ManifestDataset(_csv(folder, bad, "all_bad.csv"), on_error="skip", classes=["a", "b"])


@pytest.mark.parametrize("content, match", [
    ("", "the manifest is empty"),
    ("path,label\nimg/0.png,a\n", r"missing column\(s\) \['image_path'\]"),
    ("image_path,label\n", "has no rows"),
])
def test_malformed_manifests(folder, content, match):
    (folder / "bad.csv").write_text(content)
    with pytest.raises(ManifestError, match=match):
        ManifestDataset(folder / "bad.csv")


def test_missing_manifest_and_bad_arguments(folder):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(folder / "nope.csv")
    with pytest.raises(XaikitError, match="on_error='ignore'"):
        ManifestDataset(_csv(folder, _rows()), on_error="ignore")
    with pytest.raises(XaikitError, match="class names must be unique"):
        ManifestDataset(_csv(folder, _rows()), classes=["a", "a"])


def test_splits_and_integer_labels(folder):
    csv = _csv(folder, _rows())
    assert len(ManifestDataset(csv, split="test")) == 2
    with pytest.raises(ManifestError, match=r"no row has split='val'; the splits present are \['test', 'train'\]"):
        ManifestDataset(csv, split="val")
    no_split = _csv(folder, [{k: v for k, v in r.items() if k != "split"} for r in _rows()], "nosplit.csv")
    with pytest.raises(ManifestError, match="has no 'split' column"):
        ManifestDataset(no_split, split="train")
    ints = _csv(folder, [{**r, "label": str(i % 3)} for i, r in enumerate(_rows())], "ints.csv")
    ds = ManifestDataset(ints)
    assert ds.classes == ["0", "1", "2"] and ds.labels.tolist() == [0, 1, 2, 0]


def test_a_mask_on_another_grid_is_an_error(folder):
    _png(folder / "mask" / "small.png", np.zeros((8, 8)))
    rows = _rows()
    rows[0]["mask_lung"] = "mask/small.png"
    ds = ManifestDataset(_csv(folder, rows))
    with pytest.raises(DatasetError, match=r"mask 'lung' .* has shape \(8, 8\) but its image has shape \(16, 20\)"):
        ds[0]


def test_write_manifest_stores_relative_paths(folder, tmp_path):
    table = pd.DataFrame(_rows())
    table["image_path"] = [str(folder / p) for p in table["image_path"]]
    table["mask_lung"] = [str(folder / p) for p in table["mask_lung"]]
    out = write_manifest(table, folder / "sub" / "m.csv")
    stored = pd.read_csv(out)
    assert stored["image_path"].tolist()[0] == "../img/0.png"
    with pytest.raises(ManifestError, match="leaves the dataset root"):  # issue 15: refused unless asked for
        ManifestDataset(out)
    assert len(ManifestDataset(out, root=folder)) == 4 and len(ManifestDataset(out, allow_outside_root=True)) == 4


def test_patient_split_keeps_patients_together_and_stratifies(rng):
    patients = [f"p{i}" for i in rng.integers(0, 60, 200)]
    labels = [int(p[1:]) % 2 for p in patients]  # a patient's images share a label
    table = patient_split(pd.DataFrame({"patient_id": patients, "label": labels}), seed=3)
    assert patient_leaks(table).empty
    share = table.drop_duplicates("patient_id").groupby("split")["label"].mean()  # strata are patients
    assert share.max() - share.min() < 0.2
    assert set(table["split"]) == {"train", "val", "test"}
    with pytest.raises(XaikitError, match="sum to 1"):
        patient_split(table, fractions=(0.5, 0.6), names=("train", "test"))
    many = table["patient_id"].value_counts().index[0]  # a patient with several images
    leak = table.copy()
    first = leak.index[leak["patient_id"] == many][0]
    leak.loc[first, "split"] = "val" if leak.loc[first, "split"] != "val" else "test"
    assert patient_leaks(leak)["patient_id"].tolist() == [many]
