"""The :class:`Explanation` container: signed maps at input resolution plus full provenance.

Saved as one file with ``torch.save`` of plain types only (tensors, str, numbers, lists, dicts), written
atomically, read back with ``torch.load(weights_only=True)``, and checked against a SHA-256 of everything
stored (maps, probabilities, targets, ids, parameters, provenance), so a damaged file is detected instead
of trusted: a single flipped bit in ``probs`` is as fatal as one in the maps.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import torch

from .._util import PERMISSION_HINT, WRITE_HINT, atomic_write, file_problem
from ..errors import ExplanationError

__all__ = ["Explanation", "plain"]

FORMAT = "xaikit.explanation"
FORMAT_VERSION = 2  # 2: the checksum covers every stored entry (1: the maps only)


@dataclass
class Explanation:
    """Saliency maps of N inputs for one method, with everything needed to reproduce and judge them.

    Attributes
    ----------
    maps : torch.Tensor
        float32 ``N x H x W`` (``N x D x H x W`` for volumes), signed, at input resolution; channels
        reduced as named by ``reduction``. Never normalized: views normalize.
    method : str
        Registry name of the method.
    params : dict
        Resolved method parameters plus what the engine decided (layer, canonizers, chunking, seed).
    target_policy : str
        ``"pred"``, ``"label"``, ``"index"``, ``"callable"``, ``"segmentation"`` or ``"detection"``.
    targets : torch.Tensor
        long ``N``: explained class per input (``-1`` for callable targets; the mask's class or the
        detection's label for segmentation/detection targets).
    preds : torch.Tensor
        long ``N``: arg-max class of the model (``-1`` for segmentation and detection models).
    probs : torch.Tensor
        float ``N x K``: softmax of the logits (``N x 0`` for segmentation and detection models).
    image_ids : list of str
    labels : torch.Tensor or None
    raw : torch.Tensor or None
        ``N x C x H x W`` attribution before channel reduction (CAMs: the signed map, upsampled).
    reduction : str
        How channels were reduced: ``"sum"``, ``"mean"``, ``"abs_sum"``, ``"l2"``, ``"max_abs"`` or
        ``"none"`` (single-channel layer maps).
    versions : dict
        Library versions (torch, captum, zennit, xaikit).
    """

    maps: torch.Tensor
    method: str
    params: dict
    target_policy: str
    targets: torch.Tensor
    preds: torch.Tensor
    probs: torch.Tensor
    image_ids: list
    labels: torch.Tensor | None = None
    raw: torch.Tensor | None = None
    reduction: str = "sum"
    versions: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def __repr__(self) -> str:
        return (
            f"Explanation(method={self.method!r}, n={len(self)}, shape={tuple(self.maps.shape[1:])}, "
            f"target_policy={self.target_policy!r}, reduction={self.reduction!r})"
        )

    def select(self, index: int | slice | Sequence[int]) -> "Explanation":
        """A new Explanation holding only the chosen inputs."""
        idx = [index] if isinstance(index, int) else index
        pick = (lambda t: None if t is None else t[idx]) if isinstance(idx, slice) else (
            lambda t: None if t is None else t[list(idx)]
        )
        ids = self.image_ids[idx] if isinstance(idx, slice) else [self.image_ids[i] for i in idx]
        return Explanation(
            pick(self.maps), self.method, dict(self.params), self.target_policy, pick(self.targets),
            pick(self.preds), pick(self.probs), list(ids), pick(self.labels), pick(self.raw), self.reduction,
            dict(self.versions),
        )

    @classmethod
    def concat(cls, parts: Sequence["Explanation"]) -> "Explanation":
        """Join Explanations of the same method along the batch axis (params of the first are kept)."""
        if not parts:
            raise ExplanationError("Explanation.concat needs at least one Explanation.")
        methods = {p.method for p in parts}
        if len(methods) != 1:
            raise ExplanationError(f"cannot concatenate Explanations of different methods: {sorted(methods)}.")

        def cat(name: str):
            values = [getattr(p, name) for p in parts]
            if any(v is None for v in values):
                return None
            return torch.cat(values)

        first = parts[0]
        return cls(
            cat("maps"), first.method, dict(first.params), first.target_policy, cat("targets"), cat("preds"),
            cat("probs"), [i for p in parts for i in p.image_ids], cat("labels"), cat("raw"), first.reduction,
            dict(first.versions),
        )

    def to_dict(self) -> dict:
        """Plain-type dict (what :meth:`save` writes)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["params"] = plain(self.params)
        out["image_ids"] = [str(i) for i in self.image_ids]
        out["maps"] = self.maps.detach().cpu().contiguous()
        out["versions"] = plain(self.versions)
        out["format"], out["format_version"] = FORMAT, FORMAT_VERSION
        out["sha256"] = _content_digest(out)
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "Explanation":
        if data.get("format") != FORMAT:
            raise ExplanationError(f"{source} is not an xaikit Explanation file (format={data.get('format')!r}).")
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ExplanationError(f"{source} is damaged or incomplete: it lacks {missing}; recompute it.")
        if data.get("format_version") == 1:
            _check_v1(data, source)
        elif "sha256" not in data or _content_digest(data) != data["sha256"]:
            raise ExplanationError(f"{source} is damaged: its contents do not match the checksum (SHA-256) "
                                   "stored at save time (maps, probabilities, targets, ids or provenance changed). "
                                   "Recompute it.")
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def save(self, path: str | os.PathLike) -> None:
        """Write to one file atomically (``torch.save`` of plain types)."""
        try:
            with atomic_write(path, "wb") as fh:
                torch.save(self.to_dict(), fh)
        except OSError as exc:
            raise ExplanationError(f"cannot write Explanation file {os.fspath(path)!r} ({type(exc).__name__}: "
                                   f"{exc}); {WRITE_HINT}") from exc

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Explanation":
        """Read a file written by :meth:`save` (``weights_only=True``; damaged files raise ExplanationError)."""
        problem = file_problem(path)
        if problem:
            raise ExplanationError(f"Explanation file {os.fspath(path)!r} {problem}.")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except PermissionError as exc:
            raise ExplanationError(f"Explanation file {os.fspath(path)!r}: permission denied: "
                                   f"{PERMISSION_HINT}") from exc
        except Exception as exc:  # torch/pickle raise RuntimeError, UnpicklingError, EOFError... on damage
            raise ExplanationError(
                f"Explanation file {os.fspath(path)!r} cannot be read ({type(exc).__name__}: {exc}); "
                "it is truncated, damaged or not an Explanation. Recompute it."
            ) from exc
        if not isinstance(data, dict):
            raise ExplanationError(f"{os.fspath(path)!r} does not hold an Explanation.")
        return cls.from_dict(data, source=repr(os.fspath(path)))


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _check_v1(data: dict, source: str) -> None:
    """Files of format 1 checksummed only their maps: verify those and say the rest cannot be."""
    if _digest(data["maps"]) != data.get("maps_sha256"):
        raise ExplanationError(f"{source} is damaged: its maps do not match the stored checksum; recompute it.")
    warnings.warn(f"{source} is an Explanation file of format 1, whose checksum covers the maps only; "
                  "probabilities, targets and provenance cannot be verified. Save it again to upgrade.",
                  stacklevel=4)


def _content_digest(data: dict) -> str:
    """SHA-256 over every entry except the checksum itself, in a canonical encoding (key order, dtype,
    shape and bytes of tensors, type of every scalar)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in data.items() if k not in ("sha256", "maps_sha256")})
    return h.hexdigest()


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}|".encode())
        for key in sorted(obj, key=str):
            _feed(h, str(key))
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}|".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"{type(obj).__name__}|{obj!r}|".encode())


def plain(obj: Any) -> Any:
    """Convert ``obj`` to types ``torch.load(weights_only=True)`` accepts (others become their repr)."""
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, str):
        return str(obj)  # str subclasses (torch.__version__) are not loadable with weights_only
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return repr(obj)
