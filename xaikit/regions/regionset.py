"""RegionSet: named boolean masks that follow each image.

A region set holds ``R`` named regions as boolean masks, either one set shared by every image
(``R x H x W``) or one set per image (``N x R x H x W``); for volumes (``ndim=3``) the masks are
``R x D x H x W`` or ``N x R x D x H x W`` and ``spacing`` (mm) gives region volumes in mm^3. Per-image sets are
the normal case: regions come from each image's own anatomy (its lung masks, its marker) and go through the same
geometric preprocessing as the image, so a region always covers the same anatomy — unlike a fixed grid laid
over randomly cropped images.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import RegionError

__all__ = ["RegionSet", "as_numpy"]


def as_numpy(x: Any) -> np.ndarray:
    """A numpy view of ``x`` (torch tensors are detached and moved to the CPU; nothing is imported)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class RegionSet:
    """Named boolean region masks, per image (``N x R x H x W``) or shared (``R x H x W``).

    Parameters
    ----------
    names
        One unique, non-empty name per region.
    masks
        Boolean array (anything ``np.asarray`` accepts, torch tensors included) of shape
        ``R x H x W`` (shared by all images) or ``N x R x H x W`` (one set per image); with ``ndim=3``
        ``R x D x H x W`` or ``N x R x D x H x W``.
    ndim
        Spatial dimensions: 2 for images, 3 for volumes.
    spacing
        Voxel size in mm per spatial axis (volumes: region volumes in mm^3 in :func:`region_scores`).

    Examples
    --------
    >>> import numpy as np
    >>> rs = RegionSet(["top", "bottom"], np.stack([np.eye(4, dtype=bool), ~np.eye(4, dtype=bool)]))
    >>> rs.shape, rs.shared, rs.names
    ((4, 4), True, ('top', 'bottom'))
    """

    def __init__(self, names: Sequence[str], masks: Any, *, ndim: int = 2, spacing: Sequence[float] | None = None):
        if ndim not in (2, 3):
            raise RegionError(f"ndim={ndim!r}: a region set lives on 2-D images or 3-D volumes.")
        self.ndim = int(ndim)
        self.names = _check_names(names)
        self.masks = _check_masks(as_numpy(masks), len(self.names), self.ndim)
        self.spacing = None if spacing is None else tuple(float(v) for v in spacing)
        if self.spacing is not None and (len(self.spacing) != self.ndim or min(self.spacing) <= 0):
            raise RegionError(f"spacing={spacing!r}: give {self.ndim} positive voxel sizes in mm.")

    def _like(self, names: Sequence[str], masks: Any) -> RegionSet:
        return RegionSet(names, masks, ndim=self.ndim, spacing=self.spacing)

    @property
    def _axis(self) -> int:
        """Axis of the regions in :attr:`masks` (counted from the end)."""
        return -(self.ndim + 1)

    # ------------------------------------------------------------------ shape
    @property
    def shared(self) -> bool:
        """True when one set of masks serves every image."""
        return self.masks.ndim == self.ndim + 1

    @property
    def shape(self) -> tuple[int, ...]:
        """Image plane ``(H, W)`` (volume ``(D, H, W)``) the masks live on."""
        return tuple(self.masks.shape[-self.ndim:])

    @property
    def n_images(self) -> int | None:
        """Number of images for a per-image set, ``None`` for a shared one."""
        return None if self.shared else self.masks.shape[0]

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        kind = "shared" if self.shared else f"{self.n_images} images"
        return f"RegionSet({list(self.names)}, {kind}, shape={self.shape})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RegionSet) and self.names == other.names and self.ndim == other.ndim
                and self.masks.shape == other.masks.shape and bool(np.array_equal(self.masks, other.masks)))

    # ----------------------------------------------------------------- access
    def __getitem__(self, name: str) -> np.ndarray:
        """Mask(s) of one region: ``H x W`` if shared, else ``N x H x W`` (plus ``D`` for volumes)."""
        return np.take(self.masks, self._index(name), axis=self._axis)

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise RegionError(f"No region named {name!r}; the set has {list(self.names)}.") from None

    def image(self, i: int) -> RegionSet:
        """The shared ``R x H x W`` set of image ``i`` (a shared set returns itself)."""
        return self if self.shared else self._like(self.names, self.masks[i])

    def as_dict(self, i: int = 0) -> dict[str, np.ndarray]:
        """``{name: H x W mask}`` of image ``i``."""
        masks = self.image(i).masks
        return {n: masks[k] for k, n in enumerate(self.names)}

    def select(self, names: Iterable[str]) -> RegionSet:
        """A new set with only ``names``, in that order."""
        names = list(names)
        return self._like(names, np.take(self.masks, [self._index(n) for n in names], axis=self._axis))

    def area_fractions(self) -> np.ndarray:
        """Share of the image covered by each region: ``R`` (shared) or ``N x R`` (per image)."""
        return self.masks.mean(axis=tuple(range(-self.ndim, 0)))

    def expand(self, n: int) -> RegionSet:
        """A per-image set for ``n`` images (a shared set repeated; a per-image set must already have ``n``)."""
        if not self.shared:
            if self.n_images != n:
                raise RegionError(f"Region set has masks for {self.n_images} images, not {n}.")
            return self
        return self._like(self.names, np.broadcast_to(self.masks, (n, *self.masks.shape)))

    def __or__(self, other: RegionSet) -> RegionSet:
        """Concatenate two sets on the same plane (names must stay unique)."""
        if self.shape != other.shape or self.ndim != other.ndim:
            raise RegionError(f"Cannot join region sets on planes {self.shape} and {other.shape}.")
        a, b = self.masks, other.masks
        if self.shared != other.shared:
            n = self.n_images or other.n_images
            a, b = self.expand(n).masks, other.expand(n).masks
        return self._like(self.names + other.names, np.concatenate([a, b], axis=self._axis))

    # -------------------------------------------------------------- geometry
    def resize(self, shape: Sequence[int]) -> RegionSet:
        """Masks resampled to ``shape = (H, W)`` by nearest neighbour (no interpolation across labels).

        Use it only when the image itself was plainly resized; when the image went through a
        :class:`xaikit.data.Preprocess` (crop, letterbox, resize), use :meth:`apply` instead.
        """
        from skimage.transform import resize

        if self.ndim != 2:
            raise RegionError("resize() is for 2-D region sets; send volume label maps through the volume's "
                              "VolumePreprocess geometry instead (xaikit.regions.label_regions(..., preprocess=)).")
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise RegionError(f"resize(shape) needs (H, W) with positive sides; got {shape}.")
        lead = self.masks.shape[:-2]
        flat = self.masks.reshape(-1, *self.shape)
        out = np.stack([resize(m, shape, order=0, preserve_range=True, anti_aliasing=False) for m in flat])
        return RegionSet(self.names, out.astype(bool).reshape(*lead, *shape))

    def apply(self, preprocess: Callable) -> RegionSet:
        """Send the masks through the same geometry as the images.

        Parameters
        ----------
        preprocess
            A :class:`xaikit.data.Preprocess` (its ``apply_masks`` mask path is used, so the regions get
            exactly the image's resize/letterbox), any object with ``to_dict()`` called as
            ``preprocess(image, masks) -> (tensor, masks)``, or a plain callable mapping one ``H x W``
            boolean mask to another. Volumes: a :class:`xaikit.data.volume.VolumeGeometry` (its nearest-neighbour
            ``labels`` path; the result gets the model grid's spacing) or a callable.
        """
        per_image = [self._apply_one(preprocess, self.image(i).masks) for i in range(self.n_images or 1)]
        out = per_image[0] if self.shared else np.stack(per_image)
        spacing = getattr(preprocess, "out_spacing", None) if self.ndim == 3 else None
        return RegionSet(self.names, out, ndim=self.ndim, spacing=spacing or self.spacing)

    def _apply_one(self, preprocess: Callable, masks: np.ndarray) -> np.ndarray:
        named = {n: m for n, m in zip(self.names, masks)}
        if self.ndim == 3 and hasattr(preprocess, "labels") and hasattr(preprocess, "inverse"):
            return np.stack([preprocess.labels(m) for m in masks]).astype(bool)
        if hasattr(preprocess, "apply_masks"):
            mapped = preprocess.apply_masks(named, self.shape)
        elif hasattr(preprocess, "to_dict"):
            _, mapped = preprocess(np.zeros(self.shape, dtype=np.float32), named)
        else:
            return np.stack([as_numpy(preprocess(m)).astype(bool) for m in masks])
        if mapped is None or set(mapped) != set(self.names):
            raise RegionError(f"{type(preprocess).__name__} did not return a mask for every region "
                              f"{list(self.names)}; it must map masks as it maps images.")
        return np.stack([as_numpy(mapped[n]).astype(bool) for n in self.names])


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        raise RegionError(f"names must be a list of region names, not the single string {names!r}.")
    names = tuple(names)
    if not names:
        raise RegionError("A region set needs at least one region; got no names.")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise RegionError(f"Region names must be non-empty strings; got {bad!r}.")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RegionError(f"Duplicate region names {dup}: every region needs its own name (rename one).")
    return names


def _check_masks(masks: np.ndarray, n_regions: int, ndim: int = 2) -> np.ndarray:
    if masks.ndim not in (ndim + 1, ndim + 2):
        plane = "H x W" if ndim == 2 else "D x H x W"
        raise RegionError(f"masks must be R x {plane} (shared) or N x R x {plane} (per image); "
                          f"got shape {masks.shape}.")
    axis = -(ndim + 1)
    if masks.shape[axis] != n_regions:
        raise RegionError(f"masks hold {masks.shape[axis]} regions (axis {axis} of shape {masks.shape}) "
                          f"but {n_regions} names were given.")
    if min(masks.shape[-ndim:]) < 1:
        raise RegionError(f"masks have an empty image plane: shape {masks.shape}.")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise RegionError(f"masks must be boolean (or 0/1); got values outside {{0, 1}} "
                              f"(dtype {masks.dtype}). Threshold them first.")
        masks = masks.astype(bool)
    return masks


def _stack_named(masks: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Names and stacked arrays of a ``{name: mask}`` mapping (masks of one shape)."""
    names = list(masks)
    arrays = [as_numpy(masks[n]) for n in names]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        detail = ", ".join(f"{n}: {a.shape}" for n, a in zip(names, arrays))
        raise RegionError(f"Masks have different shapes ({detail}); resample them to one plane first.")
    return names, np.stack(arrays, axis=-3)
