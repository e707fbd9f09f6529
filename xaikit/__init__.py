"""xaikit: explain deep-learning models on medical images, from Jupyter.

Submodules (imported on first use, so ``import xaikit`` stays fast): ``io``, ``phantom``, ``data``, ``models``,
``train``, ``checkpoint``, ``saliency``, ``regions``, ``stats``, ``evaluation``, ``viz``, ``widgets``, ``report``,
``samples``, ``worlds``, ``demo``, ``domain``, and the front doors ``inference``, ``cli``, ``service`` (needs fastapi),
``cluster`` (needs distributed).

The front door, also imported on first use: explain one image in a few lines.

>>> from xaikit import read_image, load_checkpoint, explain, overlay, save_figure  # doctest: +SKIP
>>> image = read_image("my_radiograph.jpeg")  # doctest: +SKIP
>>> ckpt = load_checkpoint("data_samples/models/phantom_small_cnn.pt")  # doctest: +SKIP
>>> x = ckpt.prepare(image)  # doctest: +SKIP
>>> exp = explain(ckpt.model, x, "gradcam")  # doctest: +SKIP
>>> title = ckpt.captions(x, exp.probs)[0]  # prediction + domain flag  # doctest: +SKIP
>>> save_figure(overlay(image, exp.maps[0], preprocess=ckpt.preprocess, title=title), "my_overlay")  # doctest: +SKIP
"""
from __future__ import annotations

import importlib

from .errors import *  # noqa: F401,F403  (the exception hierarchy is part of the top-level API)
from .errors import __all__ as _errors_all

__version__ = "0.1.0"

_SUBMODULES = {
    "io", "phantom", "data", "models", "train", "checkpoint", "saliency", "regions", "stats", "evaluation", "viz",
    "widgets", "report", "samples", "worlds", "demo", "domain", "inference", "cli", "service", "cluster",
}

#: What a user needs to explain one image, re-exported from where it lives (imported on first use).
_FRONT_DOOR = {
    "read_image": "io", "read_volume": "io", "load_checkpoint": "checkpoint", "explain": "saliency",
    "overlay": "viz.saliency",
    "save_figure": "viz.export", "Preprocess": "data", "assess": "train",
}

__all__ = ["__version__", *_errors_all, *sorted(_SUBMODULES), *sorted(_FRONT_DOOR)]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _FRONT_DOOR:
        return getattr(importlib.import_module(f".{_FRONT_DOOR[name]}", __name__), name)
    raise AttributeError(f"module 'xaikit' has no attribute {name!r}")
