"""xaikit: explain deep-learning models on medical images, from Jupyter.

Submodules (imported on first use, so ``import xaikit`` stays fast): ``io``, ``phantom``, ``data``, ``models``,
``train``, ``checkpoint``, ``saliency``, ``regions``, ``stats``, ``evaluation``, ``viz``, ``widgets``, ``report``,
``samples``, ``demo``, and the front doors ``inference``, ``cli``, ``service`` (needs fastapi), ``cluster`` (needs distributed).
"""
from __future__ import annotations

import importlib

from .errors import *  # noqa: F401,F403  (the exception hierarchy is part of the top-level API)
from .errors import __all__ as _errors_all

__version__ = "0.1.0"

_SUBMODULES = {
    "io", "phantom", "data", "models", "train", "checkpoint", "saliency", "regions", "stats", "evaluation", "viz",
    "widgets", "report", "samples", "demo", "inference", "cli", "service", "cluster",
}

__all__ = ["__version__", *_errors_all, *sorted(_SUBMODULES)]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'xaikit' has no attribute {name!r}")
