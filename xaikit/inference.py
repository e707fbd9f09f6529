"""What the front doors (command line, HTTP service) share: a checkpoint in, predictions and overlays out.

Thin glue over the package, never a second implementation: images come from :func:`xaikit.io.read_image`, go
through the checkpoint's own :class:`~xaikit.data.Preprocess`, the model predicts, :func:`xaikit.saliency.explain`
explains, and :func:`overlay_rgb` lays a map back on the *original* image through ``Preprocess.geometry(...).inverse``.

Nothing here names a patient: a source is known by the SHA-256 of its bytes (:func:`content_id`), never by its
file name, and image metadata is the de-identified ``MedicalImage.meta``.

Example
-------
>>> from xaikit.inference import load_model, planes, to_batch, predict
>>> ckpt = load_model("data_samples/models/phantom_small_cnn.pt")          # doctest: +SKIP
>>> plane = planes(read_image("data_samples/images/img00000.png"))[0][1]    # doctest: +SKIP
>>> predict(ckpt.model, to_batch(ckpt, [plane]))                           # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
from typing import Sequence

import numpy as np
import torch

from .checkpoint import Checkpoint, load_checkpoint
from .errors import ArgumentError, CheckpointError
from .io.image import MedicalImage

__all__ = ["SLICE_POLICIES", "load_model", "content_id", "planes", "to_batch", "predict", "overlay_rgb",
           "map_sign", "map_summary", "titled"]

#: How a volume meets a 2D model: its middle slice, every slice, or one slice index (an int).
SLICE_POLICIES = ("middle", "all")


def load_model(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint that carries its ``Preprocess`` (the front doors need it to read raw images)."""
    ckpt = load_checkpoint(path)
    if ckpt.preprocess_dict is None:
        raise CheckpointError(f"{path} holds no Preprocess, so raw images cannot be prepared the way the model "
                              "was trained. Save it again with save_checkpoint(..., preprocess=...).")
    return ckpt


def content_id(data: bytes | str | os.PathLike) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes (or of ``bytes``): a name that reveals no one."""
    h = hashlib.sha256()
    if isinstance(data, (bytes, bytearray)):
        h.update(data)
    else:
        with open(data, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def planes(image: MedicalImage, slices: str | int = "middle") -> list[tuple[int | None, MedicalImage]]:
    """The 2D planes a 2D model sees in ``image``: ``[(None, image)]`` for a 2D image, slices of a volume.

    Parameters
    ----------
    image : MedicalImage
    slices : "middle", "all" or int
        For a volume (``D x H x W``): the middle slice, every slice, or slice ``slices`` (0-based).
    """
    if not image.is_volume:
        return [(None, image)]
    depth = image.shape[0]
    if slices == "middle":
        chosen = [depth // 2]
    elif slices == "all":
        chosen = list(range(depth))
    elif isinstance(slices, (int, np.integer)) and not isinstance(slices, bool) and 0 <= slices < depth:
        chosen = [int(slices)]
    else:
        raise ArgumentError(f"slices={slices!r}: use 'middle', 'all' or a slice index 0..{depth - 1} "
                            f"(this volume has {depth} slices).")
    return [(k, _slice(image, k)) for k in chosen]


def _slice(image: MedicalImage, k: int) -> MedicalImage:
    return MedicalImage(image.array[k], spacing=image.spacing[1:], window=image.window, modality=image.modality,
                        meta=dict(image.meta), source=image.source)


def to_batch(ckpt: Checkpoint, images: Sequence[MedicalImage]) -> torch.Tensor:
    """``N x C x H x W`` float32: each 2D image through the checkpoint's own ``Preprocess``."""
    from .data.preprocess import prepare_many  # one aspect-ratio warning per call, quoting the real sizes

    return prepare_many(ckpt.preprocess, images) if images else torch.empty(0)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Softmax probabilities ``N x K`` (float64 sums to 1), the model in eval mode and left as it was."""
    was_training = model.training
    model.eval()
    try:
        logits = [model(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.softmax(torch.cat(logits).double(), 1)


def map_sign(saliency_map: np.ndarray) -> str:
    """``"positive"`` for a map without negative values (Grad-CAM), else ``"signed"``."""
    return "positive" if float(np.min(saliency_map)) >= 0 else "signed"


def overlay_rgb(image: MedicalImage, saliency_map, preprocess, *, alpha: float = 0.7,
                clip_pct: float = 99.5) -> np.ndarray:
    """The map laid on the original image at the image's own resolution, as ``H x W x 3`` uint8.

    The map (at the model's input grid) goes back onto the original grid through
    ``preprocess.geometry(shape).inverse`` (``preprocess=None``: the map already lies on the image's grid).
    Opacity follows ``|relevance|`` (zero relevance is transparent, so the image shows through), up to
    ``alpha``; signed maps use the diverging ``RdBu_r`` scale centred at zero, non-negative maps the one-sided
    ``Reds``. Scaling is :func:`xaikit.viz.saliency.display_map`'s.
    """
    from .viz.export import colorize
    from .viz.saliency import SIGN_MODES, display_map

    m = saliency_map.detach().cpu().numpy() if isinstance(saliency_map, torch.Tensor) else np.asarray(saliency_map)
    plane = image.array
    back = m if preprocess is None else preprocess.geometry(plane.shape, warn=False).inverse(m)  # prepare warned
    sign = map_sign(m)
    z = display_map(back, sign=sign, clip_pct=clip_pct)
    colour = colorize(z, SIGN_MODES[sign], vmin=-1.0 if sign == "signed" else 0.0, vmax=1.0).astype(np.float32)
    grey = np.repeat(image.display()[..., None] * 255.0, 3, axis=2)
    a = (alpha * np.abs(z))[..., None]
    return np.clip(grey * (1 - a) + colour * a, 0, 255).round().astype(np.uint8)


def map_summary(saliency_map) -> dict[str, float]:
    """Numbers that describe one map: extremes, mean, mean |value|, positive share of |mass|, top-5% share."""
    m = saliency_map.detach().cpu().double().numpy() if isinstance(saliency_map, torch.Tensor) else \
        np.asarray(saliency_map, dtype=np.float64)
    mag = np.abs(m).ravel()
    total = float(mag.sum())
    top = np.sort(mag)[::-1][: max(1, int(np.ceil(0.05 * mag.size)))]
    return {
        "map_min": float(m.min()), "map_max": float(m.max()), "map_mean": float(m.mean()),
        "map_mean_abs": float(mag.mean()),
        "map_positive_frac": float(np.clip(m, 0, None).sum() / total) if total > 0 else float("nan"),
        "map_top5pct_frac": float(top.sum() / total) if total > 0 else float("nan"),
    }


def titled(rgb: np.ndarray, text: str, *, alert: bool = False) -> np.ndarray:
    """``rgb`` (``H x W x 3`` uint8) with a band above it holding ``text`` (white on black; white on dark red
    when ``alert``, e.g. out of domain), so a PNG shared alone still says what the model predicted and whether
    the input was like its training data. The font scales with the image width; a text too long for one line
    breaks at its `` | `` separators."""
    from PIL import Image, ImageDraw, ImageFont

    width = rgb.shape[1]
    size = max(10, min(48, width // 40))
    font = ImageFont.load_default(size=size)
    lines = [text] if font.getlength(text) <= width - 8 else text.split(" | ")
    step = int(size * 1.3)
    band = Image.new("RGB", (width, step * len(lines) + int(size * 0.4)), (150, 0, 0) if alert else (0, 0, 0))
    draw = ImageDraw.Draw(band)
    for j, line in enumerate(lines):
        draw.text((4, int(size * 0.2) + j * step), line, fill=(255, 255, 255), font=font)
    return np.concatenate([np.asarray(band, dtype=np.uint8), rgb], axis=0)
