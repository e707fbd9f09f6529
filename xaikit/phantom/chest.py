"""Synthetic frontal chest radiographs with ground-truth masks: :func:`draw_chest`.

A phantom is drawn in four steps, each from its own random stream so that several images of one
"patient" share the anatomy but differ in everything else:

1. anatomy (:mod:`~xaikit.phantom.anatomy`, stream ``anatomy_seed``): body, lungs, heart, mediastinum,
   spine, ribs, clavicles, diaphragm, bronchovascular markings;
2. pose and breath-hold (stream ``seed``): rotation, shift, scale, diaphragm level;
3. disease (:mod:`~xaikit.phantom.lesion`): patchy opacities inside the lungs for pneumonia;
4. acquisition: detector blur, quantum (Poisson) noise, exposure and display curve, and optionally a
   burned-in corner tag (:mod:`~xaikit.phantom.marker`), the hospital-token shortcut.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ArgumentError
from .anatomy import anatomy_density, anatomy_masks, draw_anatomy, draw_vessel_tree
from .lesion import draw_lesion
from .marker import MARKER_CORNERS, burn_marker

__all__ = ["MASK_NAMES", "ChestPhantom", "draw_chest"]

#: Names of the masks every :class:`ChestPhantom` carries (patient-left lung appears on the image right).
MASK_NAMES = ("left_lung", "right_lung", "heart", "lesion", "marker", "body")


@dataclass
class ChestPhantom:
    """One synthetic chest radiograph and its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        float32 ``(H, W)`` in [0, 1], bright = dense, as a radiograph is displayed.
    masks : dict of str to numpy.ndarray
        Boolean ``(H, W)`` masks named in :data:`MASK_NAMES`; ``lesion`` and ``marker`` are all False
        when absent.
    label : int
        0 normal, 1 pneumonia.
    meta : dict
        Seeds, flags and every parameter drawn (plain JSON-able types).
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    label: int
    meta: dict[str, Any] = field(default_factory=dict)


def _check_args(seed: int, size: int, marker_corner: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArgumentError(f"seed must be a non-negative int; got {seed!r}.")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ArgumentError(f"size must be an int >= 32 (pixels per side); got {size!r}.")
    if marker_corner not in MARKER_CORNERS:
        raise ArgumentError(f"marker_corner must be one of {MARKER_CORNERS}; got {marker_corner!r}.")


def _draw_pose(rng: np.random.Generator) -> dict[str, float]:
    return {
        "rotation_deg": float(rng.uniform(-4.0, 4.0)),
        "shift_x": float(rng.uniform(-0.04, 0.04)),
        "shift_y": float(rng.uniform(-0.04, 0.04)),
        "scale": float(rng.uniform(0.94, 1.04)),
        "diaphragm_lift": float(rng.uniform(-0.04, 0.04)),
    }


def _draw_exposure(rng: np.random.Generator) -> dict[str, float]:
    return {
        "photons": float(np.exp(rng.uniform(np.log(700.0), np.log(5000.0)))),
        "blur_px": float(rng.uniform(0.4, 0.9)),
        "level": float(rng.uniform(-0.05, 0.05)),
        "contrast": float(rng.uniform(0.85, 1.15)),
        "gamma": float(rng.uniform(0.8, 1.25)),
    }


def _patient_grid(size: int, pose: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Patient coordinates ``(u, v)`` of every pixel: the inverse of the pose transform."""
    centre = (np.arange(size) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(centre, centre, indexing="ij")
    x, y = (x - pose["shift_x"]) / pose["scale"], (y - pose["shift_y"]) / pose["scale"]
    t = np.deg2rad(pose["rotation_deg"])
    return np.cos(t) * x + np.sin(t) * y, -np.sin(t) * x + np.cos(t) * y


def _to_pixels(tree: np.ndarray, size: int, pose: dict[str, float]) -> np.ndarray:
    """Map segments ``(u0, v0, u1, v1, g)`` from patient coordinates to ``(col0, row0, col1, row1, g)``."""
    t = np.deg2rad(pose["rotation_deg"])
    out = tree.copy()
    for k in (0, 2):
        u, v = tree[:, k], tree[:, k + 1]
        x = pose["scale"] * (np.cos(t) * u - np.sin(t) * v) + pose["shift_x"]
        y = pose["scale"] * (np.sin(t) * u + np.cos(t) * v) + pose["shift_y"]
        out[:, k], out[:, k + 1] = (x + 1) / 2 * size - 0.5, (y + 1) / 2 * size - 0.5
    return out


def _expose(density: np.ndarray, exp: dict[str, float], rng: np.random.Generator, px_blur: float) -> np.ndarray:
    """Radiograph from attenuation: blur, Poisson photon counts, log, display curve."""
    mu = 2.5
    density = ndimage.gaussian_filter(np.clip(density, 0, None), px_blur)
    counts = rng.poisson(exp["photons"] * np.exp(-mu * density))
    measured = -np.log(np.maximum(counts, 0.5) / exp["photons"]) / mu
    return _film_curve(measured, exp).astype(np.float32)


def _film_curve(density: np.ndarray, exp: dict[str, float]) -> np.ndarray:
    """Characteristic (H&D-like) curve: sigmoid of density, scaled to [0, 1], then contrast and gamma."""
    centre, width = 0.80 + exp["level"], 0.31 / exp["contrast"]
    lo, hi = 1 / (1 + np.exp(centre / width)), 1 / (1 + np.exp(-(2.0 - centre) / width))
    shown = (1 / (1 + np.exp(-(density - centre) / width)) - lo) / (hi - lo)
    return np.clip(shown, 0, 1) ** exp["gamma"]


def draw_chest(
    seed: int,
    *,
    size: int = 224,
    pneumonia: bool = False,
    marker: bool = False,
    marker_corner: str = "top_right",
    anatomy_seed: int | None = None,
) -> ChestPhantom:
    """Draw one synthetic frontal chest radiograph with its ground-truth masks.

    Parameters
    ----------
    seed : int
        Seed of everything that varies between images: pose, breath-hold, lesions, exposure, noise,
        marker placement. The same arguments give a bit-identical phantom.
    size : int
        Side of the square image in pixels (>= 32).
    pneumonia : bool
        Add patchy opacities inside one or both lungs (``label`` 1, non-empty ``lesion`` mask).
    marker : bool
        Burn a bright corner tag with a letter glyph into the image (the ``marker`` mask).
    marker_corner : {"top_left", "top_right", "bottom_left", "bottom_right"}
        Corner of the tag.
    anatomy_seed : int, optional
        Seed of the patient's anatomy; defaults to ``seed``. Images sharing it show the same patient.

    Returns
    -------
    ChestPhantom

    Examples
    --------
    >>> from xaikit.phantom import draw_chest
    >>> ph = draw_chest(7, size=64, pneumonia=True, marker=True)
    >>> ph.image.shape, ph.label, bool(ph.masks["lesion"].any()), bool(ph.masks["marker"].any())
    ((64, 64), 1, True, True)
    """
    _check_args(seed, size, marker_corner)
    anatomy_seed = seed if anatomy_seed is None else anatomy_seed
    _check_args(anatomy_seed, size, marker_corner)
    anatomy = draw_anatomy(np.random.default_rng([int(anatomy_seed), 0]))
    tree = draw_vessel_tree(np.random.default_rng([int(anatomy_seed), 2]), anatomy)
    rng = np.random.default_rng([int(seed), 1])
    pose, exposure = _draw_pose(rng), _draw_exposure(rng)
    u, v = _patient_grid(size, pose)
    px = 2.0 / size / pose["scale"]
    masks = anatomy_masks(u, v, anatomy, lift=pose["diaphragm_lift"])
    density = anatomy_density(u, v, anatomy, masks, px, _to_pixels(tree, size, pose))
    lesion = {"n_patches": 0}
    masks["lesion"] = np.zeros((size, size), bool)
    if pneumonia:
        extra, masks["lesion"], lesion = draw_lesion(rng, u, v, masks, anatomy.air, px)
        density = density + extra
    image = _expose(density, exposure, rng, exposure["blur_px"] * size / 224)
    tag = {"corner": None}
    masks["marker"] = np.zeros((size, size), bool)
    if marker:
        image, masks["marker"], tag = burn_marker(rng, image, marker_corner)
    meta = {
        "seed": int(seed), "anatomy_seed": int(anatomy_seed), "size": int(size), "pneumonia": bool(pneumonia),
        "marker": bool(marker), "anatomy": anatomy.to_dict(), "pose": pose, "exposure": exposure,
        "lesion": lesion, "marker_tag": tag,
    }  # fmt: skip
    return ChestPhantom(image, {k: masks[k] for k in MASK_NAMES}, int(pneumonia), meta)
