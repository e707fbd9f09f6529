"""Safe checkpoints: weights plus everything needed to use them the way they were trained.

A checkpoint is one ``torch.save`` file holding only tensors and plain types (so it loads with
``torch.load(weights_only=True)``): the state dict, the architecture name and arguments (rebuilt through
:func:`xaikit.models.build_model`), the class names, the :class:`~xaikit.data.Preprocess` as a dict, a training
summary, a format version and a SHA-256 digest of all of these, so a damaged or edited file is refused.

A loaded model carries ``model.xaikit_preprocess`` and ``model.xaikit_classes``; :func:`check_preprocess` raises
:class:`~xaikit.errors.PreprocessMismatchError` when someone feeds it differently preprocessed images.

Example
-------
>>> from xaikit.models import build_model
>>> from xaikit.checkpoint import save_checkpoint, load_checkpoint
>>> model = build_model("small_cnn", num_classes=2)
>>> save_checkpoint("model.pt", model, classes=["normal", "pneumonia"], preprocess={"size": 128})  # doctest: +SKIP
>>> ckpt = load_checkpoint("model.pt", preprocess={"size": 128})  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._util import PERMISSION_HINT, WRITE_HINT, atomic_write, file_problem
from .data import preprocess_from_dict
from .data.preprocess import prepare_many
from .domain import assess_domain, prediction_caption
from .errors import ArgumentError, CheckpointError, ModelError, PreprocessMismatchError
from .models import build_model

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "check_preprocess",
    "preprocess_dict",
]

FORMAT = "xaikit-checkpoint"
FORMAT_VERSION = 1
_META_KEYS = ("format", "format_version", "arch", "arch_kwargs", "classes", "preprocess", "summary")


def _value_ci(v: Any) -> dict[str, float]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    v += [float("nan")] * (3 - len(v))
    return {"value": float(v[0]), "ci_low": float(v[1]), "ci_high": float(v[2])}


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode) and how it was built and trained.

    ``preprocess_dict`` is the stored :meth:`Preprocess.to_dict`; :attr:`preprocess` rebuilds the object.
    """

    model: nn.Module
    arch: str
    arch_kwargs: dict
    classes: list[str]
    preprocess_dict: dict | None
    summary: dict = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""

    @property
    def card(self) -> dict:
        """The model card (``summary["model_card"]``): training data, image statistics, intended use; ``{}``
        when the checkpoint has none."""
        return dict(self.summary.get("model_card", {}))

    def metrics_table(self, level: str = "class") -> pd.DataFrame:
        """The test metrics stored at training (``summary["test_metrics"]``: ``{metric: [value, lo, hi]}`` or
        ``{class: {metric: [...]}}``) as a tidy table ``[level,] metric, value, ci_low, ci_high``.

        ``level`` names the column of the outer key when metrics are given per class; an empty table when the
        checkpoint stores no test metrics.
        """
        metrics = self.summary.get("test_metrics") or {}
        rows = []
        for key, value in metrics.items():
            if isinstance(value, dict):
                rows += [{level: key, "metric": m, **_value_ci(v)} for m, v in value.items()]
            else:
                rows.append({"metric": key, **_value_ci(value)})
        return pd.DataFrame(rows)
    def captions(self, x: torch.Tensor, probs: torch.Tensor | None = None) -> list[str]:
        """One title per input of ``x`` (the model's input, e.g. :meth:`prepare`'s): the predicted class, its
        probability and the domain flag, ``predicted: pneumonia (p = 0.998) | OUT OF DOMAIN (2.3x threshold)``
        (:func:`xaikit.domain.prediction_caption`). ``probs``: the softmax already computed (``exp.probs``);
        without it the model predicts (no gradients). Does not warn (``explain`` does); for classifiers."""

        if probs is None:
            with torch.no_grad():
                probs = torch.softmax(self.model(x).double(), 1)
        probs = torch.as_tensor(probs).detach().cpu().double()
        distances = assess_domain(self.model, x)
        return [prediction_caption(self.classes[int(p.argmax())], float(p.max()),
                                   None if distances is None else float(distances[i])) for i, p in enumerate(probs)]

    def prepare(self, images) -> torch.Tensor:
        """The ``N x C x H x W`` input of the model for one image or a list (MedicalImage or 2D array), through
        the checkpoint's own :attr:`preprocess`."""
        if self.preprocess is None:
            raise ArgumentError("Checkpoint.prepare: this checkpoint stores no Preprocess; preprocess the images "
                                "yourself with the one the model was trained with.")

        many = isinstance(images, (list, tuple))
        return prepare_many(self.preprocess, images if many else [images])

    @property
    def preprocess(self):
        """The :class:`xaikit.data.Preprocess` (or ``VolumePreprocess``) the model was trained with (``None`` if
        none was saved)."""
        if self.preprocess_dict is None:
            return None

        return preprocess_from_dict(self.preprocess_dict)


def preprocess_dict(preprocess: Any) -> dict | None:
    """A plain, comparable dict from a ``Preprocess`` (``to_dict()``), a mapping, or ``None``."""
    if preprocess is None:
        return None
    if hasattr(preprocess, "to_dict"):
        preprocess = preprocess.to_dict()
    if not isinstance(preprocess, Mapping):
        raise ArgumentError(
            f"preprocess must be a xaikit.data.Preprocess or its to_dict(), got {type(preprocess).__name__}"
        )
    return _plain(dict(preprocess), "preprocess")


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str | None = None,
    arch_kwargs: dict | None = None,
    classes: list[str] | None = None,
    preprocess: Any = None,
    summary: dict | None = None,
) -> Path:
    """Write ``model`` and its provenance to ``path`` atomically; return the path.

    Parameters
    ----------
    path : path-like
        Output file (``.pt``); written through a temporary file, so a crash never leaves half a checkpoint.
    model : torch.nn.Module
        The model; built by :func:`xaikit.models.build_model` unless ``arch`` and ``arch_kwargs`` are given.
    arch, arch_kwargs : str, dict, optional
        Default to ``model.xaikit_arch`` / ``model.xaikit_arch_kwargs``.
    classes : list of str, optional
        Class names in logit order; default ``model.xaikit_classes`` or ``"0", "1", ...``.
    preprocess : Preprocess or dict, optional
        The preprocessing the model was trained with (default ``model.xaikit_preprocess``). Saving without
        one is allowed but then nothing can check it later.
    summary : dict, optional
        Training summary of plain values (numbers, strings, lists, dicts), e.g. from ``FitResult.summary()``.
    """
    arch = arch or getattr(model, "xaikit_arch", None)
    arch_kwargs = dict(arch_kwargs if arch_kwargs is not None else getattr(model, "xaikit_arch_kwargs", {}) or {})
    if arch is None:
        raise ArgumentError("save_checkpoint: arch is unknown; build the model with xaikit.models.build_model "
                            "or pass arch= and arch_kwargs=")
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    _check_state_matches(state, arch, arch_kwargs, ArgumentError, "the model given")
    if nonfinite_tensors(state):
        warnings.warn(f"save_checkpoint: {path}: the model holds NaN/infinite weights "
                      f"({sorted(nonfinite_tensors(state))[:5]}); the file is written, but load_checkpoint will "
                      "refuse it unless allow_nonfinite=True.", stacklevel=2)
    num_classes = arch_kwargs.get("num_classes")
    classes = list(classes if classes is not None else getattr(model, "xaikit_classes", None) or
                   [str(i) for i in range(num_classes or 0)])
    if num_classes is not None and len(classes) != num_classes:
        raise ArgumentError(f"classes has {len(classes)} names {classes} but the model has {num_classes} outputs")
    if preprocess is None:
        preprocess = getattr(model, "xaikit_preprocess", None)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": _plain(arch_kwargs, "arch_kwargs"),
        "classes": [str(c) for c in classes],
        "preprocess": preprocess_dict(preprocess),
        "summary": _plain(summary or {}, "summary"),
    }
    payload = {**meta, "state_dict": state, "sha256": _digest(meta, state)}
    path = Path(path)
    try:
        with atomic_write(path, "wb") as fh:
            torch.save(payload, fh)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {path} ({type(exc).__name__}: {exc}); {WRITE_HINT}") from exc
    return path


def load_checkpoint(path: str | os.PathLike, *, preprocess: Any = None, device: str | torch.device = "cpu",
                    allow_nonfinite: bool = False) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (with ``torch.load(weights_only=True)``).

    Parameters
    ----------
    path : path-like or str
        The checkpoint file, or an MLflow artifact URI such as ``"runs:/<run_id>/model.pt"`` (a run logged by
        ``fit(..., tracking="mlflow")``; needs ``mlflow-skinny``; the current MLflow tracking URI is used).
    preprocess : Preprocess or dict, optional
        The preprocessing you intend to use; if it differs from the saved one,
        :class:`~xaikit.errors.PreprocessMismatchError` lists the differing keys. A dict naming some settings
        (``{"size": 128}``) is checked on those settings only.
    device : str or torch.device
        Where to put the model.
    allow_nonfinite : bool
        Weights or buffers holding NaN or infinity (a run that diverged) make every output, and every
        saliency map, NaN or meaningless, so such a checkpoint is refused with a
        :class:`~xaikit.errors.CheckpointError` naming the tensors. ``True`` loads it anyway, with a
        warning, e.g. to inspect where training diverged.

    Returns
    -------
    Checkpoint
        ``model`` in eval mode with ``xaikit_preprocess``, ``xaikit_classes``, ``xaikit_arch`` set.
    """
    if isinstance(path, str) and path.startswith(_TRACKED_SCHEMES):
        return _load_tracked(path, preprocess=preprocess, device=device)
    path = Path(path)
    payload = _read(path)
    state = payload["state_dict"]
    meta = {k: payload[k] for k in _META_KEYS}
    digest = _digest(meta, state)
    if digest != payload.get("sha256"):
        raise CheckpointError(
            f"{path}: SHA-256 of the contents does not match the one recorded at save time: the file was "
            "modified or corrupted. Do not use it; restore the original file or save the model again."
        )
    _check_finite(path, state, allow_nonfinite)
    model = _rebuild(path, meta["arch"], meta["arch_kwargs"], state)
    _check_classes(path, model, meta["classes"])
    model.eval().to(device)
    model.xaikit_classes = list(meta["classes"])
    model.xaikit_preprocess = meta["preprocess"]
    model.xaikit_domain = meta["summary"].get("domain")  # training domain: explain/evaluate warn far from it
    ckpt = Checkpoint(model, meta["arch"], meta["arch_kwargs"], list(meta["classes"]), meta["preprocess"],
                      meta["summary"], path, digest)
    if preprocess is not None:
        check_preprocess(model, preprocess)
    return ckpt


def check_preprocess(model: nn.Module, preprocess: Any) -> None:
    """Raise :class:`~xaikit.errors.PreprocessMismatchError` if ``preprocess`` differs from the model's.

    A :class:`~xaikit.data.Preprocess` must match in every setting; a plain dict naming some settings
    (``{"size": 128}``) must match in those it names.

    The model's preprocessing is ``model.xaikit_preprocess`` (set by :func:`load_checkpoint`). A model without
    one cannot be checked: a warning says so.
    """
    import warnings

    given = preprocess_dict(preprocess)
    if given is None:
        raise ArgumentError("check_preprocess: preprocess is None; pass the Preprocess you feed the model with")
    saved = getattr(model, "xaikit_preprocess", None)
    if saved is None:
        warnings.warn("the model carries no preprocessing record (not loaded from a checkpoint), so the "
                      "preprocessing cannot be checked; save and load it with xaikit.checkpoint", stacklevel=2)
        return
    saved = preprocess_dict(saved)
    # a plain dict such as {"size": 128} names the settings the caller relies on: those must match the saved ones;
    # a Preprocess object (or its full to_dict()) is the whole preprocessing and must match in every setting
    partial = isinstance(preprocess, Mapping) and not set(saved) <= set(given)
    keys = sorted(set(given) if partial else set(saved) | set(given))
    diffs = [f"{k}: model={saved.get(k, '<missing>')!r}, given={given.get(k, '<missing>')!r}"
             for k in keys if saved.get(k, _MISSING) != given.get(k, _MISSING)]
    if diffs:
        raise PreprocessMismatchError(
            "the preprocessing differs from the one the model was trained with (" + "; ".join(diffs) + "). "
            "Use the checkpoint's own preprocess (Checkpoint.preprocess) so the model sees images as in training."
        )


_MISSING = object()


# ------------------------------------------------------------------------------------------------ private


def _read(path: Path) -> dict:
    problem = file_problem(path)
    if problem == "does not exist":
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or train and save a model first")
    if problem:
        raise CheckpointError(f"checkpoint {path} {problem}; give the path of the .pt file itself")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as exc:
        raise CheckpointError(f"checkpoint {path}: permission denied: {PERMISSION_HINT}") from exc
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain values (or is damaged), so it is refused "
            f"(xaikit loads with weights_only=True): {str(exc).splitlines()[0]}. Only load files you trust; "
            "re-save the model with xaikit.checkpoint.save_checkpoint."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, UnicodeDecodeError, OverflowError) as exc:
        # a text file's first byte is read as a pickle opcode: KeyError: 101 and the like (found by fuzzing)
        raise CheckpointError(
            f"{path} is truncated or not a torch file ({type(exc).__name__}: {exc}). Copy or save it again."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an xaikit checkpoint (no format={FORMAT!r} entry). For a plain state dict, build the "
            "model with xaikit.models.build_model and call model.load_state_dict(torch.load(..., weights_only=True))."
        )
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: format_version is {version!r} ({type(version).__name__}), not an integer; "
                              "the file was not written by save_checkpoint or was edited. Save the model again.")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version}, newer than this xaikit reads ({FORMAT_VERSION}); "
                              "upgrade xaikit")
    missing = [k for k in (*_META_KEYS, "state_dict", "sha256") if k not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks the entries {missing}; it was not written by save_checkpoint")
    _check_structure(path, payload)
    return payload


#: The type each entry of a checkpoint must have (checked before the digest touches them).
_ENTRY_TYPES = {"arch": str, "arch_kwargs": dict, "classes": list, "preprocess": (dict, type(None)), "summary": dict,
                "state_dict": dict, "sha256": str}


def _check_structure(path: Path, payload: dict) -> None:
    """Every entry of the type save_checkpoint writes: an edited file must fail here, not deep inside the loader."""
    wrong = [f"{key} is a {type(payload[key]).__name__}" for key, kind in _ENTRY_TYPES.items()
             if not isinstance(payload[key], kind)]
    state = payload["state_dict"]
    if isinstance(state, dict):
        wrong += [f"state_dict[{k!r}] is a {type(v).__name__}" for k, v in state.items()
                  if not isinstance(k, str) or not torch.is_tensor(v)][:3]
    if isinstance(payload["classes"], list):
        wrong += [f"classes[{i}] is a {type(c).__name__}" for i, c in enumerate(payload["classes"])
                  if not isinstance(c, str)][:3]
    if isinstance(payload["arch_kwargs"], dict):
        wrong += [f"arch_kwargs key {k!r} is not a string" for k in payload["arch_kwargs"] if not isinstance(k, str)]
    if wrong:
        raise CheckpointError(f"{path} is not a checkpoint as save_checkpoint writes it: {'; '.join(wrong)}. The file "
                              "was edited or written by another program; do not use it, save the model again.")


def nonfinite_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Name -> number of NaN/infinite values, for every floating tensor of ``state`` that has any."""
    out = {}
    for name, t in state.items():
        if torch.is_tensor(t) and (t.is_floating_point() or t.is_complex()):
            bad = int(t.numel() - torch.isfinite(t).sum())
            if bad:
                out[name] = bad
    return out


def _check_finite(path: Path, state: Mapping[str, torch.Tensor], allow: bool) -> None:
    bad = nonfinite_tensors(state)
    if not bad:
        return
    shown = ", ".join(f"{k} ({n})" for k, n in list(bad.items())[:5]) + (" ..." if len(bad) > 5 else "")
    what = f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values: {shown}."
    if not allow:
        raise CheckpointError(f"{what} The training run diverged before it was saved; its outputs and saliency maps "
                              "would be NaN or meaningless. Use an earlier checkpoint or retrain (lower learning "
                              "rate); pass allow_nonfinite=True only to inspect it.")
    warnings.warn(f"{what} Loaded because allow_nonfinite=True; do not explain or evaluate this model.",
                  stacklevel=3)


def _rebuild(path: Path, arch: str, arch_kwargs: dict, state: dict) -> nn.Module:
    _check_state_matches(state, arch, arch_kwargs, CheckpointError, str(path))
    try:
        model = build_model(arch, **arch_kwargs)
        model.load_state_dict(state, strict=True)
    except (ModelError, ArgumentError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild architecture {arch!r} with {arch_kwargs}: {exc}") from exc
    return model


def _check_classes(path: Path, model: nn.Module, classes: list[str]) -> None:
    """As many class names as the model has outputs (save_checkpoint refuses a mismatch; an edited file must too)."""
    outputs = getattr(model, "xaikit_arch_kwargs", {}).get("num_classes")
    if isinstance(outputs, int) and len(classes) != outputs:
        raise CheckpointError(f"{path}: {len(classes)} class names {classes[:5]} for a model with {outputs} outputs; "
                              "the names would be attached to the wrong logits. The file was edited; save the model "
                              "again with the right classes=.")


def _check_state_matches(state: dict, arch: str, arch_kwargs: dict, error: type, what: str) -> None:
    """Compare a state dict with the parameters ``arch`` has (built on the meta device: no memory, fast)."""

    try:
        with torch.device("meta"):
            reference = build_model(arch, **arch_kwargs).state_dict()
    except (ModelError, ArgumentError) as exc:
        raise error(f"{what}: architecture {arch!r} with {arch_kwargs} cannot be built: {exc}") from exc
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in reference.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        raise error(
            f"{what}: the weights do not fit architecture {arch!r} ({arch_kwargs}): "
            f"{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}, "
            f"{len(shapes)} of another shape {shapes[:3]}. The weights come from another architecture or "
            "configuration: load them with the architecture they were trained with."
        )


def _digest(meta: dict, state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the metadata (canonical JSON) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _plain(obj: Any, what: str) -> Any:
    """Convert to plain JSON-like values (what ``weights_only`` loading accepts); numpy scalars become Python."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, what) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, what) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ArgumentError(f"{what} must hold plain values (numbers, strings, lists, dicts); "
                        f"got {type(obj).__name__}: {obj!r:.80}")


# ------------------------------------------------------------------------------------------- tracked runs

_TRACKED_SCHEMES = ("runs:/", "models:/")


def _load_tracked(uri: str, **kwargs: Any) -> Checkpoint:
    """Download an MLflow artifact into a temporary folder, load it like a file, and delete the copy."""
    import tempfile

    try:
        import mlflow
    except ImportError as exc:
        raise CheckpointError(f"{uri} is an MLflow artifact URI; loading it needs MLflow: "
                              "pip install mlflow-skinny (or mlflow).") from exc
    with tempfile.TemporaryDirectory(prefix="xaikit-run-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        except mlflow.exceptions.MlflowException as exc:
            raise CheckpointError(f"{uri}: MLflow cannot fetch this artifact from {mlflow.get_tracking_uri()} "
                                  f"({exc.message}). Check the run id and the tracking URI "
                                  "(MLFLOW_TRACKING_URI or xaikit.train.tracking.load_run_checkpoint).") from exc
        ckpt = load_checkpoint(local, **kwargs)
    ckpt.path = Path(uri)
    return ckpt
