"""Command-line inputs: files, folders (a DICOM series folder is a folder of slices), manifest CSVs.

For a 2D model every input becomes :class:`Item` s, one per 2D plane the model sees; for a 3D model
(:func:`collect_volume_sources`, :func:`load_volume_items`) one item per volume: a NIfTI file, a multi-frame
DICOM file or a folder holding one DICOM series (:func:`xaikit.io.read_volume`). An item is named
``<running index>_<content hash>`` (``00003_9f2c41d0aa51b7e3``, plus ``_s012`` for slice 12 of a volume): the
hash is the SHA-256 of the file's bytes, so no output name, table or page carries a file name, folder name or
DICOM identifier, while the same file always gets the same hash (and hits the same disk-cache entries).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from ..errors import ArgumentError, ImageReadError, ManifestError, XaikitError
from ..inference import content_id, planes
from ..io import SUPPORTED_EXTENSIONS, image_format, read_image
from ..io.image import MedicalImage

__all__ = ["Source", "Item", "collect_sources", "load_items", "collect_volume_sources", "load_volume_items"]

_IMAGE_ENDINGS = tuple(e for endings in SUPPORTED_EXTENSIONS.values() for e in endings)


@dataclass(frozen=True)
class Source:
    """One image file to read (its path stays in memory, never in an output) and its label, if known."""

    path: Path
    label: int | None = None


@dataclass
class Item:
    """One 2D plane (or, for a 3D model, one volume) to predict/explain."""

    name: str  # output stem: running index + content hash (+ slice)
    image_id: str  # content hash (+ slice): the key of the disk cache and ``Explanation.image_ids``
    sha: str
    slice: int | None
    image: MedicalImage
    label: int | None
    modality: str


def collect_sources(inputs: Sequence[str | os.PathLike], classes: Sequence[str], *,
                    manifest_root: str | os.PathLike | None = None, trust_manifest: bool = False) -> list[Source]:
    """Expand files, folders and manifest CSVs (``image_path,label`` ...) into image files, in order.

    A folder is searched recursively, in sorted order; hidden files and files that are not images (by extension
    or, without one, by the DICOM preamble) are left out with a warning that counts them.
    """
    if not inputs:
        raise ArgumentError("no INPUT given: name image files, folders or a manifest CSV.")
    sources = _expand(inputs, _folder, classes, manifest_root, trust_manifest)
    if not sources:
        raise ImageReadError(f"INPUT {', '.join(map(str, inputs))}: no image files found (looked for "
                             f"{', '.join(_IMAGE_ENDINGS)} and DICOM files without extension).")
    return sources


def _expand(inputs: Sequence[str | os.PathLike], folder: Callable[[Path], list[Source]], classes: Sequence[str],
            manifest_root: str | os.PathLike | None, trust_manifest: bool) -> list[Source]:
    """Each INPUT as sources: a folder through ``folder``, a CSV as a manifest, any other file as itself."""
    sources: list[Source] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            sources += folder(path)
        elif path.is_file() and path.name.lower().endswith(".csv"):
            sources += _manifest(path, classes, manifest_root, trust_manifest)
        elif path.is_file():
            sources.append(Source(path))
        else:
            raise ImageReadError(f"INPUT {raw}: no such file or folder. Check the path "
                                 f"(relative paths start at {Path.cwd()}).")
    return sources


def _folder(folder: Path) -> list[Source]:
    found, other = [], 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.name.lower().endswith(_IMAGE_ENDINGS) or (not path.suffix and _is_image(path)):
            found.append(Source(path))
        else:
            other += 1
    if other:
        warnings.warn(f"{folder}: left out {other} file(s) that are not images (by extension or content).",
                      stacklevel=3)
    return found


def _is_image(path: Path) -> bool:
    try:
        return image_format(path) in ("dicom", "raster", "npy", "nifti")
    except ImageReadError:
        return False


def _manifest(csv_path: Path, classes: Sequence[str], root, trust: bool) -> list[Source]:
    from ..data.manifest import ManifestDataset

    try:
        ds = ManifestDataset(csv_path, classes=list(classes), root=root, allow_outside_root=trust)
    except ManifestError as exc:
        if "leaves the dataset root" not in str(exc):
            raise
        raise ManifestError(f"{exc}\nOn the command line: --manifest-root DIR (the folder holding the images) or "
                            "--trust-manifest (accept any path in this manifest).") from exc
    return [Source(Path(p), int(lab)) for p, lab in zip(ds.table["path"], ds.labels)]


def load_items(sources: Sequence[Source], *, slices: str | int = "middle", skip_bad: bool = False,
               progress: bool = True) -> tuple[list[Item], list[tuple[Path, str]]]:
    """Read every source into items; returns ``(items, bad)`` with ``bad = [(path, reason), ...]``.

    Unreadable files raise one :class:`ImageReadError` listing all of them, unless ``skip_bad`` (then they are
    returned in ``bad`` for the caller to report).
    """
    items: list[Item] = []
    bad: list[tuple[Path, str]] = []
    for src in tqdm(sources, desc="read", unit="file", disable=not progress):
        try:
            image = read_image(src.path)
            chosen = planes(image, slices)
        except XaikitError as exc:
            bad.append((src.path, str(exc)))
            continue
        sha = content_id(src.path)
        for k, plane in chosen:
            suffix = "" if k is None else f"_s{k:03d}"
            items.append(Item(f"{len(items):05d}_{sha}{suffix}", f"{sha}{suffix}", sha, k, plane, src.label,
                              image.modality))
    return _finish(items, bad, sources, skip_bad)


def _finish(items: list[Item], bad: list[tuple[Path, str]], sources: Sequence[Source], skip_bad: bool):
    if bad and not skip_bad:
        listing = "\n".join(f"  {p}: {reason}" for p, reason in bad)
        raise ImageReadError(f"{len(bad)} of {len(sources)} input file(s) cannot be read:\n{listing}\n"
                             "Fix or remove them, or pass --skip-bad to explain the others.")
    if not items:
        raise ImageReadError("none of the inputs could be read; nothing to do.")
    return items, bad


# ------------------------------------------------------------------------------------------------ volumes

_NIFTI = (".nii", ".nii.gz")


def collect_volume_sources(inputs: Sequence[str | os.PathLike], classes: Sequence[str], *,
                           manifest_root: str | os.PathLike | None = None,
                           trust_manifest: bool = False) -> list[Source]:
    """Expand inputs into volumes for a 3D model: NIfTI files, DICOM files (multi-frame) and DICOM series
    folders (a folder whose DICOM files stack into one series is one volume). Folders are searched recursively."""
    if not inputs:
        raise ArgumentError("no INPUT given: name NIfTI files, DICOM series folders or a manifest CSV.")
    sources = _expand(inputs, _volume_folder, classes, manifest_root, trust_manifest)
    if not sources:
        raise ImageReadError(f"INPUT {', '.join(map(str, inputs))}: no volumes found (looked for NIfTI files, "
                             "DICOM files and DICOM series folders).")
    return sources


def _volume_folder(folder: Path) -> list[Source]:
    """NIfTI files, then per folder: the folder itself when its DICOM files form one series, else each file."""
    from ..io import read_dicom_series

    found: list[Source] = []
    for where in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if any(part.startswith(".") for part in where.relative_to(folder).parts):
            continue
        files = sorted(p for p in where.iterdir() if p.is_file() and not p.name.startswith("."))
        found += [Source(p) for p in files if p.name.lower().endswith(_NIFTI)]
        dicom = [p for p in files if p.suffix.lower() == ".dcm" or (not p.suffix and _is_image(p))]
        if len(dicom) > 1:
            try:
                read_dicom_series(where)  # one series: one volume (its files are its slices)
                found.append(Source(where))
                continue
            except XaikitError:
                pass  # several multi-frame files or unrelated images: each file on its own
        found += [Source(p) for p in dicom]
    return found


def _read_volume(path: Path) -> MedicalImage:
    """A series folder or NIfTI file through :func:`xaikit.io.read_volume`, any other file through
    :func:`xaikit.io.read_image`; a 2D image is refused (a 3D model explains volumes)."""
    from ..io import read_volume

    image = read_volume(path) if path.is_dir() or path.name.lower().endswith(_NIFTI) else read_image(path)
    if not image.is_volume:
        raise ImageReadError(f"{path} holds a 2-D image of shape {image.shape}, not a volume; a 3D model explains "
                             "volumes (NIfTI files, multi-frame DICOM files, DICOM series folders).")
    return image


def _folder_id(folder: Path) -> str:
    """The content id of a series folder: the hash of its files' names and bytes, in sorted order."""
    parts = [f"{p.name}:{content_id(p)}" for p in sorted(folder.iterdir()) if p.is_file()]
    return content_id("\n".join(parts).encode())


def load_volume_items(sources: Sequence[Source], *, skip_bad: bool = False,
                      progress: bool = True) -> tuple[list[Item], list[tuple[Path, str]]]:
    """Read every source as one volume (:func:`xaikit.io.read_volume`); returns ``(items, bad)`` like
    :func:`load_items` (a 2D image is a bad input for a 3D model)."""
    items: list[Item] = []
    bad: list[tuple[Path, str]] = []
    for src in tqdm(sources, desc="read", unit="volume", disable=not progress):
        try:
            volume = _read_volume(src.path)
        except XaikitError as exc:
            bad.append((src.path, str(exc)))
            continue
        sha = _folder_id(src.path) if src.path.is_dir() else content_id(src.path)
        items.append(Item(f"{len(items):05d}_{sha}", sha, sha, None, volume, src.label, volume.modality))
    return _finish(items, bad, sources, skip_bad)
