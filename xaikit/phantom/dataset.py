"""A torch ``Dataset`` over a :class:`~xaikit.phantom.ChestSet`, drawn in memory: no image files needed.

Each item is the kit's sample dict (``image, label, id, patient_id, masks, meta``), made exactly as
:class:`~xaikit.data.ManifestDataset` makes one from the shipped PNGs: the phantom is quantized to 8 bits
through the same display window the sample builder writes with, then goes through the given
:class:`~xaikit.data.Preprocess` together with its masks. So a model trained on the shipped files sees the
same kind of input here, and a set that would be hundreds of files (e.g. the shortcut training set) costs
no disk space. Preprocessed items are cached, so epochs after the first draw nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ArgumentError
from ..io import MedicalImage
from .cohort import ChestSet

__all__ = ["PhantomDataset", "PNG_WINDOW"]

#: Display window (center, width) through which the sample builder writes phantoms as 8-bit PNGs.
PNG_WINDOW = (0.5, 1.0)


class PlannedItems:
    """What a planned phantom dataset knows before drawing anything: its length and, from ``self.table``
    (one row per item) and ``self.indices``, every item's label, patient id and image id."""

    table: Any
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> np.ndarray:
        """Integer label of every item (nothing is drawn)."""
        return self.table["label"].to_numpy(dtype=np.int64)

    @property
    def patient_ids(self) -> np.ndarray:
        """Patient id of every item."""
        return self.table["patient_id"].to_numpy(dtype=object)

    @property
    def ids(self) -> list[str]:
        """Image id of every item."""
        return self.table["image_id"].tolist()


class PhantomDataset(PlannedItems, Dataset):
    """Sample dicts of a planned phantom set (optionally a subset of it), drawn on first use and cached.

    Parameters
    ----------
    chest : ChestSet
        The planned set (:func:`~xaikit.phantom.draw_chest_set`).
    preprocess : Preprocess, optional
        Applied to each image and its masks (default: the image at its own size, ``1 x H x W``).
    indices : sequence of int, optional
        Images of ``chest`` to keep, in order (e.g. one split); default all.
    classes : sequence of str
        Class names in label order.
    transform : callable, optional
        ``transform(image, masks) -> (image, masks)`` applied after the cache (e.g. :class:`~xaikit.data.Augment`).
    cache : bool
        Keep preprocessed items in memory (``128 px``: about 0.1 MB per image with its masks).

    Attributes
    ----------
    table : pandas.DataFrame
        The plan of the kept images (``image_id, patient_id, label, marker, ...``).
    labels, patient_ids, ids, classes

    Examples
    --------
    >>> from xaikit.phantom import draw_chest_set
    >>> from xaikit.phantom.dataset import PhantomDataset
    >>> ds = PhantomDataset(draw_chest_set(4, seed=0, size=64, marker_rate_pos=1.0))
    >>> s = ds[0]
    >>> tuple(s["image"].shape), sorted(s["masks"])[:2], s["id"]
    ((1, 64, 64), ['body', 'heart'], 'img00000')
    """

    def __init__(self, chest: ChestSet, preprocess: Any = None, *, indices: Sequence[int] | None = None,
                 classes: Sequence[str] = ("normal", "pneumonia"), transform: Callable | None = None,
                 cache: bool = True) -> None:
        if not isinstance(chest, ChestSet):
            raise ArgumentError(f"PhantomDataset needs a ChestSet from draw_chest_set; got {type(chest).__name__}.")
        idx = np.arange(len(chest)) if indices is None else np.asarray(indices, dtype=int).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(chest)):
            raise ArgumentError(f"indices must lie in 0..{len(chest) - 1}; got min {idx.min()}, max {idx.max()}.")
        self.chest, self.preprocess, self.transform = chest, preprocess, transform
        self.indices = idx
        self.classes = [str(c) for c in classes]
        self.table = chest.table().iloc[idx].reset_index(drop=True)
        self._cache: dict[int, tuple[torch.Tensor, dict[str, torch.Tensor], dict]] | None = {} if cache else None

    def subset(self, positions: Sequence[int]) -> "PhantomDataset":
        """The items at ``positions`` (of this dataset) as a new dataset sharing what is already drawn."""
        pos = np.asarray(positions, dtype=int).reshape(-1)
        out = PhantomDataset(self.chest, self.preprocess, indices=self.indices[pos], classes=self.classes,
                             transform=self.transform, cache=self._cache is not None)
        if self._cache is not None and out._cache is not None:
            out._cache.update({j: self._cache[int(p)] for j, p in enumerate(pos) if int(p) in self._cache})
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ArgumentError(f"PhantomDataset index must be an int; got {type(index).__name__}.")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} images")
        i = int(index) % len(self)
        image, masks, meta = self._item(i)
        if self.transform is not None:
            image, masks = self.transform(image, masks)
        return {"image": image, "label": int(self.labels[i]), "id": self.ids[i],
                "patient_id": str(self.patient_ids[i]), "masks": dict(masks), "meta": dict(meta)}

    def _item(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        item = self._draw(i)
        if self._cache is not None:
            self._cache[i] = item
        return item

    def _draw(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
        phantom = self.chest[int(self.indices[i])]
        # the 8-bit quantization of write_png(window=PNG_WINDOW), so inputs match the shipped PNGs
        levels = np.rint(MedicalImage(phantom.image).display(PNG_WINDOW).astype(np.float64) * 255)
        image = MedicalImage(levels.astype(np.float32))
        if self.preprocess is not None:
            tensor, masks = self.preprocess(image, phantom.masks)
        else:
            tensor = torch.from_numpy(image.array.copy()).unsqueeze(0)
            masks = {k: torch.from_numpy(np.asarray(m, bool)) for k, m in phantom.masks.items()}
        meta = {"marker": bool(phantom.meta["marker"]),
                "lesion_sides": ",".join(phantom.meta["lesion"].get("sides", [])),
                "original_height": int(phantom.image.shape[0]), "original_width": int(phantom.image.shape[1])}
        return tensor, masks, meta

    def __repr__(self) -> str:
        return (f"PhantomDataset(n={len(self)}, classes={self.classes}, markers={int(self.table['marker'].sum())}, "
                f"size={self.chest.size})")
