"""Command-line inputs: files, folders (a DICOM series folder is a folder of slices), manifest CSVs.

Every input becomes :class:`Item` s, one per 2D plane the model sees. An item is named
``<running index>_<content hash>`` (``00003_9f2c41d0aa51b7e3``, plus ``_s012`` for slice 12 of a volume): the
hash is the SHA-256 of the file's bytes, so no output name, table or page carries a file name, folder name or
DICOM identifier, while the same file always gets the same hash (and hits the same disk-cache entries).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from ..errors import ArgumentError, ImageReadError, ManifestError, XaikitError
from ..inference import content_id, planes
from ..io import SUPPORTED_EXTENSIONS, image_format, read_image
from ..io.image import MedicalImage

__all__ = ["Source", "Item", "collect_sources", "load_items"]

_IMAGE_ENDINGS = tuple(e for endings in SUPPORTED_EXTENSIONS.values() for e in endings)


@dataclass(frozen=True)
class Source:
    """One image file to read (its path stays in memory, never in an output) and its label, if known."""

    path: Path
    label: int | None = None


@dataclass
class Item:
    """One 2D plane to predict/explain."""

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
    sources: list[Source] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            sources += _folder(path)
        elif path.is_file() and path.name.lower().endswith(".csv"):
            sources += _manifest(path, classes, manifest_root, trust_manifest)
        elif path.is_file():
            sources.append(Source(path))
        else:
            raise ImageReadError(f"INPUT {raw}: no such file or folder. Check the path "
                                 f"(relative paths start at {Path.cwd()}).")
    if not sources:
        raise ImageReadError(f"INPUT {', '.join(map(str, inputs))}: no image files found (looked for "
                             f"{', '.join(_IMAGE_ENDINGS)} and DICOM files without extension).")
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
    if bad and not skip_bad:
        listing = "\n".join(f"  {p}: {reason}" for p, reason in bad)
        raise ImageReadError(f"{len(bad)} of {len(sources)} input file(s) cannot be read:\n{listing}\n"
                             "Fix or remove them, or pass --skip-bad to explain the others.")
    if not items:
        raise ImageReadError("none of the inputs could be read; nothing to do.")
    return items, bad
