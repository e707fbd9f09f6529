"""Raster images (PNG, JPEG, TIFF) through Pillow, and ``.npy`` arrays through numpy.

Raster files carry no physical pixel size xaikit can trust (DPI tags describe printing, not anatomy),
so their spacing is ``(1.0, 1.0)`` with ``meta["spacing_unit"] == "pixel"``. Pixel values are the
stored values (0-255 for 8-bit, 0-65535 for 16-bit), not rescaled.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .._util import atomic_path
from ..errors import ArgumentError, ImageReadError, ImageWriteError, XaikitError
from ._common import MAX_VOXELS, check_rgb, check_voxels, checked_pixels, existing_file, rgb_to_gray
from .image import MedicalImage

__all__ = ["read_raster", "read_npy", "write_png"]

# Pillow modes holding one grey channel, with the bit depth they store.
_GRAY_MODES = {"1": 1, "L": 8, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}


def read_raster(path: str | os.PathLike, *, frame: int | None = None, rgb: str = "gray",
                max_voxels: int | None = None) -> MedicalImage:
    """Read a PNG, JPEG or TIFF file (8- or 16-bit grey, RGB, RGBA, palette) into a :class:`MedicalImage`.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    frame : int, optional
        For a multi-page TIFF (or animated PNG), the page to read; by default all pages are stacked
        into a ``(D, H, W)`` volume.
    rgb : {"gray", "keep"}
        ``"gray"`` converts colour to luminance ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, alpha
        ignored); ``"keep"`` returns a colour image channels-first as ``(3, H, W)`` with
        ``meta["channels"] == "RGB"`` (not a volume: its first axis is the colour). Grey files are
        ``(H, W)`` either way.
    max_voxels : int, optional
        Refuse files whose pages together claim more pixels than this (default 2**29), checked from the
        page headers before any page is decoded: a small multi-page TIFF can claim gigabytes. Pillow's own
        decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) applies to each page as well.

    Returns
    -------
    MedicalImage
        ``modality="OT"``; ``meta`` holds ``format``, ``mode``, ``bit_depth``, ``rows``, ``columns``,
        ``photometric``, ``n_frames``, ``spacing_unit``.

    Examples
    --------
    >>> img = read_raster("chest.png")  # doctest: +SKIP
    >>> img.array.shape, img.meta["bit_depth"]  # doctest: +SKIP
    ((224, 224), 8)
    """
    path = existing_file(path)
    check_rgb(rgb)
    try:
        with Image.open(path) as img:
            fmt = img.format
            mode = img.mode
            n_frames = int(getattr(img, "n_frames", 1))
            _check_pages(img, frame, n_frames, path, max_voxels)
            arrays = [_page_pixels(page, rgb) for page in _pages(img, frame, n_frames, path)]
    except XaikitError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {exc} The file claims more pixels than Pillow decodes by default (a "
                             "decompression bomb, or a truly huge image). If you trust it, raise "
                             "PIL.Image.MAX_IMAGE_PIXELS before reading.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, EOFError,
            struct.error, zlib.error) as exc:
        # Pillow reports truncated/corrupt files with these (TypeError "Missing dimensions" for a TIFF page
        # without size tags, struct.error for short tag data: found by tests/test_fuzz_readers.py).
        raise ImageReadError(f"{path}: cannot be decoded as a raster image ({exc}). "
                             "Is the file complete and of the type its extension says?") from exc
    colour = arrays[0].ndim == 3
    if len({a.shape for a in arrays}) > 1:
        raise ImageReadError(f"{path}: its {n_frames} pages differ in size; read one with frame=.")
    if colour and len(arrays) > 1:
        raise ImageReadError(f"{path}: a multi-page colour image cannot be kept as RGB; "
                             "use rgb='gray' or pick a page with frame=.")
    array = arrays[0] if len(arrays) == 1 else np.stack(arrays)
    pixels = checked_pixels(array, path)
    bit_depth = _GRAY_MODES.get(mode, 8)
    meta = {
        "format": fmt, "mode": mode, "bit_depth": bit_depth, "rows": int(pixels.shape[-2]),
        "columns": int(pixels.shape[-1]), "photometric": "RGB" if mode not in _GRAY_MODES else "MONOCHROME2",
        "n_frames": n_frames, "spacing_unit": "pixel",
    }
    if colour:
        meta["channels"] = "RGB"
    window = (127.5, 255.0) if bit_depth == 8 else None
    return MedicalImage(pixels, window=window, modality="OT", meta=meta, source=path)


def _check_pages(img: Image.Image, frame: int | None, n_frames: int, path: Path, max_voxels: int | None) -> None:
    """Sum the pixels every page to be read claims (headers only) and refuse more than the limit."""
    if frame is not None and not 0 <= frame < n_frames:
        raise ArgumentError(f"frame={frame} is out of range for {path}, which has {n_frames} page(s).")
    limit = MAX_VOXELS if max_voxels is None else int(max_voxels)
    total = 0
    for index in ([frame] if frame is not None else range(n_frames)):
        img.seek(index)
        total += img.size[0] * img.size[1] * max(len(img.getbands()), 1)
        if total > limit:
            raise ImageReadError(f"{path}: its {n_frames} page(s) claim over {limit:,} pixel values (page "
                                 f"{index} of {img.size[0]} x {img.size[1]} reaches {total:,}); a decompression "
                                 "bomb or a damaged file. Read one page with frame=, or pass max_voxels= if you "
                                 "trust the file.")
    img.seek(0)


def _pages(img: Image.Image, frame: int | None, n_frames: int, path: Path):
    """The pages to read, one at a time (a generator: only one decoded page is held besides its array)."""
    for index in ([frame] if frame is not None else range(n_frames)):
        img.seek(index)
        yield img


def _page_pixels(page: Image.Image, rgb: str) -> np.ndarray:
    """One page as an array: grey modes as stored, colour as luminance or channels-first RGB."""
    if page.mode in _GRAY_MODES:
        return np.asarray(page)
    if page.mode in ("LA", "La", "I;16LA"):
        return np.asarray(page.getchannel(0))
    rgb_pixels = np.asarray(page.convert("RGB"))
    if rgb == "keep":
        return np.moveaxis(rgb_pixels, -1, 0)
    return rgb_to_gray(rgb_pixels)


def read_npy(path: str | os.PathLike, *, max_voxels: int | None = None) -> MedicalImage:
    """Read a ``.npy`` array (2D ``(H, W)`` or 3D ``(D, H, W)``, numeric) as a :class:`MedicalImage`.

    Loaded with ``allow_pickle=False``: an object array is refused rather than unpickled. The header's
    shape is checked against ``max_voxels`` (default 2**29) and the file's length before loading.
    """
    path = existing_file(path)
    _check_npy_header(path, max_voxels)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ImageReadError(f"{path}: cannot be loaded as a numeric .npy array ({exc}). Object arrays "
                             "are refused (allow_pickle=False); save a numeric array with numpy.save.") from exc
    if not isinstance(array, np.ndarray):
        raise ImageReadError(f"{path}: holds a {type(array).__name__}, not a single array.")
    pixels = checked_pixels(array, path)
    meta = {"format": "NPY", "dtype": str(array.dtype), "rows": int(pixels.shape[-2]),
            "columns": int(pixels.shape[-1]), "spacing_unit": "pixel"}
    return MedicalImage(pixels, modality="OT", meta=meta, source=path)


def _check_npy_header(path: Path, max_voxels: int | None) -> None:
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(fh)
            offset = fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise ImageReadError(f"{path}: not a valid .npy file ({exc}). Save the array with numpy.save.") from exc
    check_voxels(path, shape, max_voxels, what="array")
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if dtype.kind != "O" and path.stat().st_size < needed:
        raise ImageReadError(f"{path}: the header claims a {dtype} array of shape {shape} ({needed:,} bytes), but "
                             f"the file holds {path.stat().st_size:,}; it is truncated. Save it again.")


def write_png(
    image: MedicalImage | np.ndarray,
    path: str | os.PathLike,
    *,
    bits: int = 8,
    window: tuple[float, float] | None = None,
) -> Path:
    """Write a 2D image as a greyscale PNG through a display window, atomically.

    Parameters
    ----------
    image : MedicalImage or numpy.ndarray
        A 2D image (a volume must be sliced first). An array is wrapped in a :class:`MedicalImage`.
    path : str or os.PathLike
        Destination file (``.png``).
    bits : {8, 16}
        Bit depth of the PNG.
    window : (center, width), optional
        Display window mapped linearly onto ``[0, 2**bits - 1]`` (default: ``image.window``).
        ``window=(127.5, 255)`` writes 8-bit data in 0..255 unchanged.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if bits not in (8, 16):
        raise ArgumentError(f"bits={bits!r} must be 8 or 16.")
    image = image if isinstance(image, MedicalImage) else MedicalImage(np.asarray(image))
    if image.ndim != 2:
        raise ArgumentError(f"write_png needs a 2D image; got shape {image.shape}. Pick a slice first, "
                            "e.g. MedicalImage(image.array[k], spacing=image.spacing[1:]).")
    if not np.isfinite(image.array).all():
        raise ArgumentError(f"{path}: the image holds {int((~np.isfinite(image.array)).sum())} NaN/infinite values, "
                            "which a PNG cannot store (they would silently become 0); replace them first.")
    top = 2**bits - 1
    levels = np.rint(image.display(window).astype(np.float64) * top)
    pixels = levels.astype(np.uint8 if bits == 8 else np.uint16)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
    except OSError as exc:
        raise ImageWriteError(f"{path}: could not write the PNG ({exc}).") from exc
    return path
