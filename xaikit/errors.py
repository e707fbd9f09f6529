"""One exception hierarchy for the whole kit.

Every error a user can cause derives from :class:`XaikitError`, so ``except xaikit.XaikitError`` catches
exactly the kit's own complaints. A message names the file or argument, what is wrong, and what to do.
Subclasses that correspond to a builtin category also derive from it (``ValueError``, ``FileNotFoundError``)
so generic code keeps working.
"""
from __future__ import annotations

__all__ = [
    "XaikitError",
    "ArgumentError",
    "ImageReadError",
    "ImageWriteError",
    "ManifestError",
    "DatasetError",
    "PreprocessMismatchError",
    "ModelError",
    "CheckpointError",
    "TrainingError",
    "ExplanationError",
    "MemoryBudgetError",
    "RegionError",
    "StatsError",
    "EvaluationError",
]


class XaikitError(Exception):
    """Base class of every error raised by xaikit on purpose."""


class ArgumentError(XaikitError, ValueError):
    """A function argument has a wrong value, type or shape."""


class ImageReadError(XaikitError, OSError):
    """A file could not be read as a medical image (missing, truncated, no pixels, no decoder, ...)."""


class ImageWriteError(XaikitError, OSError):
    """An image could not be written."""


class ManifestError(XaikitError, ValueError):
    """A dataset manifest (CSV) has missing columns, unknown labels or rows pointing at missing files."""


class DatasetError(XaikitError, ValueError):
    """A dataset cannot be used as asked (one class, empty split, patient leak, ...)."""


class PreprocessMismatchError(XaikitError, ValueError):
    """A model is used with a different preprocessing than the one it was trained with."""


class ModelError(XaikitError, ValueError):
    """A model cannot be built or used as asked (unknown architecture, missing weights, bad layer)."""


class CheckpointError(XaikitError, OSError):
    """A checkpoint file is missing, truncated, tampered with or of another architecture."""


class TrainingError(XaikitError, RuntimeError):
    """Training cannot continue (non-finite loss, empty validation set, ...)."""


class ExplanationError(XaikitError, ValueError):
    """A saliency method cannot be applied as asked (unknown method, bad target, non-finite map, ...)."""


class MemoryBudgetError(ExplanationError):
    """The memory budget is too small for even one sample of the requested method."""


class RegionError(XaikitError, ValueError):
    """A region set is inconsistent (shape mismatch, duplicate names, empty)."""


class StatsError(XaikitError, ValueError):
    """A statistical analysis cannot be run on the data given (too few samples, NaN, empty family)."""


class EvaluationError(XaikitError, ValueError):
    """An explanation-quality metric cannot be computed as asked (non-finite scores, nothing to randomize...)."""
