"""Datasets from a manifest CSV: ``image_path,label[,split,patient_id,image_id,mask_<name>...]``.

Paths in the CSV are relative to the CSV's folder (absolute paths are allowed). The manifest is checked
eagerly when a :class:`ManifestDataset` is built — columns, labels, files — and every bad row is reported at
once; images are read lazily, one sample at a time, through :func:`xaikit.io.read_image`.

A manifest is not trusted (it may come from someone else): by default a path that leaves the dataset root
(the CSV's folder, or ``root=``) — ``../../etc/passwd`` — is a bad row (``allow_outside_root=True`` accepts it);
missing labels spelled ``NaN``/``NA``/``null``/``None`` are bad rows, never a class of their own; labels that
differ only in case or spacing (``normal`` / ``Normal ``) are refused (``fold_label_case=True`` merges them);
a CSV that is not UTF-8 is refused with the byte that failed (``encoding=`` reads it).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from .._util import PERMISSION_HINT, atomic_write, file_problem
from ..errors import ArgumentError, DatasetError, ImageReadError, ManifestError
from ..io import read_image
from ..io.image import MedicalImage
from .preprocess import Preprocess, warn_if_stretched

__all__ = ["ManifestDataset", "read_manifest", "write_manifest", "REQUIRED_COLUMNS", "MASK_PREFIX"]

REQUIRED_COLUMNS = ("image_path", "label")
MASK_PREFIX = "mask_"
_OUTSIDE = "the path leaves the dataset root"
_PROBLEM_COLUMNS = ["row", "line", "column", "value", "problem"]
_INT = re.compile(r"^[+-]?\d+$")
#: Label cells that mean "no label" in exported tables (pandas' and spreadsheets' spellings of missing).
MISSING_LABELS = frozenset({"nan", "na", "n/a", "null", "none", "<na>", "nat", "#n/a"})


def read_manifest(csv_path: str | os.PathLike, *, encoding: str = "utf-8-sig") -> pd.DataFrame:
    """Read a manifest CSV as strings (empty cells are ``""``), refusing a missing or empty file.

    ``encoding`` is UTF-8 (a byte-order mark, as Excel writes, is dropped); pass the file's encoding
    (e.g. ``"latin-1"``, ``"cp1252"``) for other files.

    Raises
    ------
    ManifestError
        The file is missing, empty, not a CSV, or lacks ``image_path`` / ``label``.
    """
    path = Path(csv_path)
    problem = file_problem(path)
    if problem == "does not exist":
        raise ManifestError(f"{path}: manifest not found. Give the path of the CSV file "
                            f"(relative paths start at {Path.cwd()}).")
    if problem:
        raise ManifestError(f"{path}: the manifest {problem}; give the path of the CSV file.")
    header, table = _read_csv(path, encoding)
    _check_header(path, header)
    table.columns = [name or str(auto) for name, auto in zip(header, table.columns)]  # unnamed: pandas' name
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; found {list(table.columns)}. A manifest needs "
                            f"{list(REQUIRED_COLUMNS)} (optional: split, patient_id, image_id, mask_<name>).")
    return table


def _read_csv(path: Path, encoding: str) -> tuple[list[str], pd.DataFrame]:
    """The header as written (pandas renames a repeated column ``label.1``) and the rows as strings.

    ``index_col=False``: a first row with more fields than the header must not turn column 1 into an index and
    shift every column (pandas' default); pandas then drops the extra field with a ParserWarning, refused here.
    """
    kw = dict(dtype=str, keep_default_na=False, skipinitialspace=True, encoding=encoding)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            header = pd.read_csv(path, header=None, nrows=1, **kw).iloc[0].tolist()
            table = pd.read_csv(path, index_col=False, **kw)
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not readable as {exc.encoding} text: byte {exc.object[exc.start:exc.end]!r} at "
                            f"offset {exc.start} ({exc.reason}). Save the CSV as UTF-8 (e.g. Excel's 'CSV UTF-8'), "
                            "or pass encoding= with the file's encoding (often 'cp1252' or 'latin-1').") from exc
    except LookupError as exc:
        raise ArgumentError(f"encoding={encoding!r} is not a known text encoding ({exc}).") from exc
    except pd.errors.EmptyDataError as exc:
        raise ManifestError(f"{path}: the manifest is empty (no header, no rows). It needs at least the columns "
                            f"{list(REQUIRED_COLUMNS)} and one row per image.") from exc
    except pd.errors.ParserError as exc:
        raise ManifestError(f"{path}: {str(exc).strip()}: a row has more fields than the header: an unquoted comma "
                            "in a path or label? Quote such cells (\"a,b.png\") or remove the extra field.") from exc
    except PermissionError as exc:
        raise ManifestError(f"{path}: permission denied: {PERMISSION_HINT}") from exc
    except (ValueError, OSError) as exc:
        raise ManifestError(f"{path}: cannot be parsed as a CSV manifest ({exc}).") from exc
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        raise ManifestError(f"{path}: the first data row (line 2) has more fields than the header {header}: an "
                            "unquoted comma in a path or label? Quote such cells or remove the extra field.")
    return [str(c).strip() for c in header], table


def _check_header(path: Path, header: list[str]) -> None:
    counts = pd.Series([h for h in header if h], dtype=object).value_counts()
    repeated = sorted(counts[counts > 1].index)
    if repeated:
        raise ManifestError(f"{path}: the header names column(s) {repeated} more than once (spaces around names "
                            "ignored); it is unclear which one holds the data. Keep one column of each name.")


def write_manifest(table: pd.DataFrame, csv_path: str | os.PathLike) -> Path:
    """Write a manifest atomically, storing ``image_path`` and ``mask_*`` paths relative to the CSV's folder.

    Paths in ``table`` may be absolute or relative to the current directory; empty cells stay empty.
    """
    path = Path(csv_path)
    out = table.copy()
    for col in [c for c in out.columns if c == "image_path" or c.startswith(MASK_PREFIX)]:
        out[col] = [_relative(p, path.parent) for p in out[col].fillna("").astype(str)]
    with atomic_write(path, "w") as fh:
        out.to_csv(fh, index=False, lineterminator="\n")
    return path


def _relative(value: str, folder: Path) -> str:
    if not value:
        return ""
    try:
        return Path(os.path.relpath(Path(value).resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive on Windows: keep it absolute
        return Path(value).resolve().as_posix()


class ManifestDataset(Dataset):
    """A torch ``Dataset`` over the images listed in a manifest CSV.

    Parameters
    ----------
    csv_path : path-like
        The manifest: columns ``image_path`` and ``label``; optional ``split``, ``patient_id``, ``image_id``
        and ``mask_<name>`` (one column per mask; an empty cell means "no such region in this image" and gives
        an all-``False`` mask). Other columns are kept in :attr:`table`.
    preprocess : Preprocess, optional
        Applied to each image and its masks. Without it the image is returned at its own size (1 x H x W).
    classes : sequence of str, optional
        Class names in label-index order. Labels may be class names or integer indices into ``classes``.
        Default: the sorted unique label names of the *whole* manifest (so every split gets the same
        indices), or ``"0" .. "K-1"`` when all labels are integers.
    transform : callable, optional
        ``transform(image_tensor, masks) -> (image_tensor, masks)`` after ``preprocess`` (e.g. :class:`Augment`).
    on_error : {"raise", "skip"}
        ``"raise"`` (default): a :class:`ManifestError` lists every bad row. ``"skip"``: bad rows are left out,
        recorded in :attr:`skipped` and announced with a warning.
    split : str, optional
        Keep only the rows whose ``split`` column equals this value.
    read_kw : dict, optional
        Keyword arguments for :func:`xaikit.io.read_image` (e.g. ``{"frame": 0}``).
    root : path-like, optional
        The dataset root: every image and mask path must lie inside it (default: the CSV's folder).
    allow_outside_root : bool
        Accept paths outside ``root`` (``..`` or absolute paths elsewhere). Off by default: a manifest
        from someone else must not make the kit read (and later plot or export) arbitrary files.
    fold_label_case : bool
        Merge labels that differ only in case or surrounding spaces (``normal``, ``Normal``); the class name
        is the most frequent spelling. Off by default: such labels are refused, not silently two classes.
    encoding : str
        Text encoding of the CSV (default UTF-8, with or without byte-order mark).

    Attributes
    ----------
    table : pandas.DataFrame
        The kept rows: the manifest's columns plus ``row`` (1-based data row of the CSV), ``id``,
        ``label_index``, ``patient_id`` (the image id where the manifest has no such column; an empty cell in
        it is a bad row) and ``path`` (absolute).
    classes : list of str
    labels : numpy.ndarray of int64
    patient_ids : numpy.ndarray of str
    skipped : pandas.DataFrame
        One row per problem of the skipped rows: ``row, line, column, value, problem`` (empty when none).

    Notes
    -----
    A sample is ``{"image": float32 C x H x W, "label": int, "id": str, "patient_id": str,
    "masks": {name: bool H x W}, "meta": dict}``; ``id`` is the ``image_id`` column or else ``image_path``
    without its extension. ``meta`` holds only collatable scalars (``row``, ``path``, ``split``, ``modality``,
    ``original_height``, ``original_width``, ``window_center``, ``window_width``); read the file with
    :func:`xaikit.io.read_image` for its full (de-identified) metadata.

    Examples
    --------
    >>> ds = ManifestDataset("data_samples/manifest.csv", preprocess=Preprocess(size=64))  # doctest: +SKIP
    >>> ds[0]["image"].shape  # doctest: +SKIP
    torch.Size([1, 64, 64])
    """

    def __init__(
        self,
        csv_path: str | os.PathLike,
        *,
        preprocess: Preprocess | None = None,
        classes: Sequence[str] | None = None,
        transform: Callable | None = None,
        on_error: str = "raise",
        split: str | None = None,
        read_kw: Mapping[str, Any] | None = None,
        root: str | os.PathLike | None = None,
        allow_outside_root: bool = False,
        fold_label_case: bool = False,
        encoding: str = "utf-8-sig",
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ArgumentError(f"on_error={on_error!r}: use 'raise' (list every bad row) or 'skip'.")
        self.csv_path = Path(csv_path)
        self.preprocess, self.transform = preprocess, transform
        self.read_kw = dict(read_kw or {})
        self.split = split
        raw = read_manifest(self.csv_path, encoding=encoding)
        for col in raw.columns:
            if col.startswith(MASK_PREFIX) and not col[len(MASK_PREFIX):]:
                raise ManifestError(f"{self.csv_path}: column {col!r}: a mask column needs a name after "
                                    f"'{MASK_PREFIX}' (e.g. mask_lung).")
        self.classes = _classes(raw["label"], classes, self.csv_path, fold_label_case)
        rows = _select_split(raw, split, self.csv_path)
        if rows.empty:
            where = "" if split is None else f" for split={split!r}"
            raise ManifestError(f"{self.csv_path}: the manifest has no rows{where}; add one row per image.")
        base = self.csv_path.parent
        fence = None if allow_outside_root else Path(os.path.normpath(os.path.abspath(root or base)))
        self._fence = fence
        table, problems = _validate(rows, self.classes, base, fence, fold_label_case)
        self.skipped = problems
        if not problems.empty:
            self._report(problems, len(rows), on_error)
            table = table[~table["row"].isin(problems["row"])]
        table = table.reset_index(drop=True)
        self._mask_paths: list[dict[str, str]] = table.pop("_mask_paths").tolist()
        self.table = table
        self.mask_names = [c[len(MASK_PREFIX):] for c in raw.columns if c.startswith(MASK_PREFIX)]

    # ------------------------------------------------------------------ reporting
    def _report(self, problems: pd.DataFrame, n_rows: int, on_error: str) -> None:
        n_bad = problems["row"].nunique()
        lines = "\n".join(
            f"  row {p.row} (line {p.line}), {p.column}={p.value!r}: {p.problem}" for p in problems.itertuples()
        )
        head = f"{self.csv_path}: {n_bad} of {n_rows} rows are bad ({len(problems)} problems):\n{lines}"
        outside = problems["problem"].str.startswith(_OUTSIDE).sum()
        if outside:  # one cause for many rows (manifest here, images on /data): say the fix once, first
            head = (f"{self.csv_path}: {outside} path(s) lie outside the dataset root {self._fence}. If the manifest "
                    "is kept apart from its images (e.g. absolute paths to /data), pass root='<folder holding the "
                    "images>' (keeps the protection) or allow_outside_root=True (trust this manifest).\n" + head)
        if on_error == "raise" or n_bad == n_rows:
            hint = ("\nEvery row is bad: fix the manifest." if n_bad == n_rows else
                    "\nFix these rows, or pass on_error='skip' to leave them out (they are then listed in .skipped).")
            error = ManifestError(head + hint)
            error.problems = problems
            raise error
        warnings.warn(f"Skipped {n_bad} of {n_rows} manifest rows of {self.csv_path} (on_error='skip'); "
                      "dataset.skipped lists each row and its problem.", stacklevel=3)

    # ------------------------------------------------------------------ Dataset protocol
    def __len__(self) -> int:
        return len(self.table)

    def _preprocess(self, image, masks):
        """Through :attr:`preprocess`; a stretching resize is reported once per dataset, not once per image."""

        if not isinstance(self.preprocess, Preprocess) or self.preprocess.mode != "resize":
            return self.preprocess(image, masks)
        if not getattr(self, "_stretch_reported", False):
            self._stretch_reported = warn_if_stretched(
                [image.shape[-2:]], self.preprocess.size, stacklevel=3,
                note=f"; the first such image of this dataset ({len(self)} images), the others are not reported")
        return self.preprocess(image, masks, warn=False)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} images")
        row = self.table.iloc[index]
        image = self._read(row["path"], row)
        mask_paths = self._mask_paths[index]
        masks = {name: self._read_mask(row, name, mask_paths.get(name), image.shape) for name in self.mask_names}
        if self.preprocess is not None:
            tensor, masks = self._preprocess(image, masks)
        else:
            tensor = torch.from_numpy(image.array.copy()).unsqueeze(0)
            masks = {name: torch.from_numpy(m) for name, m in masks.items()}
        if self.transform is not None:
            tensor, masks = self.transform(tensor, masks)
        return {"image": tensor, "label": int(row["label_index"]), "id": row["id"],
                "patient_id": row["patient_id"], "masks": masks, "meta": self._meta(row, image)}

    def _read(self, path: str, row: pd.Series) -> MedicalImage:
        try:
            return read_image(path, **self.read_kw)
        except ImageReadError as exc:
            raise ImageReadError(f"{self.csv_path}, row {row['row']}: {exc}") from exc

    def _read_mask(self, row: pd.Series, name: str, path: str | None, shape: tuple[int, ...]) -> np.ndarray:
        if path is None:
            return np.zeros(shape, dtype=bool)
        mask = self._read(path, row).array > 0
        if mask.shape != shape:
            raise DatasetError(f"{self.csv_path}, row {row['row']}: mask {name!r} ({path}) has shape {mask.shape} "
                               f"but its image has shape {shape}; masks must be drawn on the image's grid.")
        return mask

    def _meta(self, row: pd.Series, image: MedicalImage) -> dict[str, Any]:
        return {
            "row": int(row["row"]), "path": str(row["path"]), "split": row.get("split", ""),
            "modality": image.modality, "original_height": int(image.shape[-2]),
            "original_width": int(image.shape[-1]), "window_center": float(image.window[0]),
            "window_width": float(image.window[1]),
        }

    # ------------------------------------------------------------------ views
    @property
    def labels(self) -> np.ndarray:
        """Integer label of every image (no image is read)."""
        return self.table["label_index"].to_numpy(dtype=np.int64)

    @property
    def patient_ids(self) -> np.ndarray:
        """Patient id of every image (the image id where the manifest has none)."""
        return self.table["patient_id"].to_numpy(dtype=object)

    @property
    def ids(self) -> list[str]:
        """Image id of every image."""
        return self.table["id"].tolist()

    def __repr__(self) -> str:
        split = "" if self.split is None else f", split={self.split!r}"
        return (f"ManifestDataset({self.csv_path.name!r}, n={len(self)}, classes={self.classes}{split}, "
                f"masks={self.mask_names}, skipped_rows={self.skipped['row'].nunique()})")


# ---------------------------------------------------------------------- validation (private)
def _classes(labels: pd.Series, classes: Sequence[str] | None, csv_path: Path, fold: bool) -> list[str]:
    if classes is not None:
        if isinstance(classes, str) or len(classes) == 0:
            raise ArgumentError(f"classes={classes!r}: give a non-empty list of class names.")
        names = [str(c) for c in classes]
        keys = [_fold(n) if fold else n for n in names]
        if len(set(keys)) != len(keys):
            raise ArgumentError(f"classes={names}: class names must be unique"
                                f"{' (ignoring case, as fold_label_case=True)' if fold else ''}.")
        return names
    cells = [s.strip() for s in labels if s.strip() and s.strip().lower() not in MISSING_LABELS]
    present = sorted(set(cells))
    if present and all(_INT.match(s) for s in present):
        top = max(int(s) for s in present)
        names = [str(i) for i in range(max(top, 0) + 1)]
        empty = sorted(set(range(len(names))) - {int(s) for s in present})
        if empty:
            warnings.warn(f"{csv_path}: integer labels {sorted({int(s) for s in present})} are read as class "
                          f"indices, so the model gets {len(names)} classes of which {empty} have no image. Pass "
                          "classes=[...] with one name per index you mean (or relabel 0..K-1).", stacklevel=3)
        return names
    return _merge_case_variants(cells, csv_path, fold)


def _fold(label: str) -> str:
    return " ".join(label.split()).casefold()


def _merge_case_variants(cells: list[str], csv_path: Path, fold: bool) -> list[str]:
    """Sorted class names; spellings differing only in case/spaces refused, or merged when ``fold``."""
    counts = pd.Series(cells, dtype=object).value_counts() if cells else pd.Series(dtype=int)
    groups: dict[str, dict[str, int]] = {}
    for spelling, n in counts.items():
        groups.setdefault(_fold(spelling), {})[spelling] = int(n)
    clashes = {k: v for k, v in groups.items() if len(v) > 1}
    if clashes and not fold:
        shown = "; ".join(", ".join(f"{s!r} ({n} rows)" for s, n in v.items()) for v in clashes.values())
        raise ManifestError(f"{csv_path}: labels that differ only in case or spacing would become separate classes: "
                            f"{shown}. Fix the spelling in the manifest, or pass fold_label_case=True to merge them "
                            "(the most frequent spelling names the class).")
    return sorted(max(v.items(), key=lambda item: (item[1], item[0]))[0] for v in groups.values())


def _select_split(raw: pd.DataFrame, split: str | None, csv_path: Path) -> pd.DataFrame:
    rows = raw.assign(row=np.arange(1, len(raw) + 1))
    if split is None:
        return rows
    if "split" not in raw.columns:
        raise ManifestError(f"{csv_path}: split={split!r} was asked for but the manifest has no 'split' column; "
                            "add one (or use xaikit.data.patient_split) or leave split=None.")
    kept = rows[rows["split"].str.strip() == split]
    if kept.empty and len(rows):
        raise ManifestError(f"{csv_path}: no row has split={split!r}; the splits present are "
                            f"{sorted(set(rows['split']))}.")
    return kept


def _validate(rows: pd.DataFrame, classes: list[str], root: Path, fence: Path | None,
              fold: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Resolve paths, labels and ids of every row; collect one record per problem."""
    problems: list[dict[str, Any]] = []

    def bad(row: int, column: str, value: str, problem: str) -> None:
        problems.append({"row": row, "line": row + 1, "column": column, "value": value, "problem": problem})

    table = rows.copy()
    table["path"] = [_check_path(r, v, "image_path", root, fence, bad, required=True)
                     for r, v in zip(table["row"], table["image_path"])]
    table["label_index"] = [_label_index(r, v, classes, bad, fold) for r, v in zip(table["row"], table["label"])]
    mask_cols = [c for c in table.columns if c.startswith(MASK_PREFIX)]
    mask_paths = [{c[len(MASK_PREFIX):]: _check_path(r, rec[c], c, root, fence, bad, required=False)
                   for c in mask_cols if rec[c].strip()} for r, rec in zip(table["row"], table.to_dict("records"))]
    table["_mask_paths"] = mask_paths
    table["id"] = _ids(table, bad)
    if "patient_id" in table.columns:
        table["patient_id"] = [_patient(r, p, bad) for r, p in zip(table["row"], table["patient_id"])]
    else:
        table["patient_id"] = table["id"]
    return table, pd.DataFrame(problems, columns=_PROBLEM_COLUMNS).sort_values(["row", "column"], kind="stable")


def _patient(row: int, value: str, bad: Callable) -> str:
    """An empty patient id is a bad row: made up from the image id, one patient's images could land in both the
    training and the test split (found by fuzzing: the fallback hid exactly that leak)."""
    value = value.strip()
    if not value or value.lower() in MISSING_LABELS:
        bad(row, "patient_id", value, "empty patient_id: the patient is unknown, so a patient split could put "
                                      "their images on both sides; fill it in (or drop the patient_id column to "
                                      "treat every image as its own patient)")
    return value


def _check_path(row: int, value: str, column: str, root: Path, fence: Path | None, bad: Callable, *,
                required: bool) -> str:
    value = value.strip()
    if not value:
        if required:
            bad(row, column, value, "empty path")
        return ""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else root / path
    if fence is not None and not _inside(path, fence):
        bad(row, column, value, f"{_OUTSIDE} {fence}; pass root= (the folder holding the "
                                "images) or allow_outside_root=True if you trust this manifest")
        return str(path)
    problem = file_problem(path)  # also a name too long for the file system, a NUL byte (found by fuzzing)
    if problem == "does not exist":
        bad(row, column, value, f"file not found ({path})")
    elif problem:
        bad(row, column, value, f"{path} {problem}"[:300])
    return str(path)


def _inside(path: Path, fence: Path) -> bool:
    """Lexically (``..`` resolved, symlinks not followed: a link the user made inside the root is theirs)."""
    normal = os.path.normpath(os.path.abspath(path))
    return normal == str(fence) or normal.startswith(str(fence).rstrip(os.sep) + os.sep)


def _label_index(row: int, value: str, classes: list[str], bad: Callable, fold: bool) -> int:
    value = value.strip()
    if not value:
        bad(row, "label", value, "empty label")
        return -1
    if value in classes:
        return classes.index(value)
    if _INT.match(value) and 0 <= int(value) < len(classes):
        return int(value)
    folded = [_fold(c) for c in classes]
    if fold and _fold(value) in folded:
        return folded.index(_fold(value))
    if value.lower() in MISSING_LABELS:
        bad(row, "label", value, "missing label (a spreadsheet's NaN/NA/null); label the image or drop the row")
        return -1
    near = [c for c in classes if _fold(c) == _fold(value)]
    hint = f"; did you mean {near[0]!r}? (fold_label_case=True merges case variants)" if near else ""
    bad(row, "label", value, f"unknown label; the classes are {classes} (names or indices 0..{len(classes) - 1}){hint}")
    return -1


def _ids(table: pd.DataFrame, bad: Callable) -> list[str]:
    """The ``image_id`` column, else ``image_path`` without extension; duplicates are problems."""
    if "image_id" in table.columns:
        ids, column = [v.strip() for v in table["image_id"]], "image_id"
    else:
        ids, column = [_strip_ext(v.strip()) for v in table["image_path"]], "image_path"
    first: dict[str, int] = {}
    for row, image_id in zip(table["row"], ids):
        if image_id and image_id in first:
            bad(row, column, image_id, f"duplicate image id (first in row {first[image_id]}); each image once")
        first.setdefault(image_id, row)
        if not image_id and column == "image_id":
            bad(row, column, image_id, "empty image_id")
    return ids


def _strip_ext(path: str) -> str:
    posix = Path(path).as_posix()
    for ext in (".nii.gz", ".tar.gz"):
        if posix.lower().endswith(ext):
            return posix[: -len(ext)]
    return str(Path(posix).with_suffix("").as_posix()) if Path(posix).suffix else posix
