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


# ------------------------------------------------------------------------------------- issue 23: structure
def _write(folder: Path, text: str) -> Path:
    (folder / "s.csv").write_text(text)
    return folder / "s.csv"


@pytest.mark.parametrize("header", ["image_path,label,label", "image_path,label, label",
                                    "image_path,label,split,split"])
def test_repeated_columns_are_refused(folder, header):
    n = header.count(",") + 1
    csv = _write(folder, header + "\n" + ",".join(["img/0.png", "a", "b", "c"][:n]) + "\n")
    repeated = "label" if header.count("label") > 1 else "split"
    with pytest.raises(ManifestError, match=rf"s\.csv: the header names column\(s\) \['{repeated}'\] more than once"):
        ManifestDataset(csv)


@pytest.mark.parametrize("line", [2, 3])
def test_a_row_with_an_extra_field_is_refused_not_shifted(folder, line):
    rows = ["img/0.png,a", "img/1.png,b"]
    rows[line - 2] += ",extra"
    csv = _write(folder, "image_path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ManifestError, match=rf"s\.csv: .*line {line}.*more fields than the header") as info:
        ManifestDataset(csv)
    assert "image_path='extra'" not in str(info.value)


@pytest.mark.parametrize("cell", ["", " ", "NaN"])
def test_an_empty_patient_id_is_a_bad_row_not_the_image_id(folder, cell):
    csv = _write(folder, f"image_path,label,patient_id\nimg/0.png,a,p1\nimg/1.png,b,{cell}\nimg/2.png,a,p2\n")
    with pytest.raises(ManifestError, match=r"row 2 .*patient_id=.*empty patient_id"):
        ManifestDataset(csv)
    with pytest.warns(UserWarning, match="Skipped 1 of 3"):
        ds = ManifestDataset(csv, on_error="skip")
    assert ds.patient_ids.tolist() == ["p1", "p2"]


def test_sparse_integer_labels_warn_about_the_empty_classes(folder):
    csv = _csv(folder, [0, 1, 5, 0, 1, 5])
    with pytest.warns(UserWarning, match=r"6 classes of which \[2, 3, 4\] have no image.*classes="):
        ds = ManifestDataset(csv)
    assert ds.classes == ["0", "1", "2", "3", "4", "5"]
    named = ManifestDataset(csv, classes=["a", "b", "c", "d", "e", "f"])   # the user says what they mean: quiet
    assert named.labels.tolist() == [0, 1, 5, 0, 1, 5]


def test_outside_root_names_the_one_flag_first(folder, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    paths = []
    for i in range(3):
        Image.fromarray(np.full((8, 8), 9 * i, np.uint8)).save(elsewhere / f"{i}.png")
        paths.append(str(elsewhere / f"{i}.png"))
    csv = _csv(folder, ["a", "b", "a"], paths)
    with pytest.raises(ManifestError) as info:
        ManifestDataset(csv)
    first = str(info.value).splitlines()[0]
    assert "3 path(s) lie outside the dataset root" in first and "root=" in first and "allow_outside_root=True" in first
    assert len(ManifestDataset(csv, root=elsewhere)) == 3
