"""Builders of :class:`RegionSet`: grids, dataset masks, lung zones, label maps, boxes and polygons.

Every builder accepts one image (``H x W`` masks, giving a shared set) or a batch (``N x H x W``
masks, giving a per-image set), so regions built from each image's own anatomy follow that image.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import RegionError
from ..io import read_image
from .regionset import RegionSet, _stack_named, as_numpy

__all__ = ["grid", "from_masks", "lung_zones", "chest_partition", "from_labelmap", "boxes", "face_boxes",
           "FACE_PARSING_LABELS", "FACE_REGIONS", "polygons"]


def grid(rows: int, cols: int, shape: Sequence[int], names: Sequence[str] | None = None) -> RegionSet:
    """A shared ``rows x cols`` grid of rectangles over an ``(H, W)`` image.

    Cell edges sit at multiples of ``H // rows`` and ``W // cols``; the last row and column take the
    remainder. ``grid(1, 3, (224, 224))`` gives the vertical thirds of the seed notebook (columns
    0-73, 74-147, 148-223). A fixed grid only means the same anatomy in every image when the images
    were aligned and never randomly cropped — prefer :func:`lung_zones` for radiographs.

    Examples
    --------
    >>> grid(1, 3, (6, 6)).names
    ('col0', 'col1', 'col2')
    """
    if rows < 1 or cols < 1:
        raise RegionError(f"grid needs rows >= 1 and cols >= 1; got rows={rows}, cols={cols}.")
    h, w = (int(s) for s in shape)
    if h < rows or w < cols:
        raise RegionError(f"A {rows} x {cols} grid does not fit an image of shape {(h, w)}.")
    r_edges = [i * (h // rows) for i in range(rows)] + [h]
    c_edges = [j * (w // cols) for j in range(cols)] + [w]
    masks = np.zeros((rows * cols, h, w), dtype=bool)
    default = []
    for i in range(rows):
        for j in range(cols):
            masks[i * cols + j, r_edges[i]:r_edges[i + 1], c_edges[j]:c_edges[j + 1]] = True
            default.append(f"col{j}" if rows == 1 else f"row{i}" if cols == 1 else f"row{i}_col{j}")
    return RegionSet(names if names is not None else default, masks)


def from_masks(masks: Mapping[str, Any] | Sequence[Mapping[str, Any]],
               names: Sequence[str] | None = None) -> RegionSet:
    """A region set from named masks: ``{name: H x W}`` (shared), ``{name: N x H x W}`` (per image),
    a collated dataset batch (``batch["masks"]``) or a list of dataset samples.

    Parameters
    ----------
    masks
        The masks, or a batch/sample list whose ``"masks"`` entries hold them (already through the
        dataset's Preprocess, so they are aligned with the images).
    names
        Regions to keep, in order (default: all).
    """
    if isinstance(masks, Mapping) and "masks" in masks and isinstance(masks["masks"], Mapping):
        masks = masks["masks"]
    elif not isinstance(masks, Mapping):
        samples = list(masks)
        if not samples or not all(isinstance(s, Mapping) and "masks" in s for s in samples):
            raise RegionError("from_masks needs {name: mask}, a collated batch or a list of samples "
                              "with a 'masks' entry.")
        keys = [list(s["masks"]) for s in samples]
        if any(k != keys[0] for k in keys):
            raise RegionError(f"Samples carry different mask names ({sorted({tuple(k) for k in keys})}); "
                              "every image needs the same regions.")
        masks = {n: np.stack([as_numpy(s["masks"][n]) for s in samples]) for n in keys[0]}
    if not masks:
        raise RegionError("from_masks got no masks.")
    if names is not None:
        missing = [n for n in names if n not in masks]
        if missing:
            raise RegionError(f"Masks {missing} not found; available: {list(masks)}.")
        masks = {n: masks[n] for n in names}
    return RegionSet(*_stack_named(masks))


def lung_zones(left_lung: Any, right_lung: Any, heart: Any = None, body: Any = None,
               border: float = 0.08, corner: float = 0.15) -> RegionSet:
    """Anatomical zones of a chest radiograph built from each image's own lung masks.

    Regions: ``{left,right}_{upper,middle,lower}`` (each lung cut into thirds of *its own* height),
    ``heart`` (if given), ``mediastinum`` (inside the convex hull of both lungs, outside lungs and
    heart), ``outside_body`` (if ``body`` is given), ``border`` (a frame ``border`` x the short side
    wide) and ``corners`` (four squares of side ``corner`` x the short side, where burned-in markers
    sit). Lung zones, heart and mediastinum are disjoint; border, corners and outside_body overlap
    them and each other, so mass fractions over the whole set can sum past 1.

    Parameters
    ----------
    left_lung, right_lung, heart, body
        Boolean masks, ``H x W`` (one image) or ``N x H x W`` (a batch).
    border, corner
        Widths as fractions of the shorter image side.
    """
    arrays = {"left_lung": left_lung, "right_lung": right_lung, "heart": heart, "body": body}
    names, stacked = _stack_named({k: v for k, v in arrays.items() if v is not None})
    stacked = stacked.astype(bool)
    single = stacked.ndim == 3
    batch = stacked[None] if single else stacked
    if not 0 <= border < 0.5 or not 0 <= corner <= 0.5:
        raise RegionError(f"border and corner are fractions of the short side: need 0 <= border < 0.5 and "
                          f"0 <= corner <= 0.5; got border={border}, corner={corner}.")
    zones = [_zones_of_one(dict(zip(names, m)), border, corner) for m in batch]
    out_names = list(zones[0])
    masks = np.stack([np.stack(list(z.values())) for z in zones])
    return RegionSet(out_names, masks[0] if single else masks)


def _zones_of_one(m: dict[str, np.ndarray], border: float, corner: float) -> dict[str, np.ndarray]:
    from skimage.morphology import convex_hull_image

    out: dict[str, np.ndarray] = {}
    for side in ("left", "right"):
        out.update(_thirds(m[f"{side}_lung"], side))
    lungs = m["left_lung"] | m["right_lung"]
    heart = m.get("heart", np.zeros_like(lungs))
    if "heart" in m:
        out["heart"] = heart & ~lungs
    hull = convex_hull_image(lungs) if lungs.any() else lungs
    out["mediastinum"] = hull & ~lungs & ~heart
    if "body" in m:
        out["outside_body"] = ~m["body"]
    out["border"], out["corners"] = _frame(lungs.shape, border, corner)
    return out


def _thirds(lung: np.ndarray, side: str) -> dict[str, np.ndarray]:
    rows = np.flatnonzero(lung.any(axis=1))
    bands = {f"{side}_{z}": np.zeros_like(lung) for z in ("upper", "middle", "lower")}
    if rows.size == 0:
        return bands
    top, height = rows[0], rows[-1] + 1 - rows[0]
    row_idx = np.arange(lung.shape[0])[:, None]
    for k, name in enumerate(bands):
        lo, hi = top + k * height / 3.0, top + (k + 1) * height / 3.0
        bands[name] = lung & (row_idx >= lo) & (row_idx < hi)
    return bands


def _frame(shape: tuple[int, int], border: float, corner: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    b, c = int(round(border * min(h, w))), int(round(corner * min(h, w)))
    frame = np.zeros(shape, dtype=bool)
    if b:
        frame[:b], frame[-b:], frame[:, :b], frame[:, -b:] = True, True, True, True
    corners = np.zeros(shape, dtype=bool)
    if c:
        corners[:c, :c], corners[:c, -c:], corners[-c:, :c], corners[-c:, -c:] = True, True, True, True
    return frame, corners


def chest_partition(left_lung: Any, right_lung: Any, heart: Any) -> RegionSet:
    """Left lung, right lung, heart and everything else as a *partition* of each image (the four masks are
    disjoint and cover every pixel, so each image's mass fractions sum to 1).

    The heart wins where it overlaps a lung, as on a frontal radiograph where it lies in front of the lungs.

    Parameters
    ----------
    left_lung, right_lung, heart
        Boolean masks ``N x H x W`` (or one ``H x W``), numpy arrays or tensors.

    Returns
    -------
    RegionSet
        Regions ``left_lung``, ``right_lung``, ``heart``, ``outside``.

    Examples
    --------
    >>> import numpy as np
    >>> left, right, heart = np.zeros((3, 1, 4, 4), bool)
    >>> left[0, :, :2], right[0, :, 2:], heart[0, 2:, 1:3] = True, True, True
    >>> parts = chest_partition(left, right, heart)
    >>> list(parts.names), bool(parts.masks.sum(1).min() == parts.masks.sum(1).max() == 1)
    (['left_lung', 'right_lung', 'heart', 'outside'], True)
    """
    left, right, heart = (as_numpy(m).astype(bool) for m in (left_lung, right_lung, heart))
    if not left.shape == right.shape == heart.shape:
        raise RegionError(f"chest_partition: left_lung, right_lung and heart must have one shape; got {left.shape}, "
                          f"{right.shape} and {heart.shape}.")
    if (left & right).any():
        raise RegionError(f"chest_partition: the left and right lung masks overlap in {int((left & right).sum())} "
                          "pixels; a partition needs disjoint lungs (check that the two masks are not swapped or "
                          "dilated).")
    parts = [left & ~heart, right & ~heart, heart, ~(left | right | heart)]
    return RegionSet(["left_lung", "right_lung", "heart", "outside"], np.stack(parts, axis=-3))


def from_labelmap(labelmap: Any, names: Mapping[int, str] | Sequence[str] | str | os.PathLike) -> RegionSet:
    """A region set from an integer label image (``H x W`` or ``N x H x W``) and a names table.

    Parameters
    ----------
    labelmap
        Integer array, or a path read with :func:`xaikit.io.read_image` (PNG, NIfTI, ...).
    names
        ``{label_value: name}``; a sequence (``names[i]`` is label ``i + 1``, 0 is background); or a
        CSV path with columns ``value,name``.
    """
    if isinstance(labelmap, (str, os.PathLike)):

        labelmap = read_image(labelmap).array
    lab = as_numpy(labelmap)
    if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
        raise RegionError("labelmap must hold integer labels; got non-integer or non-finite values.")
    table = _names_table(names)
    present = set(np.unique(lab).astype(int).tolist()) - {0}
    unnamed = sorted(present - set(table))
    if unnamed:
        warnings.warn(f"from_labelmap: label values {unnamed} have no name and are left out of the region set.",
                      stacklevel=2)
    masks = np.stack([lab == v for v in table], axis=-3)
    return RegionSet(list(table.values()), masks)


def _names_table(names: Any) -> dict[int, str]:
    if isinstance(names, (str, os.PathLike)):
        import pandas as pd

        df = pd.read_csv(names)
        if not {"value", "name"} <= set(df.columns):
            raise RegionError(f"Names table {os.fspath(names)!r} needs columns 'value' and 'name'; "
                              f"it has {list(df.columns)}.")
        return {int(v): str(n) for v, n in zip(df["value"], df["name"])}
    if isinstance(names, Mapping):
        return {int(v): str(n) for v, n in names.items()}
    return {i + 1: str(n) for i, n in enumerate(names)}


def boxes(masks: Mapping[str, Any], margin: float | int = 0.1, min_area: int = 1) -> RegionSet:
    """Rectangles around the connected components of each mask, enlarged by a margin.

    Sümer et al. (2023) drew boxes around facial landmarks; this generalizes it to any mask: each
    component's bounding box grows by ``margin`` (a fraction of the box's own side if a float < 1,
    else pixels) and is clipped to the image; a region is the union of its mask's boxes, named
    ``"<mask>_box"``.

    Parameters
    ----------
    masks
        ``{name: H x W}`` or ``{name: N x H x W}`` boolean masks.
    margin
        Enlargement per side.
    min_area
        Components smaller than this (pixels) are ignored (speckle).
    """
    names, stacked = _stack_named(masks)
    stacked = stacked.astype(bool)
    if isinstance(margin, float) and not 0 <= margin < 1 or margin < 0:
        raise RegionError(f"margin must be a fraction in [0, 1) or a non-negative pixel count; got {margin}.")
    out = np.zeros_like(stacked)
    for idx in np.ndindex(stacked.shape[:-2]):
        out[idx] = _boxes_of_one(stacked[idx], margin, min_area)
    return RegionSet([f"{n}_box" for n in names], out)


def _boxes_of_one(mask: np.ndarray, margin: float | int, min_area: int) -> np.ndarray:
    from skimage.measure import label, regionprops

    out = np.zeros_like(mask)
    h, w = mask.shape
    for prop in regionprops(label(mask, connectivity=2)):
        if prop.area < min_area:
            continue
        r0, c0, r1, c1 = prop.bbox
        mr, mc = ((margin * (r1 - r0), margin * (c1 - c0)) if isinstance(margin, float) else (margin, margin))
        r0, r1 = max(0, int(np.floor(r0 - mr))), min(h, int(np.ceil(r1 + mr)))
        c0, c1 = max(0, int(np.floor(c0 - mc))), min(w, int(np.ceil(c1 + mc)))
        out[r0:r1, c0:c1] = True
    return out


#: Label values of face parsing on CelebAMask-HQ as written by the widely used BiSeNet model
#: (zllrunning/face-parsing.PyTorch): 0 is background.
FACE_PARSING_LABELS = {0: "background", 1: "skin", 2: "l_brow", 3: "r_brow", 4: "l_eye", 5: "r_eye", 6: "eye_g",
                       7: "l_ear", 8: "r_ear", 9: "ear_r", 10: "nose", 11: "mouth", 12: "u_lip", 13: "l_lip",
                       14: "neck", 15: "neck_l", 16: "cloth", 17: "hair", 18: "hat"}

#: Sümer et al. (2023)'s facial regions as unions of face-parsing parts.
FACE_REGIONS = {"eyes": ("l_eye", "r_eye"), "nose": ("nose",), "mouth": ("mouth", "u_lip", "l_lip")}


def face_boxes(parsing: Any, regions: Mapping[str, Sequence[str]] | None = None,
               labels: Mapping[int, str] | None = None, margin: float | int = 0.1, min_area: int = 4) -> RegionSet:
    """Sümer et al. (2023)'s facial regions: boxes with margins around face-parsing parts, per image.

    Each region (default :data:`FACE_REGIONS`: eyes, nose, mouth) is the union of its parts' pixels in
    the face-parsing label map; every connected component of it (each eye, the nose, the mouth with its
    lips) gets its bounding box enlarged by ``margin`` on every side and clipped to the image, as in
    :func:`boxes`. This, not a grid of vertical thirds, is how the paper placed its regions.

    Parameters
    ----------
    parsing
        Integer label map ``H x W`` (one face) or ``N x H x W`` (one per image, e.g. from BiSeNet face
        parsing run on each image), values as in ``labels``.
    regions
        ``{region: (part, ...)}``; default :data:`FACE_REGIONS`.
    labels
        ``{value: part}`` of the label map; default :data:`FACE_PARSING_LABELS` (CelebAMask-HQ order).
    margin
        Enlargement per side: a fraction of each box's own height and width if a float < 1, else pixels.
        The default 0.1 is xaikit's choice; set it to the margin of the protocol you reproduce.
    min_area
        Components smaller than this many pixels (parsing speckle) get no box.

    Examples
    --------
    >>> import numpy as np
    >>> face = np.zeros((20, 20), int)
    >>> face[5:7, 4:7], face[5:7, 13:16], face[9:12, 9:11], face[14:16, 7:13] = 4, 5, 10, 11
    >>> rs = face_boxes(face, margin=1)
    >>> rs.names, int(rs["eyes"].sum()), int(rs["nose"].sum())
    (('eyes', 'nose', 'mouth'), 40, 20)
    """
    regions, labels = dict(regions or FACE_REGIONS), dict(labels or FACE_PARSING_LABELS)
    values = {name: value for value, name in labels.items()}
    unknown = sorted({p for parts in regions.values() for p in parts} - set(values))
    if unknown:
        raise RegionError(f"face_boxes: parts {unknown} are not in the label table {sorted(values)}; name parts "
                          "of labels= (or pass your parsing model's {value: part} table as labels=).")
    lab = as_numpy(parsing)
    if lab.ndim not in (2, 3) or not np.issubdtype(lab.dtype, np.integer):
        raise RegionError(f"face_boxes: parsing must be an integer label map H x W or N x H x W; got "
                          f"{lab.dtype} of shape {lab.shape}.")
    masks = {name: np.isin(lab, [values[p] for p in parts]) for name, parts in regions.items()}
    _warn_missing_parts(masks)
    return RegionSet(list(regions), boxes(masks, margin=margin, min_area=min_area).masks)


def _warn_missing_parts(masks: Mapping[str, np.ndarray]) -> None:
    for name, mask in masks.items():
        empty = ~mask.reshape(-1, *mask.shape[-2:]).any(axis=(-2, -1))
        if empty.any():
            warnings.warn(f"face_boxes: region {name!r} has no parsed pixel in {int(empty.sum())} of {len(empty)} "
                          "images; its box there is empty (its region scores will be NaN or 0).", stacklevel=3)


def polygons(vertices: Mapping[str, Any] | Sequence[Any], shape: Sequence[int],
             names: Sequence[str] | None = None) -> RegionSet:
    """A shared region set from polygons given as ``(row, col)`` vertex arrays (drawn by scikit-image).

    Parameters
    ----------
    vertices
        ``{name: K x 2 array}`` or a list of ``K x 2`` arrays (then ``names`` is required).
    shape
        Image plane ``(H, W)``.
    """
    from skimage.draw import polygon2mask

    if isinstance(vertices, Mapping):
        names, vertices = list(vertices), list(vertices.values())
    if names is None or len(names) != len(vertices):
        raise RegionError("polygons needs one name per polygon: pass {name: vertices} or names=[...].")
    masks = []
    for name, v in zip(names, vertices):
        v = np.asarray(v, dtype=float)
        if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3:
            raise RegionError(f"Polygon {name!r} needs at least 3 (row, col) vertices; got shape {v.shape}.")
        masks.append(polygon2mask(tuple(int(s) for s in shape), v))
    return RegionSet(names, np.stack(masks))
