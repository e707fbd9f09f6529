"""A simple 3D chest-like phantom in Hounsfield units with an integer label map, and labelled sets of them.

:func:`draw_volume` draws one volume; :func:`draw_volume_set` plans a set of volumes with a lesion in a given
share of them, grouped by patient (so splits can be made per patient), and :class:`VolumeSetDataset` serves
such a set as a torch dataset of sample dicts (``image`` ``1 x D x H x W``) through a
:class:`~xaikit.data.VolumePreprocess`, drawing each volume on first use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from torch.utils.data import Dataset

from ..errors import ArgumentError
from ..io.image import MedicalImage
from .dataset import PlannedItems

__all__ = ["VOLUME_LABELS", "VOLUME_WINDOW", "VolumePhantom", "VolumeSet", "VolumeSetDataset", "draw_volume",
           "draw_volume_set"]

#: CT display/normalization window (center, width) in HU that shows lungs, lesion and soft tissue.
VOLUME_WINDOW = (-600.0, 1500.0)

#: Label values of :attr:`VolumePhantom.labels` and their names.
VOLUME_LABELS = {0: "background", 1: "body", 2: "right_lung", 3: "left_lung", 4: "heart", 5: "spine", 6: "lesion"}

_HU = {0: -1000.0, 1: 30.0, 2: -840.0, 3: -840.0, 4: 45.0, 5: 450.0, 6: -120.0}

# Field of view in mm along (superior-inferior, anterior-posterior, right-left).
_FOV_MM = (300.0, 320.0, 400.0)


@dataclass
class VolumePhantom:
    """A chest-like CT volume and its label map.

    Axes are ``(D, H, W)`` = (inferior to superior, anterior to posterior, patient right to left), the layout
    :func:`xaikit.io.read_volume` gives every NIfTI file and DICOM series (:func:`xaikit.io.nifti.dhw_to_ras`), so
    a phantom drawn in memory and the same phantom written to a file and read back are the same array (a model
    trained on one sees the other as it saw its training data). An axial slice ``image[k]`` shows the patient's
    left on the image right, anterior up, as radiology does.

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

        Going along ``d`` is superior (+S), along ``h`` posterior (-A), along ``w`` towards the patient's left
        (-R), as in the files :func:`xaikit.io.read_volume` reads; the volume is centred on the origin.
        """
        sd, sh, sw = self.spacing
        aff = np.zeros((4, 4))
        aff[0, 2], aff[1, 1], aff[2, 0], aff[3, 3] = -sw, -sh, sd, 1.0
        aff[:3, 3] = -aff[:3, :3] @ ((np.array(self.labels.shape) - 1) / 2)
        return aff

    def as_image(self):
        """The volume as a CT :class:`~xaikit.io.MedicalImage` (spacing, affine, lung window)."""

        return MedicalImage(self.image, spacing=self.spacing, window=VOLUME_WINDOW, affine=self.affine, modality="CT")

    def masks(self) -> dict[str, np.ndarray]:
        """One boolean ``(D, H, W)`` mask per structure of :data:`VOLUME_LABELS` except the background (the
        ``lesion`` mask is empty in a volume without one, so every volume has the same keys)."""
        return {name: self.labels == value for value, name in VOLUME_LABELS.items() if value != 0}


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


def draw_volume(seed: int, *, shape: tuple[int, int, int] = (48, 64, 64), lesion: bool = True,
                lesion_scale: float = 1.0) -> VolumePhantom:
    """Draw a chest-like CT volume with body, lungs, heart, spine and (optionally) a lesion.

    Parameters
    ----------
    seed : int
        Seed of every random choice; the same seed gives a bit-identical volume.
    shape : tuple of int
        ``(D, H, W)``, each at least 16.
    lesion : bool
        Put a rounded opacity (label 6) in one lung.
    lesion_scale : float
        Multiplies the drawn lesion radius (the random draws are unchanged, so ``1.0`` gives the same volume as
        before this parameter existed).

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
    if not 0.0 < float(lesion_scale) <= 3.0:
        raise ArgumentError(f"lesion_scale must lie in (0, 3]; got {lesion_scale!r}.")
    params["lesion_r"] *= float(lesion_scale)
    labels = _labels(tuple(int(s) for s in shape), params, rng, lesion)
    hu = np.array([_HU[k] for k in sorted(_HU)])[labels]
    image = ndimage.gaussian_filter(hu, 0.7) + rng.normal(0.0, 12.0, labels.shape)
    names = {k: v for k, v in VOLUME_LABELS.items() if lesion or k != 6}
    spacing = tuple(float(f / s) for f, s in zip(_FOV_MM, shape))
    meta = {"seed": int(seed), "lesion": bool(lesion), "params": params}
    # drawn apex first (grid z from superior to inferior); stored inferior to superior, read_volume's layout
    image, labels = np.ascontiguousarray(image[::-1], np.float32), np.ascontiguousarray(labels[::-1])
    return VolumePhantom(image, labels, names, spacing, meta)


class VolumeSet:
    """A planned set of phantom volumes: who is who, which have a lesion; volumes drawn on demand.

    Attributes
    ----------
    table : pandas.DataFrame
        ``image_id, patient_id, label, seed`` (label 1: lesion).
    shape : tuple of int
        ``(D, H, W)`` of every volume.
    """

    def __init__(self, table: pd.DataFrame, shape: tuple[int, int, int], lesion_scale: float = 1.0):
        self.table = table
        self.shape = shape
        self.lesion_scale = float(lesion_scale)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> VolumePhantom:
        row = self.table.iloc[int(i)]
        return draw_volume(int(row["seed"]), shape=self.shape, lesion=bool(row["label"]),
                           lesion_scale=self.lesion_scale)

    def __repr__(self) -> str:
        return f"VolumeSet(n={len(self)}, lesions={int(self.table['label'].sum())}, shape={self.shape})"


def draw_volume_set(n: int, *, seed: int = 0, shape: tuple[int, int, int] = (32, 32, 32), prevalence: float = 0.5,
                    n_patients: int | None = None, lesion_scale: float = 1.0) -> VolumeSet:
    """Plan ``n`` phantom CT volumes, a share ``prevalence`` of them with a lesion (label 1).

    Each volume has its own anatomy seed; ``n_patients`` (default ``n``) groups volumes into patients (every
    patient gets at least one volume, the rest go to random patients), so :func:`xaikit.data.patient_split`
    keeps a patient's volumes in one split. Lesion labels are drawn independently of the patient.

    Examples
    --------
    >>> vs = draw_volume_set(6, seed=1, shape=(16, 16, 16), n_patients=4)
    >>> len(vs), vs.table["patient_id"].nunique(), vs[0].image.shape
    (6, 4, (16, 16, 16))
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ArgumentError(f"draw_volume_set: n must be a positive int; got {n!r}.")
    if not 0.0 <= float(prevalence) <= 1.0:
        raise ArgumentError(f"draw_volume_set: prevalence must lie in [0, 1]; got {prevalence!r}.")
    n_patients = int(n) if n_patients is None else n_patients
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or not 1 <= n_patients <= n:
        raise ArgumentError(f"draw_volume_set: n_patients must be an int between 1 and n={n}; got {n_patients!r}.")
    rng = np.random.default_rng([int(seed), 31])
    patients = rng.permutation(np.concatenate([np.arange(n_patients), rng.integers(0, n_patients, n - n_patients)]))
    labels = (rng.permutation(n) < round(float(prevalence) * n)).astype(np.int64)
    seeds = rng.integers(0, 2**31 - 1, n)
    table = pd.DataFrame({"image_id": [f"vol{i:04d}" for i in range(n)],
                          "patient_id": [f"vpat{p:04d}" for p in patients], "label": labels, "seed": seeds})
    return VolumeSet(table, tuple(int(s) for s in shape), lesion_scale)


class VolumeSetDataset(PlannedItems, Dataset):
    """Sample dicts of a :class:`VolumeSet` (or a subset), preprocessed and cached.

    Each item is ``{"image": 1 x D x H x W float tensor, "label", "id", "patient_id", "masks", "meta"}``, with one
    boolean mask per structure (``body, right_lung, left_lung, heart, spine`` and ``lesion`` when present).

    Parameters
    ----------
    volumes : VolumeSet
    preprocess : VolumePreprocess
        Applied to each volume (as a CT :class:`~xaikit.io.MedicalImage`) and its masks.
    indices : sequence of int, optional
        Volumes to keep (e.g. one split); default all.
    classes : sequence of str
        Class names in label order.
    """

    def __init__(self, volumes: VolumeSet, preprocess: Any, *, indices: Any = None,
                 classes: tuple[str, ...] = ("normal", "lesion"), cache: bool = True):
        if not isinstance(volumes, VolumeSet):
            raise ArgumentError("VolumeSetDataset needs a VolumeSet from draw_volume_set; "
                                f"got {type(volumes).__name__}.")
        self.volumes, self.preprocess = volumes, preprocess
        self.indices = np.arange(len(volumes)) if indices is None else np.asarray(indices, dtype=int).reshape(-1)
        self.table = volumes.table.iloc[self.indices].reset_index(drop=True)
        self.classes = [str(c) for c in classes]
        self.transform = None
        self._cache: dict[int, tuple] | None = {} if cache else None

    def __getitem__(self, index: int) -> dict[str, Any]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ArgumentError(f"VolumeSetDataset index must be an int; got {type(index).__name__}.")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} volumes")
        i = int(index) % len(self)
        if self._cache is not None and i in self._cache:
            image, masks = self._cache[i]
        else:
            phantom = self.volumes[int(self.indices[i])]
            image, masks = self.preprocess(phantom.as_image(), phantom.masks())
            if self._cache is not None:
                self._cache[i] = (image, masks)
        if self.transform is not None:
            image, masks = self.transform(image, masks)
        return {"image": image, "label": int(self.labels[i]), "id": self.ids[i], "patient_id": str(self.patient_ids[i]),
                "masks": dict(masks), "meta": {}}

    def __repr__(self) -> str:
        return f"VolumeSetDataset(n={len(self)}, classes={self.classes}, lesions={int(self.labels.sum())})"
