"""Loaders for the on-disk layouts users download, each turned into a manifest table.

Every loader returns a manifest :class:`pandas.DataFrame` (``image_path, label, split, patient_id, image_id``
and, where the layout has them, ``mask_<name>``) with absolute paths; pass ``csv_path=`` to also write it
(atomically, paths relative to the CSV) so :class:`~xaikit.data.ManifestDataset` can read it:

- :func:`from_class_folders`: one folder per class, optionally inside split folders — Kermany et al.'s
  ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``.
- :func:`from_rsna`: the RSNA Pneumonia Detection Challenge — a folder of ``<patientId>.dcm`` files and
  ``stage_2_train_labels.csv`` (``patientId,x,y,width,height,Target``, one row per box); boxes become masks.
- :func:`from_medmnist`: a MedMNIST ``.npz`` (``train_images``, ``train_labels``, ``val_*``, ``test_*``),
  written out as PNG (2D) or ``.npy`` (3D) files.

Nothing is downloaded: point the loader at the files you have.
"""
from __future__ import annotations

import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .._util import atomic_write
from ..errors import ArgumentError, ManifestError
from ..io import SUPPORTED_EXTENSIONS, write_png
from .manifest import write_manifest

__all__ = ["LOADERS", "from_class_folders", "from_rsna", "from_medmnist", "kermany_patient", "SPLIT_NAMES"]

#: Folder names recognized as splits (case-insensitive), mapped to the kit's split names.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}

# Kermany et al. file names: ``person1609_virus_2791.jpeg`` (PNEUMONIA), ``IM-0115-0001.jpeg`` and
# ``NORMAL2-IM-1427-0001.jpeg`` (NORMAL). The part before the last number is the dataset's own pseudonymous
# patient key, so images of one patient stay in one split.
_IMAGE_EXTENSIONS = tuple(ext for exts in SUPPORTED_EXTENSIONS.values() for ext in exts)
_KERMANY_PATIENT = (re.compile(r"^(person\d+)_"), re.compile(r"^((?:NORMAL\d*-)?IM-\d+)-\d+$"))


def kermany_patient(stem: str) -> str | None:
    """The patient key of a Kermany file name (without extension), or ``None`` when it does not match.

    >>> kermany_patient("person1609_virus_2791"), kermany_patient("NORMAL2-IM-1427-0001")
    ('person1609', 'NORMAL2-IM-1427')
    """
    for pattern in _KERMANY_PATIENT:
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return None


def _finish(rows: list[dict], csv_path: str | os.PathLike | None, where: Path) -> pd.DataFrame:
    if not rows:
        raise ManifestError(f"{where}: no images found. Check the folder and the layout the loader expects.")
    table = pd.DataFrame(rows)
    if csv_path is not None:
        write_manifest(table, csv_path)
    return table


# ---------------------------------------------------------------------- class folders (Kermany)
def _is_image(path: Path, extensions: Sequence[str]) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and any(name.endswith(e) for e in extensions)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def from_class_folders(
    root: str | os.PathLike,
    *,
    patient_id: Callable[[str], str | None] | None = kermany_patient,
    extensions: Sequence[str] = _IMAGE_EXTENSIONS,
    csv_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """A manifest from a class-per-folder layout, with or without split folders.

    Parameters
    ----------
    root : path-like
        Either ``root/<split>/<class>/<image>`` (split folders named train/val/test or similar, as in Kermany's
        ``chest_xray``) or ``root/<class>/<image>``. Class names are the folder names.
    patient_id : callable, optional
        Maps a file name (without extension) to a patient key; default :func:`kermany_patient`. Where it
        returns ``None`` (or is ``None``) the image is its own patient.
    extensions : sequence of str
        File endings taken as images (case-insensitive).
    csv_path : path-like, optional
        Also write the manifest here.

    Returns
    -------
    pandas.DataFrame
        ``image_path`` (absolute), ``label``, ``split`` (empty without split folders), ``patient_id``,
        ``image_id`` (the path below ``root`` without extension, unique).

    Examples
    --------
    >>> table = from_class_folders("chest_xray")  # doctest: +SKIP
    >>> table.groupby(["split", "label"]).size()  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder. Give the folder that holds one sub-folder per class "
                            "(or train/val/test folders, each with one sub-folder per class).")
    extensions = tuple(e.lower() for e in extensions)
    top = _class_dirs(root)
    splits = [d for d in top if d.name.lower() in SPLIT_NAMES]
    if splits and len(splits) != len(top):
        others = [d.name for d in top if d not in splits]
        warnings.warn(f"{root}: folders {others} are neither splits nor images of a split; they are ignored.",
                      stacklevel=2)
    groups = [(SPLIT_NAMES[d.name.lower()], d) for d in splits] if splits else [("", root)]
    rows: list[dict] = []
    for split, folder in groups:
        for class_dir in _class_dirs(folder):
            files = sorted(p for p in class_dir.rglob("*") if _is_image(p, extensions))
            if not files:
                warnings.warn(f"{class_dir}: class folder with no images; it adds no rows.", stacklevel=2)
            rows.extend(_folder_row(f, class_dir.name, split, root, patient_id) for f in files)
    if rows and len({r["label"] for r in rows}) < 2:
        warnings.warn(f"{root}: only one class folder holds images ({rows[0]['label']!r}); a classifier needs "
                      "at least two.", stacklevel=2)
    return _finish(rows, csv_path, root)


def _folder_row(path: Path, label: str, split: str, root: Path, patient_id: Callable | None) -> dict:
    image_id = _without_ext(path.relative_to(root).as_posix())
    stem = _without_ext(path.name)
    patient = patient_id(stem) if patient_id is not None else None
    return {"image_path": str(path.resolve()), "label": label, "split": split,
            "patient_id": patient or image_id, "image_id": image_id}


def _without_ext(name: str) -> str:
    lower = name.lower()
    for ext in (".nii.gz",):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name.rsplit(".", 1)[0] if "." in Path(name).name else name


# ---------------------------------------------------------------------- RSNA pneumonia
RSNA_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
RSNA_CLASSES = ("normal", "pneumonia")


def from_rsna(
    images_dir: str | os.PathLike,
    labels_csv: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    on_error: str = "raise",
    csv_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """A manifest from the RSNA Pneumonia Detection layout, with the boxes drawn as ``lesion`` masks.

    Parameters
    ----------
    images_dir : path-like
        Folder of ``<patientId>.dcm`` files (``stage_2_train_images``).
    labels_csv : path-like
        ``stage_2_train_labels.csv``: ``patientId,x,y,width,height,Target``; one row per box, a single row
        with empty box for ``Target == 0``.
    out_dir : path-like
        Where the box masks are written (``<out_dir>/<patientId>_lesion.png``, 1-bit, image size).
    on_error : {"raise", "skip"}
        A labels row whose DICOM is missing, or with an invalid box or target: ``"raise"`` lists every bad
        row in a :class:`ManifestError`; ``"skip"`` leaves those patients out with a warning that names them.
    csv_path : path-like, optional
        Also write the manifest here.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``image_path, label`` (``normal``/``pneumonia``), ``split`` (empty), ``patient_id``,
        ``image_id`` (both the RSNA ``patientId``, itself a pseudonym), ``n_boxes``, ``mask_lesion`` (empty
        for normal images). In RSNA each patient has one image, so a split by ``patient_id`` is exact.
    """
    images_dir, labels_csv, out_dir = Path(images_dir), Path(labels_csv), Path(out_dir)
    if on_error not in ("raise", "skip"):
        raise ArgumentError(f"on_error={on_error!r}: use 'raise' (list every bad row) or 'skip'.")
    if not images_dir.is_dir():
        raise ManifestError(f"{images_dir}: not a folder; give the folder of <patientId>.dcm files "
                            "(stage_2_train_images).")
    labels = _rsna_labels(labels_csv)
    problems = _rsna_problems(labels, images_dir)
    bad = _report_rsna(problems, labels_csv, on_error)
    rows = [_rsna_row(pid, boxes, images_dir, out_dir)
            for pid, boxes in labels[~labels["patientId"].isin(bad)].groupby("patientId", sort=True)]
    return _finish(rows, csv_path, labels_csv)


def _rsna_labels(labels_csv: Path) -> pd.DataFrame:
    if not labels_csv.is_file():
        raise ManifestError(f"{labels_csv}: labels CSV not found (stage_2_train_labels.csv).")
    try:
        labels = pd.read_csv(labels_csv, dtype={"patientId": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{labels_csv}: cannot be read as the RSNA labels CSV ({type(exc).__name__}: {exc}). "
                            "It should be the UTF-8 file stage_2_train_labels.csv as downloaded.") from exc
    missing = [c for c in RSNA_COLUMNS if c not in labels.columns]
    if missing:
        raise ManifestError(f"{labels_csv}: missing column(s) {missing}; an RSNA labels file has "
                            f"{list(RSNA_COLUMNS)}.")
    # numbers as numbers: a cell that is not one becomes NaN and is reported as a problem row below
    numbers = {c: pd.to_numeric(labels[c].replace("", np.nan), errors="coerce") for c in RSNA_COLUMNS[1:]}
    return labels.assign(**numbers, patientId=labels["patientId"].astype(str).str.strip(),
                         line=np.arange(2, len(labels) + 2))


def _rsna_problems(labels: pd.DataFrame, images_dir: Path) -> list[tuple[int, str, str]]:
    problems = []
    for rec in labels.itertuples(index=False):
        if not _plain_name(rec.patientId):
            problems.append((rec.line, rec.patientId, "patientId must be a plain file stem (no '/', '\\' or '..')"))
            continue
        if not (images_dir / f"{rec.patientId}.dcm").is_file():
            problems.append((rec.line, rec.patientId, f"no DICOM {images_dir / (rec.patientId + '.dcm')}"))
        if rec.Target not in (0, 1):
            problems.append((rec.line, rec.patientId, f"Target={rec.Target!r}: must be 0 or 1"))
        elif rec.Target == 1 and not (np.isfinite([rec.x, rec.y, rec.width, rec.height]).all()
                                      and rec.width > 0 and rec.height > 0):
            problems.append((rec.line, rec.patientId, "Target=1 needs a box with finite x, y and positive size"))
    return problems


def _plain_name(pid: str) -> bool:
    """An RSNA patientId names a file in images_dir: it must not be empty or reach elsewhere (found by fuzzing)."""
    return bool(pid) and "/" not in pid and "\\" not in pid and pid not in (".", "..") and "\x00" not in pid


def _report_rsna(problems: list[tuple[int, str, str]], labels_csv: Path, on_error: str) -> set[str]:
    if not problems:
        return set()
    lines = "\n".join(f"  line {line}, patientId={pid}: {what}" for line, pid, what in problems)
    bad = {pid for _, pid, _ in problems}
    if on_error == "raise":
        raise ManifestError(f"{labels_csv}: {len(problems)} problem(s) in {len(bad)} patient(s):\n{lines}\n"
                            "Fix them, or pass on_error='skip' to leave these patients out.")
    warnings.warn(f"{labels_csv}: skipped {len(bad)} patient(s) (on_error='skip'):\n{lines}", stacklevel=3)
    return bad


def _rsna_row(pid: str, boxes: pd.DataFrame, images_dir: Path, out_dir: Path) -> dict:
    import pydicom

    dcm = images_dir / f"{pid}.dcm"
    positive = bool((boxes["Target"] == 1).any())
    row = {"image_path": str(dcm.resolve()), "label": RSNA_CLASSES[int(positive)], "split": "",
           "patient_id": pid, "image_id": pid, "n_boxes": int(positive) * len(boxes), "mask_lesion": ""}
    if positive:
        header = pydicom.dcmread(dcm, stop_before_pixels=True)
        mask = _box_mask((int(header.Rows), int(header.Columns)), boxes)
        row["mask_lesion"] = str(_write_mask(mask, out_dir / f"{pid}_lesion.png").resolve())
    return row


def _box_mask(shape: tuple[int, int], boxes: pd.DataFrame) -> np.ndarray:
    """Boxes ``x, y, width, height`` (pixels, origin top-left) filled into a boolean mask, clipped to the image."""
    mask = np.zeros(shape, dtype=bool)
    for rec in boxes.itertuples(index=False):
        r0, c0 = max(int(np.floor(rec.y)), 0), max(int(np.floor(rec.x)), 0)
        r1, c1 = min(int(np.ceil(rec.y + rec.height)), shape[0]), min(int(np.ceil(rec.x + rec.width)), shape[1])
        mask[r0:r1, c0:c1] = True
    return mask


def _write_mask(mask: np.ndarray, path: Path) -> Path:
    from PIL import Image

    with atomic_write(path) as fh:
        Image.fromarray(mask).save(fh, format="PNG")
    return path


# ---------------------------------------------------------------------- MedMNIST
MEDMNIST_SPLITS = ("train", "val", "test")


def from_medmnist(
    npz_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    splits: Sequence[str] = MEDMNIST_SPLITS,
    csv_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """A manifest from a MedMNIST ``.npz``, writing each image as a file under ``out_dir``.

    Parameters
    ----------
    npz_path : path-like
        E.g. ``pneumoniamnist.npz``: arrays ``<split>_images`` (N x H x W, N x H x W x 3, or N x D x H x W
        for the 3D sets) and ``<split>_labels`` (N or N x 1). Loaded with ``allow_pickle=False``.
    out_dir : path-like
        Images go to ``<out_dir>/<split>/<split>_<index>.png`` (2D, 8-bit as stored; RGB kept as luminance)
        or ``.npy`` (3D).
    classes : sequence of str, optional
        Class names in label order (e.g. ``["normal", "pneumonia"]``); default the label indices as strings.
    splits : sequence of str
        Splits to read; each needs both arrays.
    csv_path : path-like, optional
        Also write the manifest here.

    Returns
    -------
    pandas.DataFrame
        ``image_path, label, split, patient_id, image_id``. MedMNIST has no patient ids: every image is its
        own patient (its splits come with the data and are kept as they are).

    Raises
    ------
    ManifestError
        Missing file or arrays, multi-label labels (N x K with K > 1: not a single-label classification),
        labels outside ``classes``.
    """
    npz_path, out_dir = Path(npz_path), Path(out_dir)
    arrays = _load_npz(npz_path, splits)
    rows: list[dict] = []
    for split in splits:
        images, labels = arrays[f"{split}_images"], _single_labels(arrays[f"{split}_labels"], npz_path, split)
        _check_images(images, labels, npz_path, split)
        names = _class_names(labels, classes, npz_path)
        for i, (image, label) in enumerate(zip(images, labels)):
            image_id = f"{split}_{i:05d}"
            path = _write_medmnist_image(image, out_dir / split / image_id)
            rows.append({"image_path": str(path.resolve()), "label": names[int(label)], "split": split,
                         "patient_id": image_id, "image_id": image_id})
    return _finish(rows, csv_path, npz_path)


def _load_npz(npz_path: Path, splits: Sequence[str]) -> dict[str, np.ndarray]:
    if not npz_path.is_file():
        raise ManifestError(f"{npz_path}: MedMNIST file not found (e.g. pneumoniamnist.npz from medmnist.com).")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            keys = set(data.files)
            need = [f"{s}_{kind}" for s in splits for kind in ("images", "labels")]
            arrays = {k: data[k] for k in need if k in keys}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ManifestError(f"{npz_path}: cannot be read as a numeric .npz archive ({type(exc).__name__}: {exc}); "
                            "the download is incomplete or the file is not a MedMNIST .npz.") from exc
    missing = [k for k in need if k not in keys]
    if missing:
        raise ManifestError(f"{npz_path}: arrays {missing} are missing (found {sorted(keys)}); "
                            "pass splits= with the splits the file has.")
    return arrays


def _single_labels(labels: np.ndarray, npz_path: Path, split: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ManifestError(f"{npz_path}: {split}_labels has shape {labels.shape}: a multi-label set "
                            "(e.g. ChestMNIST) is not a single-label classification; pick one label column first.")
    if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise ManifestError(f"{npz_path}: {split}_labels must be non-negative integers; got {labels.dtype}.")
    return labels


def _check_images(images: np.ndarray, labels: np.ndarray, npz_path: Path, split: str) -> None:
    """Shapes the writer understands, one label per image, at least one image (found by fuzzing)."""
    if images.ndim not in (3, 4) or images.dtype.kind not in "biuf":
        raise ManifestError(f"{npz_path}: {split}_images has shape {images.shape} and dtype {images.dtype}; MedMNIST "
                            "images are numeric N x H x W, N x H x W x 3 or N x D x H x W.")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise ManifestError(f"{npz_path}: {split}_images holds NaN/infinite values; an image file cannot store them.")
    if len(images) != len(labels) or not len(images):
        raise ManifestError(f"{npz_path}: {split} has {len(images)} images and {len(labels)} labels; each split "
                            "needs one label per image and at least one image.")


#: Largest label index accepted without ``classes=`` (MedMNIST sets have at most 11 classes).
_MAX_IMPLICIT_CLASSES = 1000


def _class_names(labels: np.ndarray, classes: Sequence[str] | None, npz_path: Path) -> list[str]:
    if classes is None:
        if int(labels.max()) >= _MAX_IMPLICIT_CLASSES:
            raise ManifestError(f"{npz_path}: label {int(labels.max())} is not a plausible class index; pass "
                                "classes= with one name per label index if it is.")
        return [str(i) for i in range(int(labels.max()) + 1)]
    names = [str(c) for c in classes]
    if labels.size and labels.max() >= len(names):
        raise ManifestError(f"{npz_path}: label {int(labels.max())} has no name in classes={names}; give one "
                            "name per label index.")
    return names


def _write_medmnist_image(image: np.ndarray, stem: Path) -> Path:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 3:  # RGB MedMNIST sets: BT.601 luminance, as read_image does
        image = image @ np.array([0.299, 0.587, 0.114])
    if image.ndim == 3:
        path = stem.with_suffix(".npy")
        with atomic_write(path) as fh:
            np.save(fh, image, allow_pickle=False)
        return path
    return write_png(image.astype(np.float32), stem.with_suffix(".png"), window=(127.5, 255.0))


#: Loader name -> function, for layouts users download.
LOADERS = {"class_folders": from_class_folders, "rsna": from_rsna, "medmnist": from_medmnist}
