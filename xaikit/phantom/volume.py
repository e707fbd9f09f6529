"""A simple 3D chest-like phantom in Hounsfield units with an integer label map (for NIfTI samples)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ArgumentError

__all__ = ["VOLUME_LABELS", "VolumePhantom", "draw_volume"]

#: Label values of :attr:`VolumePhantom.labels` and their names.
VOLUME_LABELS = {0: "background", 1: "body", 2: "right_lung", 3: "left_lung", 4: "heart", 5: "spine", 6: "lesion"}

_HU = {0: -1000.0, 1: 30.0, 2: -840.0, 3: -840.0, 4: 45.0, 5: 450.0, 6: -120.0}

# Field of view in mm along (superior-inferior, anterior-posterior, right-left).
_FOV_MM = (300.0, 320.0, 400.0)


@dataclass
class VolumePhantom:
    """A chest-like CT volume and its label map.

    Axes are ``(D, H, W)`` = (superior to inferior, anterior to posterior, patient right to left): an
    axial slice ``image[k]`` shows the patient's left on the image right, anterior up, as radiology does.

    Attributes
    ----------
    image : numpy.ndarray
        float32 ``(D, H, W)`` in Hounsfield units (air -1000, lung about -840, soft tissue 30-45, bone 450).
    labels : numpy.ndarray
        int16 ``(D, H, W)``; values are the keys of ``names``.
    names : dict of int to str
        Label value to structure name (:data:`VOLUME_LABELS`).
    spacing : tuple of float
        Voxel size in mm along ``(D, H, W)``.
    meta : dict
        Seed and the parameters drawn.
    """

    image: np.ndarray
    labels: np.ndarray
    names: dict[int, str]
    spacing: tuple[float, float, float]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def affine(self) -> np.ndarray:
        """4 x 4 voxel ``(d, h, w)`` to world RAS (mm) matrix, for writing the arrays as NIfTI unchanged.

        Going down ``d`` is inferior (-S), down ``h`` posterior (-A), down ``w`` towards the patient's left
        (-R); the volume is centred on the origin.
        """
        sd, sh, sw = self.spacing
        aff = np.zeros((4, 4))
        aff[0, 2], aff[1, 1], aff[2, 0], aff[3, 3] = -sw, -sh, -sd, 1.0
        aff[:3, 3] = -aff[:3, :3] @ ((np.array(self.labels.shape) - 1) / 2)
        return aff


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    axes = [(np.arange(n) + 0.5) / n * 2 - 1 for n in shape]
    return np.meshgrid(*axes, indexing="ij")


def _ellipsoid(z, y, x, centre, radii) -> np.ndarray:
    return sum(((c - m) / r) ** 2 for c, m, r in zip((z, y, x), centre, radii)) <= 1.0


def _draw_params(rng: np.random.Generator) -> dict[str, float]:
    u = rng.uniform
    return {
        "body_rx": u(0.82, 0.92), "body_ry": u(0.58, 0.68), "lung_rx": u(0.30, 0.36), "lung_ry": u(0.40, 0.48),
        "lung_rz": u(0.70, 0.80), "dome_r": u(0.30, 0.40), "dome_gap": u(0.05, 0.12), "heart_r": u(0.24, 0.30),
        "heart_x": u(0.08, 0.16), "lesion_r": u(0.10, 0.16), "lesion_side": float(rng.integers(2)),
    }  # fmt: skip


def _labels(shape: tuple[int, int, int], p: dict[str, float], rng: np.random.Generator, lesion: bool) -> np.ndarray:
    z, y, x = _grid(shape)
    out = np.zeros(shape, np.int16)
    out[(x / p["body_rx"]) ** 2 + (y / p["body_ry"]) ** 2 <= 1.0] = 1
    for value, side in ((2, -1.0), (3, 1.0)):  # right lung at small x (image left), lower dome on the left
        dome = p["dome_r"] + (p["dome_gap"] if side > 0 else 0.0) + 0.5 * (x - side * 0.4) ** 2
        lung = _ellipsoid(z, y, x, (-0.1, 0.05, side * 0.42), (p["lung_rz"], p["lung_ry"], p["lung_rx"]))
        out[lung & (z <= dome)] = value
    out[_ellipsoid(z, y, x, (0.3, -0.22, p["heart_x"]), (p["heart_r"], 0.85 * p["heart_r"], 1.2 * p["heart_r"]))] = 4
    out[(x / 0.11) ** 2 + ((y - 0.47) / 0.11) ** 2 <= 1.0] = 5
    if lesion:
        _add_lesion(out, (z, y, x), p, rng)
    return out


def _add_lesion(out: np.ndarray, grid: tuple[np.ndarray, ...], p: dict[str, float], rng: np.random.Generator) -> None:
    value = 3 if p["lesion_side"] else 2
    core = np.argwhere(ndimage.binary_erosion(out == value, iterations=max(1, min(out.shape) // 16)))
    core = core if len(core) else np.argwhere(out == value)
    cz, cy, cx = core[rng.integers(len(core))]
    z, y, x = grid
    centre = (z[cz, cy, cx], y[cz, cy, cx], x[cz, cy, cx])
    out[_ellipsoid(z, y, x, centre, (p["lesion_r"],) * 3) & (out == value)] = 6


def draw_volume(seed: int, *, shape: tuple[int, int, int] = (48, 64, 64), lesion: bool = True) -> VolumePhantom:
    """Draw a chest-like CT volume with body, lungs, heart, spine and (optionally) a lesion.

    Parameters
    ----------
    seed : int
        Seed of every random choice; the same seed gives a bit-identical volume.
    shape : tuple of int
        ``(D, H, W)``, each at least 16.
    lesion : bool
        Put a rounded opacity (label 6) in one lung.

    Returns
    -------
    VolumePhantom

    Examples
    --------
    >>> from xaikit.phantom import draw_volume
    >>> vol = draw_volume(0, shape=(24, 32, 32))
    >>> vol.image.shape, sorted(vol.names) == sorted(set(vol.labels.ravel().tolist()))
    ((24, 32, 32), True)
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArgumentError(f"seed must be a non-negative int; got {seed!r}.")
    if len(shape) != 3 or any(not isinstance(s, (int, np.integer)) or s < 16 for s in shape):
        raise ArgumentError(f"shape must be three ints >= 16 (D, H, W); got {shape!r}.")
    rng = np.random.default_rng([int(seed), 3])
    params = _draw_params(rng)
    labels = _labels(tuple(int(s) for s in shape), params, rng, lesion)
    hu = np.array([_HU[k] for k in sorted(_HU)])[labels]
    image = ndimage.gaussian_filter(hu, 0.7) + rng.normal(0.0, 12.0, labels.shape)
    names = {k: v for k, v in VOLUME_LABELS.items() if lesion or k != 6}
    spacing = tuple(float(f / s) for f, s in zip(_FOV_MM, shape))
    meta = {"seed": int(seed), "lesion": bool(lesion), "params": params}
    return VolumePhantom(image.astype(np.float32), labels, names, spacing, meta)
