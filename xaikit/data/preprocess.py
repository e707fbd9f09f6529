"""One preprocessing object shared by training, evaluation and explanation.

:class:`Preprocess` turns a :class:`~xaikit.io.MedicalImage` (or a 2D array) into the float32 ``C x H x W``
tensor a model sees, and sends masks through exactly the same geometry. It is a small dataclass that
serializes to a dict of plain types, so a checkpoint can store it and :func:`xaikit.checkpoint.check_preprocess`
can compare it.

Order of operations (fixed, so it is the same everywhere):

1. intensity: ``"percentile"`` clips to the given percentiles of the *original* image and maps them to
   ``[0, 1]``; ``"window"`` maps a display window ``(center, width)`` to ``[0, 1]``; ``"imagenet"`` does the
   percentile step and (4.) standardizes; ``"none"`` keeps the stored values;
2. geometry (:class:`Geometry`): ``"resize"`` stretches to ``size``; ``"letterbox"`` keeps the aspect ratio
   and pads the borders with the image's minimum after step 1 (black for the ``[0, 1]`` modes). Images are
   resampled with :func:`skimage.transform.resize` (bilinear, ``anti_aliasing=True`` against moire on
   downsampling), masks with the same function at ``order=0`` (nearest neighbour, no anti-aliasing), so both
   share skimage's pixel-centre convention and stay aligned;
3. channels: the grey plane is repeated to 3 channels when ``channels=3``;
4. ``"imagenet"`` only: per-channel ImageNet mean/std standardization (for one channel, the mean of the three).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from skimage.transform import resize

from ..errors import ArgumentError
from ..io.image import MedicalImage

__all__ = ["Preprocess", "Geometry", "AspectRatioWarning", "warn_if_stretched", "prepare_many", "MODES",
           "NORMALIZATIONS", "IMAGENET_MEAN", "IMAGENET_STD"]

MODES = ("resize", "letterbox")
NORMALIZATIONS = ("percentile", "window", "imagenet", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ``mode="resize"`` warns when it changes an image's aspect ratio by more than this fraction.
ASPECT_TOLERANCE = 0.05


class AspectRatioWarning(UserWarning):
    """``Preprocess(mode="resize")`` stretched an image to a different aspect ratio."""


@dataclass(frozen=True)
class Geometry:
    """How one input plane of shape ``in_shape`` maps onto the model's ``out_shape``.

    The image is resampled to ``resized`` and placed at ``offset = (top, left)`` inside ``out_shape``
    (``offset == (0, 0)`` and ``resized == out_shape`` for plain resizing).

    Examples
    --------
    >>> geo = Preprocess(size=64, mode="letterbox").geometry((100, 200))
    >>> geo.resized, geo.offset
    ((32, 64), (16, 0))
    """

    in_shape: tuple[int, int]
    out_shape: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]

    def image(self, plane: np.ndarray, pad_value: float = 0.0) -> np.ndarray:
        """Resample a float plane of ``in_shape`` (bilinear, anti-aliased) and pad it to ``out_shape``."""
        self._check(plane)
        scaled = resize(plane.astype(np.float32, copy=False), self.resized, order=1,
                        anti_aliasing=True, preserve_range=True)
        return self._pad(scaled.astype(np.float32), pad_value)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """Resample a boolean plane of ``in_shape`` by nearest neighbour and pad it with ``False``."""
        self._check(mask)
        scaled = resize(np.asarray(mask, dtype=bool), self.resized, order=0,
                        anti_aliasing=False, preserve_range=True)
        return self._pad(scaled.astype(bool), False)

    def inverse(self, plane: np.ndarray) -> np.ndarray:
        """Map a plane of ``out_shape`` (e.g. a saliency map) back onto the original ``in_shape``.

        The padding is cropped away and the rest resampled bilinearly (no anti-aliasing: values are
        interpolated, not averaged).
        """
        plane = np.asarray(plane)
        if plane.shape != self.out_shape:
            raise ArgumentError(f"Geometry.inverse expects a plane of shape {self.out_shape}, got {plane.shape}.")
        (top, left), (h, w) = self.offset, self.resized
        crop = plane[top:top + h, left:left + w].astype(np.float32)
        return resize(crop, self.in_shape, order=1, anti_aliasing=False, preserve_range=True).astype(np.float32)

    def _check(self, plane: np.ndarray) -> None:
        if np.shape(plane) != self.in_shape:
            raise ArgumentError(f"Geometry for input shape {self.in_shape} got a plane of shape {np.shape(plane)}; "
                                "masks must have the image's shape.")

    def _pad(self, scaled: np.ndarray, value: Any) -> np.ndarray:
        if scaled.shape == self.out_shape:
            return scaled
        out = np.full(self.out_shape, value, dtype=scaled.dtype)
        (top, left), (h, w) = self.offset, self.resized
        out[top:top + h, left:left + w] = scaled
        return out


@dataclass(frozen=True, eq=False)
class Preprocess:
    """Image-to-tensor preprocessing, serializable and identical for training, evaluation and explanation.

    Parameters
    ----------
    size : int or (int, int)
        Output ``(H, W)``; an int means a square.
    mode : {"resize", "letterbox"}
        ``"resize"`` stretches to ``size``; ``"letterbox"`` keeps the aspect ratio and pads.
    channels : {1, 3}
        Output channels (grey is repeated for 3, e.g. for ImageNet-pretrained models).
    normalize : {"percentile", "window", "imagenet", "none"}
        Intensity normalization (see the module docstring). ``"window"`` uses ``window`` when given,
        else the image's own default window (the DICOM window centre/width for DICOM files).
    percentiles : (float, float)
        Low and high percentiles for ``"percentile"`` and ``"imagenet"``.
    window : (float, float), optional
        ``(center, width)`` for ``normalize="window"``.

    Examples
    --------
    >>> pre = Preprocess(size=64, channels=3)
    >>> x, masks = pre(np.random.default_rng(0).random((100, 100)), {"lung": np.ones((100, 100), bool)})
    >>> tuple(x.shape), tuple(masks["lung"].shape)
    ((3, 64, 64), (64, 64))
    >>> Preprocess.from_dict(pre.to_dict()) == pre
    True
    """

    size: int | tuple[int, int] = 224
    mode: str = "resize"
    channels: int = 1
    normalize: str = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    window: tuple[float, float] | None = field(default=None)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalize the fields once, here
        set_(self, "size", _size(self.size))
        set_(self, "percentiles", _percentiles(self.percentiles))
        set_(self, "window", _window(self.window))
        _choice("mode", self.mode, MODES)
        _choice("normalize", self.normalize, NORMALIZATIONS)
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ArgumentError(f"Preprocess(channels={self.channels!r}): must be 1 (grey) or 3 (grey repeated).")

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-able plain types (lists, not tuples)."""
        return {
            "size": list(self.size), "mode": self.mode, "channels": int(self.channels),
            "normalize": self.normalize, "percentiles": list(self.percentiles),
            "window": None if self.window is None else list(self.window),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocess:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error, missing keys take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArgumentError(f"Preprocess.from_dict: unknown keys {unknown}; expected some of {sorted(known)}.")
        return cls(**dict(d))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Preprocess):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    # ------------------------------------------------------------------ transform
    def geometry(self, shape: tuple[int, ...], *, warn: bool = True) -> Geometry:
        """The :class:`Geometry` this preprocessing applies to an input plane of ``shape = (h, w)``; ``warn``:
        an :class:`AspectRatioWarning` when ``mode="resize"`` stretches it (:meth:`prepare` warns once for many)."""
        in_shape = tuple(int(s) for s in shape)
        if len(in_shape) != 2 or min(in_shape) < 1:
            raise ArgumentError(f"Preprocess.geometry needs a 2D shape (h, w) with positive sides; got {shape}.")
        if self.mode == "resize":
            if warn:
                warn_if_stretched([in_shape], self.size, stacklevel=3)
            return Geometry(in_shape, self.size, self.size, (0, 0))
        scale = min(self.size[0] / in_shape[0], self.size[1] / in_shape[1])
        resized = tuple(min(out, max(1, round(s * scale))) for s, out in zip(in_shape, self.size))
        offset = tuple((out - r) // 2 for out, r in zip(self.size, resized))
        return Geometry(in_shape, self.size, resized, offset)

    def __call__(
        self, image: MedicalImage | np.ndarray, masks: Mapping[str, Any] | None = None, *, warn: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Preprocess one image and its masks.

        Parameters
        ----------
        image : MedicalImage or numpy.ndarray
            A 2D plane ``(H, W)`` (``(1, H, W)`` is squeezed).
        masks : dict of str to array, optional
            Boolean (or 0/1) planes of the image's shape.
        warn : bool
            Warn (:class:`AspectRatioWarning`) when ``mode="resize"`` stretches the image.

        Returns
        -------
        (torch.Tensor, dict of str to torch.BoolTensor)
            The float32 ``C x H x W`` tensor and the masks on the output grid (``{}`` without masks).
        """
        plane, window = _plane(image)
        geo = self.geometry(plane.shape, warn=warn)
        scaled = self._intensity(plane, window)
        pixels = torch.from_numpy(geo.image(scaled, pad_value=float(scaled.min())))
        tensor = pixels.unsqueeze(0).repeat(self.channels, 1, 1)
        if self.normalize == "imagenet":
            tensor = self._standardize(tensor)
        return tensor.contiguous(), self.apply_masks(masks, plane.shape)

    def apply_masks(self, masks: Mapping[str, Any] | None, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """Send masks of an image of ``shape`` through this geometry (nearest neighbour, same padding)."""
        if not masks:
            return {}
        geo = self.geometry(shape, warn=False)  # the image itself warns
        return {name: torch.from_numpy(geo.mask(_mask(mask, name, geo.in_shape))) for name, mask in masks.items()}

    def _intensity(self, plane: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
        return scale_intensity(plane, self.normalize, self.window or window, self.percentiles, "Preprocess")

    def _standardize(self, tensor: torch.Tensor) -> torch.Tensor:
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        if self.channels == 1:
            mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
        return (tensor - mean[:, None, None]) / std[:, None, None]


def _stretched(in_shape: tuple[int, int], out_shape: tuple[int, int]) -> bool:
    ratio = (in_shape[1] / in_shape[0]) / (out_shape[1] / out_shape[0])
    return bool(abs(np.log(ratio)) > np.log1p(ASPECT_TOLERANCE))


def warn_if_stretched(shapes: Sequence[tuple[int, int]], out_shape: tuple[int, int], *, stacklevel: int = 2,
                      note: str = "") -> bool:
    """One :class:`AspectRatioWarning` for all planes of ``shapes`` (``(h, w)``) that ``mode="resize"`` stretches
    to ``out_shape``, quoting their real sizes (``note`` is appended); returns whether it warned. The advice is
    what a user of a trained checkpoint can do: its Preprocess is part of the model, so the images must be
    cropped or padded, not the mode changed."""
    bad = [tuple(int(v) for v in s) for s in shapes if _stretched(tuple(s), tuple(out_shape))]
    if not bad:
        return False
    sizes = sorted({f"{w} x {h}" for h, w in bad})
    what = (f"this {sizes[0]} (width x height) image" if len(shapes) == 1 else
            f"{len(bad)} of {len(shapes)} images (width x height: {', '.join(sizes[:3])}"
            f"{' ...' if len(sizes) > 3 else ''})")
    out_h, out_w = out_shape
    warnings.warn(f"Preprocess(mode='resize') stretches {what} to the model's {out_w} x {out_h} "
                  "input, which distorts anatomy. The model was trained with this preprocessing, so keep it and "
                  f"crop or pad the image(s) to a width:height of {out_w}:{out_h} before passing them (e.g. a "
                  f"centred crop of image.array){note}.", AspectRatioWarning, stacklevel=stacklevel + 1)
    return True


def prepare_many(preprocess, images: Sequence) -> torch.Tensor:
    """``N x C x H x W`` (``N x C x D x H x W`` for a ``VolumePreprocess``): every image through ``preprocess``,
    with at most one :class:`AspectRatioWarning` for the whole call (:func:`warn_if_stretched`)."""
    if not isinstance(preprocess, Preprocess):
        return torch.stack([preprocess(im)[0] for im in images])
    tensors = [preprocess(im, warn=False)[0] for im in images]
    if preprocess.mode == "resize":
        warn_if_stretched([_plane(im)[0].shape for im in images], preprocess.size, stacklevel=3)
    return torch.stack(tensors)


def _plane(image: MedicalImage | np.ndarray) -> tuple[np.ndarray, tuple[float, float] | None]:
    """A finite float32 2D plane and its default window (``None`` for a plain array)."""
    window = image.window if isinstance(image, MedicalImage) else None
    array = image.array if isinstance(image, MedicalImage) else np.asarray(image)
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ArgumentError(f"Preprocess takes a 2D image (H, W); got shape {array.shape}. Convert colour to grey "
                            "(read_image(..., rgb='gray')) or pick a slice of a volume first.")
    if array.size == 0:
        raise ArgumentError(f"Preprocess got an empty image of shape {array.shape}.")
    array = array.astype(np.float32, copy=False)
    bad = array.size - int(np.isfinite(array).sum())
    if bad:
        raise ArgumentError(f"Preprocess got an image with {bad} NaN/inf pixels; clean it first (numpy.nan_to_num).")
    return array, window


def _mask(mask: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.shape != shape:
        raise ArgumentError(f"Mask {name!r} has shape {array.shape} but the image is {shape}; "
                            "masks must be drawn on the image's own grid.")
    return array.astype(bool)


def _size(size: Any) -> tuple[int, int]:
    values = (size, size) if np.ndim(size) == 0 else tuple(size)
    if len(values) != 2 or any(isinstance(v, bool) or int(v) != v or int(v) < 1 for v in values):
        raise ArgumentError(f"Preprocess(size={size!r}): give a positive int or an (H, W) pair of positive ints.")
    return (int(values[0]), int(values[1]))


def _percentiles(p: Any) -> tuple[float, float]:
    lo, hi = (float(v) for v in p)
    if not 0.0 <= lo < hi <= 100.0:
        raise ArgumentError(f"Preprocess(percentiles={p!r}): need 0 <= low < high <= 100.")
    return (lo, hi)


def _window(window: Any) -> tuple[float, float] | None:
    if window is None:
        return None
    center, width = (float(v) for v in window)
    if not width > 0:
        raise ArgumentError(f"Preprocess(window={window!r}): the width (second value) must be positive.")
    return (center, width)


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ArgumentError(f"Preprocess({name}={value!r}): must be one of {list(options)}.")


def scale_intensity(array: np.ndarray, normalize: str, window: tuple[float, float] | None,
                    percentiles: tuple[float, float], who: str) -> np.ndarray:
    """Intensities to [0, 1] float32: a (center, width) window, the ``percentiles`` of ``array``, or unchanged
    (``normalize="none"``); a constant image (or a zero-width window) gives zeros. Shared by :class:`Preprocess`
    and :class:`~xaikit.data.VolumePreprocess` (``who`` names the caller in the error)."""
    if normalize == "none":
        return array
    if normalize == "window":
        if window is None:
            raise ArgumentError(f"{who}(normalize='window') got a plain array and has no window; pass "
                                "window=(center, width) (e.g. (-600, 1500) for lung CT) or give a MedicalImage.")
        center, width = window
        lo, hi = center - width / 2.0, center + width / 2.0
    else:
        lo, hi = np.percentile(array, percentiles)
    if hi <= lo:  # a constant image (or window of zero width): nothing to scale
        return np.zeros_like(array)
    return np.clip((array - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
