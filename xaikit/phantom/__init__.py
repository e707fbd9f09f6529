"""Synthetic sample data with ground truth: chest radiographs, shortcut markers, and a 3D volume.

No data can be downloaded at run time, so the kit draws its own. :func:`draw_chest` draws a frontal chest
radiograph (body, lungs, heart, mediastinum, spine, ribs, clavicles, diaphragm; varying anatomy, pose,
exposure and noise) with masks ``left_lung, right_lung, heart, lesion, marker, body``; pneumonia adds patchy
opacities inside the lungs (``lesion``), and an optional burned-in corner tag (``marker``) reproduces the
hospital-token shortcut of real chest X-ray models. :func:`draw_chest_set` plans whole sets with
patient grouping and a marker rate per class; :class:`PhantomDataset` serves such a set as a torch dataset
without writing files; :func:`draw_volume` draws a CT-like volume with a label map.
Everything is deterministic by seed (``numpy.random.default_rng`` streams only, no global state).

Examples
--------
>>> from xaikit.phantom import draw_chest, draw_chest_set
>>> ph = draw_chest(3, size=64, pneumonia=True)
>>> ph.label, sorted(ph.masks)
(1, ['body', 'heart', 'left_lung', 'lesion', 'marker', 'right_lung'])
>>> train = draw_chest_set(400, seed=0, size=64, marker_rate_pos=0.9, marker_rate_neg=0.1)
>>> train.table().groupby("label")["marker"].mean().round(1).tolist()
[0.1, 0.9]
"""
from .chest import MASK_NAMES, ChestPhantom, draw_chest
from .cohort import ChestSet, draw_chest_set
from .dataset import PhantomDataset
from .grid import grid_image, write_grid
from .marker import MARKER_CORNERS
from .volume import (
    VOLUME_LABELS,
    VOLUME_WINDOW,
    VolumePhantom,
    VolumeSet,
    VolumeSetDataset,
    draw_volume,
    draw_volume_set,
)

__all__ = [
    "MASK_NAMES",
    "MARKER_CORNERS",
    "VOLUME_LABELS",
    "VOLUME_WINDOW",
    "VolumeSet",
    "VolumeSetDataset",
    "draw_volume_set",
    "ChestPhantom",
    "ChestSet",
    "PhantomDataset",
    "VolumePhantom",
    "draw_chest",
    "draw_chest_set",
    "draw_volume",
    "grid_image",
    "write_grid",
]
