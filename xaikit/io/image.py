"""The :class:`MedicalImage` container: pixels in physical units plus the geometry and display facts."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArgumentError

__all__ = ["MedicalImage"]


@dataclass
class MedicalImage:
    """A 2D image or 3D volume in physical units, ready for display and for a dataset.

    Attributes
    ----------
    array : numpy.ndarray
        float32 pixels after the modality LUT (e.g. Hounsfield units for CT), shape ``(H, W)`` or
        ``(D, H, W)``. Photometric interpretation is already handled: larger values are brighter
        (MONOCHROME1 is inverted on read).
    spacing : tuple of float
        Pixel/voxel size in mm, one entry per axis of ``array`` (``(row, col)`` or ``(slice, row, col)``).
    window : tuple of float
        Default display window ``(center, width)`` in the units of ``array``.
    affine : numpy.ndarray or None
        4x4 voxel-to-world (RAS, mm) matrix for volumes read from NIfTI; ``None`` where not known.
    modality : str
        DICOM modality (``"CT"``, ``"MR"``, ``"CR"``, ``"DX"``, ...) or ``"OT"`` when unknown.
    meta : dict
        De-identified metadata (no patient identifiers unless the reader was asked for them).
    source : pathlib.Path or None
        The file the image was read from.
    """

    array: np.ndarray
    spacing: tuple[float, ...] = ()
    window: tuple[float, float] | None = None
    affine: np.ndarray | None = None
    modality: str = "OT"
    meta: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim not in (2, 3):
            raise ArgumentError(
                f"MedicalImage.array must be 2D (H, W) or 3D (D, H, W); got shape {arr.shape}. "
                "Select a frame/volume or squeeze singleton axes first."
            )
        if arr.size == 0:
            raise ArgumentError(f"MedicalImage.array is empty (shape {arr.shape}).")
        self.array = arr.astype(np.float32, copy=False)
        if not self.spacing:
            self.spacing = (1.0,) * arr.ndim
        self.spacing = tuple(float(s) for s in self.spacing)
        if len(self.spacing) != arr.ndim:
            raise ArgumentError(f"MedicalImage.spacing {self.spacing} must have {arr.ndim} entries, one per axis.")
        if self.window is None:
            self.window = _auto_window(self.array)
        self.window = (float(self.window[0]), float(self.window[1]))
        if self.source is not None:
            self.source = Path(self.source)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def is_volume(self) -> bool:
        return self.array.ndim == 3

    def display(self, window: tuple[float, float] | None = None) -> np.ndarray:
        """Pixels mapped to ``[0, 1]`` through a linear window ``(center, width)`` (default: :attr:`window`).

        Follows the DICOM linear VOI function (PS3.3 C.11.2.1.2) without the half-pixel offsets.
        """
        center, width = self.window if window is None else window
        width = max(float(width), 1e-12)
        lo = center - width / 2.0
        return np.clip((self.array - lo) / width, 0.0, 1.0).astype(np.float32)

    def __repr__(self) -> str:
        src = self.source.name if self.source is not None else None
        return (
            f"MedicalImage(shape={self.shape}, spacing={self.spacing}, modality={self.modality!r}, "
            f"window=({self.window[0]:.4g}, {self.window[1]:.4g}), source={src!r})"
        )


#: Pixels beyond which the default window is computed on an evenly strided sample (see :func:`_auto_window`).
WINDOW_SAMPLE = 2**22


def _auto_window(array: np.ndarray) -> tuple[float, float]:
    """A robust default window: the 0.5-99.5 percentile range of the finite pixels.

    Above :data:`WINDOW_SAMPLE` pixels, of an evenly strided sample of that many: the exact percentiles of an 800^3
    volume copied it twice more (mask, then partition), 1 GiB each, for a display setting.
    """
    flat = array.reshape(-1)
    if flat.size > WINDOW_SAMPLE:
        flat = flat[:: -(-flat.size // WINDOW_SAMPLE)]
    finite = flat[np.isfinite(flat)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    width = float(hi - lo) if hi > lo else 1.0
    return (float(lo + width / 2.0), width)
