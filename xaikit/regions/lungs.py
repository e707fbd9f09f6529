"""Automatic lung masks for radiographs that have none: a classical baseline and a plug-in registry.

``segment_lungs(image)`` runs a segmenter from :data:`SEGMENTERS` (default ``"classical"``) and returns a
:class:`LungSegmentation` with both masks, a quality score in [0, 1] and the reasons it is unsure. A
learned segmenter plugs in with the decorator::

    @register_segmenter("my_unet")
    def my_unet(image: np.ndarray, **kw) -> LungSegmentation: ...

The classical baseline (thresholding and morphology, in the spirit of Armato et al. 1998 and the
"two largest dark components inside the body" heuristic) uses scikit-image throughout. Convention: the
patient's left lung appears on the image's right (radiological display), as in :mod:`xaikit.phantom`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._registry import Registry
from ..errors import ArgumentError
from .regionset import as_numpy

__all__ = ["LungSegmentation", "SEGMENTERS", "register_segmenter", "segment_lungs", "dice", "lung_quality"]

#: Segmenters by name: ``f(image: 2D float array, **kw) -> LungSegmentation``.
SEGMENTERS: Registry[Callable[..., "LungSegmentation"]] = Registry("lung segmenter")

_WORK_SIDE = 256          # segmentation runs on a copy whose long side is this many pixels
_QUALITY_WARN = 0.6       # below this the result is flagged as unsure


@dataclass
class LungSegmentation:
    """Lung masks of one radiograph (patient's left lung on the image's right).

    Attributes
    ----------
    left, right : numpy.ndarray
        Boolean ``H x W`` masks at the input resolution.
    quality : float
        Plausibility in [0, 1] (area, symmetry, convexity and vertical overlap of the two lungs).
    warnings : list of str
        Why the result may be wrong (empty when the segmenter is confident).
    method : str
        Name of the segmenter that produced it.
    """

    left: np.ndarray
    right: np.ndarray
    quality: float
    warnings: list[str] = field(default_factory=list)
    method: str = ""

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """``{"left_lung": ..., "right_lung": ...}``, ready for :func:`xaikit.regions.lung_zones`."""
        return {"left_lung": self.left, "right_lung": self.right}


def register_segmenter(name: str) -> Callable[[Callable[..., LungSegmentation]], Callable[..., LungSegmentation]]:
    """Decorator adding a lung segmenter to :data:`SEGMENTERS` under ``name``."""
    return SEGMENTERS.register(name)


def segment_lungs(image: Any, method: str = "classical", **kwargs: Any) -> LungSegmentation:
    """Segment both lungs of a frontal chest radiograph.

    Parameters
    ----------
    image
        ``H x W`` array (bright = dense, as displayed), a :class:`xaikit.io.MedicalImage` (its display
        window is applied) or a ``1 x H x W`` tensor.
    method
        A key of :data:`SEGMENTERS`.
    **kwargs
        Passed to the segmenter.

    Returns
    -------
    LungSegmentation
        A warning is also emitted when ``quality`` is below 0.6 or the segmenter reports a problem.

    Examples
    --------
    >>> from xaikit.phantom import draw_chest
    >>> ph = draw_chest(3, size=128)
    >>> seg = segment_lungs(ph.image)
    >>> dice(seg.left, ph.masks["left_lung"]) > 0.85
    True
    """
    result = SEGMENTERS.lookup(method)(_as_plane(image), **kwargs)
    result.method = result.method or method
    if result.warnings:
        warnings.warn(f"segment_lungs ({method}) is unsure (quality {result.quality:.2f}): "
                      f"{'; '.join(result.warnings)}. Check the masks before using them.", stacklevel=2)
    return result


def _as_plane(image: Any) -> np.ndarray:
    if hasattr(image, "display") and hasattr(image, "array"):
        image = image.display()
    arr = as_numpy(image).astype(np.float64)
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = arr.mean(axis=0)
    if arr.ndim != 2 or min(arr.shape) < 16:
        raise ArgumentError(f"segment_lungs needs a 2D image of at least 16 x 16 pixels; got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ArgumentError("segment_lungs got an image with NaN or inf pixels.")
    return arr


def dice(a: Any, b: Any) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|) of two boolean masks (1.0 when both are empty)."""
    a, b = as_numpy(a).astype(bool), as_numpy(b).astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


# ------------------------------------------------------------------------------------- classical baseline
@register_segmenter("classical")
def classical(image: np.ndarray, smooth: float = 0.005, closing: float = 0.06) -> LungSegmentation:
    """Thresholds and morphology: body mask, dark air inside it, two largest components, holes filled.

    Two candidate body masks are tried and the more plausible result (:func:`lung_quality`) is kept:
    the tissue with its holes filled (exact on images with air all around the patient, such as the
    phantom), and the tissue's convex hull (for tightly cropped radiographs, where the lungs reach
    the frame's dark edge and so are not holes of the tissue). With the hull, thin bridges from the
    lungs to air outside the chest are cut by an opening before the lungs are picked and grown back.

    Parameters
    ----------
    image
        ``H x W`` float image, bright = dense.
    smooth
        Gaussian sigma as a fraction of the working side (suppresses noise and rib edges).
    closing
        Radius of the closing that bridges ribs and opacities, as a fraction of the working side.
    """
    from skimage.transform import resize

    work, scale = _working_copy(image)
    best = None
    for body, bridge in _candidate_bodies(_tissue(work)):
        air = _dark_inside(work, body, smooth)
        left, right, notes = _two_lungs(air, body, closing, bridge=bridge)
        quality, more = lung_quality(left, right)
        if best is None or quality > best[2] + 1e-9:
            best = (left, right, quality, notes + more)
    left, right, quality, notes = best
    up = [resize(m, image.shape, order=0, anti_aliasing=False) > 0.5 if scale != 1 else m for m in (left, right)]
    return LungSegmentation(up[0], up[1], quality, notes, "classical")


def _working_copy(image: np.ndarray) -> tuple[np.ndarray, float]:
    from skimage.transform import resize

    lo, hi = np.percentile(image, [0.5, 99.5])
    img = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    scale = _WORK_SIDE / max(img.shape)
    if scale < 1:
        img = resize(img, [max(16, round(s * scale)) for s in img.shape], anti_aliasing=True)
        return img, scale
    return img, 1.0


def _tissue(img: np.ndarray) -> np.ndarray:
    """The patient's largest connected piece of bright tissue (above Otsu's threshold)."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu
    from skimage.measure import label
    from skimage.morphology import disk

    tissue = img > threshold_otsu(img)
    tissue = ndimage.binary_opening(tissue, structure=disk(max(1, round(0.01 * max(img.shape)))))
    lab = label(tissue)
    if lab.max() == 0:
        return np.ones_like(tissue)
    return lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1


def _candidate_bodies(tissue: np.ndarray) -> tuple[tuple[np.ndarray, float], ...]:
    """The patient as ``(body mask, bridge)`` pairs: the tissue with its holes (lungs) filled, and that
    with the tissue's convex hull added, whose lungs may touch outside air through thin bridges."""
    from scipy import ndimage
    from skimage.morphology import convex_hull_image

    filled = ndimage.binary_fill_holes(_close_top(tissue))
    return (filled, 0.0), (filled | convex_hull_image(tissue), 0.025)


def _close_top(mask: np.ndarray) -> np.ndarray:
    """Close the body at the image edges so the lungs become holes even when they touch the frame."""
    out = mask.copy()
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size:
        out[0, cols[0]:cols[-1] + 1] = True
        out[-1, cols[0]:cols[-1] + 1] = True
    return out


def _dark_inside(img: np.ndarray, body: np.ndarray, smooth: float) -> np.ndarray:
    """Air inside the body: below Otsu's threshold of the smoothed body pixels."""
    from scipy import ndimage
    from skimage.filters import gaussian, threshold_otsu
    from skimage.morphology import disk

    sm = gaussian(img, sigma=max(0.5, smooth * max(img.shape)))
    inner = ndimage.binary_erosion(body, structure=disk(max(1, round(0.02 * max(img.shape)))))
    if inner.sum() < 16:
        return np.zeros_like(body)
    return (sm < threshold_otsu(sm[inner])) & inner


def _two_lungs(air: np.ndarray, body: np.ndarray, closing: float,
               bridge: float = 0.0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One air component per side of the body midline (the most lung-like one), smoothed, holes filled.

    Air touching the image frame is outside air (beside the neck and arms) and is left out; a
    component straddling the midline (lungs joined through the trachea) is cut there. With
    ``bridge > 0`` (a fraction of the side) an opening of that radius first cuts thin links between
    the lungs and outside air, and the picked component is grown back into the air it lost.
    """
    from scipy import ndimage
    from skimage.morphology import disk

    side = max(air.shape)
    air = ndimage.binary_opening(air, structure=disk(max(1, round(0.01 * side))))
    radius = max(1, round(bridge * side))
    cut = ndimage.binary_opening(air, structure=disk(radius)) if bridge > 0 else air
    cut = _drop_frame_touching(cut)
    mid = _midline(body)
    picked, notes = [], []
    for name, cols in (("right", slice(0, mid)), ("left", slice(mid, None))):
        half = np.zeros_like(cut)
        half[:, cols] = cut[:, cols]
        comp = _largest_central(half)
        if bridge > 0:
            comp = ndimage.binary_dilation(comp, structure=disk(radius)) & air
        if comp.sum() < 0.01 * air.size:
            notes.append(f"no plausible {name} lung (dark region inside the body) was found")
        picked.append(comp)
    radius = max(1, round(closing * side))
    smooth = [_close_fill(m, radius) & body for m in picked]
    smooth[0][:, mid:], smooth[1][:, :mid] = False, False
    return smooth[1], smooth[0], notes


def _drop_frame_touching(mask: np.ndarray) -> np.ndarray:
    from skimage.segmentation import clear_border

    return clear_border(mask)


def _midline(body: np.ndarray) -> int:
    cols = np.flatnonzero(body.any(axis=0))
    return int(round((cols[0] + cols[-1]) / 2)) if cols.size else body.shape[1] // 2


def _largest_central(half: np.ndarray) -> np.ndarray:
    """Largest component, areas weighted down by the distance of the centroid from where lungs sit:
    the image's centre rows, and a quarter of the width in from either side."""
    from skimage.measure import label, regionprops

    lab = label(half)
    h, w = half.shape
    best, best_score = np.zeros_like(half), 0.0
    for c in regionprops(lab):
        row, col = c.centroid[0] / h, c.centroid[1] / w
        side = min(abs(col - 0.27), abs(col - 0.73))
        score = (c.area * float(np.clip(1.0 - 2.0 * max(0.0, abs(row - 0.45) - 0.2), 0.1, 1.0))
                 * float(np.clip(1.0 - 3.0 * max(0.0, side - 0.12), 0.1, 1.0)))
        if score > best_score:
            best, best_score = lab == c.label, score
    return best


def _close_fill(mask: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage
    from skimage.morphology import disk

    padded = ndimage.binary_closing(np.pad(mask, radius), structure=disk(radius))
    return ndimage.binary_fill_holes(padded)[radius:-radius, radius:-radius]


def lung_quality(left: np.ndarray, right: np.ndarray) -> tuple[float, list[str]]:
    """Plausibility of two lung masks in [0, 1], and the reasons for a low score.

    The score is the geometric mean of six checks, each in [0, 1]: each lung covers 4-30 % of the
    image; the smaller lung is at least 55 % of the larger; each lung is convex enough (solidity, area
    over convex-hull area, at least 0.75); each lung spans at least 35 % of the image height; the lungs
    overlap vertically; each lung's centre lies 16-42 % of the width in from its side and the lung is
    at least 18 % of the width wide (a strip at the frame is air beside the chest, not a lung).
    """
    from skimage.measure import regionprops

    notes = []
    fracs = np.array([left.mean(), right.mean()])
    area = float(np.clip(np.minimum(fracs / 0.04, (0.45 - fracs) / 0.15), 0, 1).min())
    if area < 1:
        notes.append(f"lung areas {np.round(fracs * 100, 1).tolist()} % of the image are implausible")
    sym = float(min(1.0, (fracs.min() / fracs.max()) / 0.55)) if fracs.max() > 0 else 0.0
    if sym < 1:
        notes.append("the two lungs differ much in size")
    solid = [regionprops(m.astype(np.uint8))[0].solidity if m.any() else 0.0 for m in (left, right)]
    convex = float(np.clip(min(solid) / 0.75, 0, 1))
    if convex < 1:
        notes.append(f"ragged lung outline (solidity {min(solid):.2f})")
    heights = [np.flatnonzero(m.any(axis=1)).size / m.shape[0] for m in (left, right)]
    extent = float(np.clip(min(heights) / 0.35, 0, 1))
    if extent < 1:
        notes.append(f"a lung spans only {min(heights) * 100:.0f} % of the image height")
    overlap = _vertical_overlap(left, right)
    if overlap < 0.5:
        notes.append("the lungs hardly overlap vertically")
    place = _placement(left, right)
    if place < 1:
        notes.append("a lung sits too far out or is too narrow (air beside the chest taken for lung?)")
    score = float(np.prod([area, sym, convex, extent, min(1.0, overlap / 0.5), place]) ** (1 / 6))
    return score, notes if score < _QUALITY_WARN or area == 0 else []


def _vertical_overlap(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.flatnonzero(a.any(axis=1)), np.flatnonzero(b.any(axis=1))
    if not ra.size or not rb.size:
        return 0.0
    inter = min(ra[-1], rb[-1]) - max(ra[0], rb[0]) + 1
    return float(max(0, inter) / (max(ra[-1], rb[-1]) - min(ra[0], rb[0]) + 1))


def _placement(left: np.ndarray, right: np.ndarray) -> float:
    # thresholds from the phantom and 40 real radiographs: correct lungs had centres 0.22-0.38 of the
    # width in from their side and widths >= 0.20; strips of outside air had centres <= 0.15 or widths <= 0.12
    scores = []
    for mask, flip in ((right, False), (left, True)):
        if not mask.any():
            return 0.0
        w = mask.shape[1]
        centre = np.argwhere(mask)[:, 1].mean() / (w - 1)
        inward = 1.0 - centre if flip else centre
        width = np.flatnonzero(mask.any(axis=0)).size / w
        far = max(0.0, 0.16 - inward, inward - 0.42)
        scores.append(min(float(np.clip(1.0 - far / 0.06, 0, 1)), float(np.clip(width / 0.18, 0, 1))))
    return min(scores)
