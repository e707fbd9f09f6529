"""Training augmentations that move the image and its masks together.

Geometry goes through :mod:`torchvision.transforms.v2`: the image is a ``tv_tensors.Image`` and every mask a
``tv_tensors.Mask``, so one call samples one set of parameters for all of them and masks are resampled by
nearest neighbour (they stay boolean and aligned with the pixels).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..errors import ArgumentError

__all__ = ["Augment"]


@dataclass(frozen=True)
class Augment:
    """Random geometric and intensity changes for training, applied jointly to ``(image, masks)``.

    Parameters
    ----------
    flip : bool
        Mirror left-right with probability 1/2. **Off by default**: a mirrored chest radiograph shows the
        heart on the patient's right (it looks like dextrocardia) and swaps the sides of left/right
        anatomy, so a model trained on it must unlearn real left/right asymmetry, and side-specific findings
        (and mask names such as ``left_lung``) no longer sit where the anatomy says. Turn it on only for
        images without a meaningful side.
    rotate_deg : float
        Rotation drawn uniformly from ``[-rotate_deg, rotate_deg]`` degrees (patient positioning varies a little).
    scale : (float, float)
        Zoom factor range.
    translate : float
        Largest shift as a fraction of width and height.
    brightness, contrast : float
        Intensity factors drawn from ``[1 - b, 1 + b]``: brightness multiplies the pixels, contrast scales
        them about the image mean. Applied without clamping (``torchvision``'s colour jitter clamps float
        images to ``[0, 1]``, which would corrupt ImageNet-standardized or physical-unit tensors), so they
        suit any :class:`~xaikit.data.Preprocess` normalization; the factors are fractions, so use them with
        the ``[0, 1]`` normalizations (``"percentile"``, ``"window"``) for meaningful amounts.
    seed : int, optional
        Seed of a private generator, making the sequence of augmentations reproducible without touching
        torch's global RNG. Note that DataLoader workers each get a copy of the generator (and so repeat
        one another's draws); with ``num_workers > 0`` leave ``seed=None`` and seed the DataLoader.

    Notes
    -----
    Areas moved in from outside the image are filled with the image's minimum (as letterbox padding is)
    and with ``False`` in masks.

    Examples
    --------
    >>> aug = Augment(rotate_deg=10, seed=0)
    >>> x, masks = aug(torch.rand(1, 32, 32), {"lung": torch.ones(32, 32, dtype=torch.bool)})
    >>> x.shape, masks["lung"].dtype
    (torch.Size([1, 32, 32]), torch.bool)
    """

    flip: bool = False
    rotate_deg: float = 5.0
    scale: tuple[float, float] = (0.95, 1.05)
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    seed: int | None = None

    def __post_init__(self) -> None:
        lo, hi = (float(s) for s in self.scale)
        if not 0 < lo <= hi:
            raise ArgumentError(f"Augment(scale={self.scale!r}): need 0 < low <= high.")
        object.__setattr__(self, "scale", (lo, hi))
        for name in ("rotate_deg", "translate", "brightness", "contrast"):
            if float(getattr(self, name)) < 0:
                raise ArgumentError(f"Augment({name}={getattr(self, name)!r}) must be >= 0.")
        if not 0 <= self.translate <= 1 or not self.brightness < 1 or not self.contrast < 1:
            raise ArgumentError("Augment: translate must be in [0, 1], brightness and contrast below 1.")
        generator = None if self.seed is None else torch.Generator().manual_seed(int(self.seed))
        object.__setattr__(self, "_generator", generator)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain types (for a training summary)."""
        d = asdict(self)
        d["scale"] = list(self.scale)
        return d

    def __call__(
        self, image: torch.Tensor, masks: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Augment a ``C x H x W`` float tensor and its ``H x W`` boolean masks with one parameter draw."""
        if image.ndim != 3:
            raise ArgumentError(f"Augment takes a C x H x W tensor; got shape {tuple(image.shape)}.")
        masks = dict(masks or {})
        if self._generator is None:
            return self._apply(image, masks)
        seed = int(torch.randint(0, 2**62, (1,), generator=self._generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._apply(image, masks)

    def _apply(self, image: torch.Tensor, masks: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        wrapped = {name: tv_tensors.Mask(m.bool()) for name, m in masks.items()}
        moved, moved_masks = self._geometry(float(image.min()))(tv_tensors.Image(image), wrapped)
        out = self._intensity(moved.as_subclass(torch.Tensor))
        return out, {name: m.as_subclass(torch.Tensor) for name, m in moved_masks.items()}

    def _geometry(self, fill: float) -> v2.Transform:
        steps = [v2.RandomHorizontalFlip(p=0.5)] if self.flip else []
        steps.append(v2.RandomAffine(
            degrees=float(self.rotate_deg), translate=(self.translate, self.translate), scale=self.scale,
            interpolation=v2.InterpolationMode.BILINEAR, fill={tv_tensors.Image: fill, tv_tensors.Mask: 0},
        ))
        return v2.Compose(steps)

    def _intensity(self, image: torch.Tensor) -> torch.Tensor:
        factors = 1 + (2 * torch.rand(2) - 1) * torch.tensor([self.brightness, self.contrast])
        image = image * factors[0]
        mean = image.mean()
        return (image - mean) * factors[1] + mean
