"""Manifests that do not get the benefit of the doubt (issue 15): NaN labels, case variants, escaping paths,
non-UTF-8 files. Each is refused by default with a message saying what to do, and allowed by an explicit option
where that makes sense."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xaikit.data import ManifestDataset, read_manifest
from xaikit.errors import ManifestError


@pytest.fixture
def folder(tmp_path) -> Path:
    data = tmp_path / "data"
    for i in range(6):
        (data / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(data / "img" / f"{i}.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "outside.png")
    return data


def _csv(folder: Path, labels, paths=None, name: str = "m.csv") -> Path:
    paths = paths or [f"img/{i}.png" for i in range(len(labels))]
    pd.DataFrame({"image_path": paths, "label": labels}).to_csv(folder / name, index=False)
    return folder / name


@pytest.mark.parametrize("token", ["NaN", "nan", "NA", "N/A", "null", "None", "#N/A"])
def test_nan_labels_are_missing_labels_not_a_class(folder, token):
    csv = _csv(folder, ["a", "b", token, "a", "b", "a"])
    with pytest.raises(ManifestError, match=rf"row 3 .*label='{token}': missing label") as info:
        ManifestDataset(csv)
    assert "classes" not in str(info.value) or token not in str(info.value).split("classes are")[-1]
    with pytest.warns(UserWarning, match="Skipped 1 of 6"):
        ds = ManifestDataset(csv, on_error="skip")
    assert ds.classes == ["a", "b"] and len(ds) == 5 and ds.skipped["row"].tolist() == [3]
    # a class really named "None" can still be declared explicitly
    assert ManifestDataset(_csv(folder, ["None", "x"] * 3, name="n.csv"),
                           classes=["None", "x"]).classes == ["None", "x"]


def test_case_variant_labels_are_refused_or_merged(folder):
    csv = _csv(folder, ["normal", "Normal", "Normal ", "pneumonia", "Normal", "PNEUMONIA"])
    with pytest.raises(ManifestError, match=r"differ only in case.*'Normal' \(3 rows\).*'normal' \(1 rows\)"
                                            r".*fold_label_case=True"):
        ManifestDataset(csv)
    ds = ManifestDataset(csv, fold_label_case=True)
    assert ds.classes == ["Normal", "pneumonia"] or ds.classes == ["Normal", "PNEUMONIA"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 0, 1]


def test_case_variant_of_a_declared_class(folder):
    csv = _csv(folder, ["Normal", "normal", "sick", "Normal", "sick", "Normal"])
    with pytest.raises(ManifestError, match=r"row 2 .*unknown label.*did you mean 'Normal'"):
        ManifestDataset(csv, classes=["Normal", "sick"])
    assert ManifestDataset(csv, classes=["Normal", "sick"], fold_label_case=True).labels.tolist() == [0, 0, 1, 0, 1, 0]


@pytest.mark.parametrize("escape", ["../outside.png", "img/../../outside.png", "ABS", "/etc/passwd",
                                    "../../../../../../etc/passwd"])
def test_paths_escaping_the_dataset_root_are_refused(folder, escape):
    target = str(folder.parent / "outside.png") if escape == "ABS" else escape
    csv = _csv(folder, ["a", "b", "a"], ["img/0.png", target, "img/2.png"])
    with pytest.raises(ManifestError, match="row 2 .*leaves the dataset root"):
        ManifestDataset(csv)
    if "passwd" in escape:
        return
    ds = ManifestDataset(csv, allow_outside_root=True)
    assert ds[1]["image"].max() == 255
    assert len(ManifestDataset(csv, root=folder.parent)) == 3


def test_paths_inside_the_root_with_dots_are_fine(folder):
    csv = _csv(folder, ["a", "b"], ["img/../img/0.png", "./img/1.png"])
    assert len(ManifestDataset(csv)) == 2


def test_non_utf8_manifest_says_which_byte_and_what_to_do(folder):
    path = folder / "latin.csv"
    path.write_bytes("image_path,label\nimg/0.png,gesund\nimg/1.png,krank (Lungenentzündung)\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"latin.csv: not readable as utf-8.*b'\\xfc'.*encoding="):
        read_manifest(path)
    ds = ManifestDataset(path, encoding="latin-1")
    assert ds.classes == ["gesund", "krank (Lungenentzündung)"]


def test_utf8_with_byte_order_mark_is_read(folder):
    path = folder / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfimage_path,label\nimg/0.png,a\nimg/1.png,b\n")
    assert ManifestDataset(path).classes == ["a", "b"]
