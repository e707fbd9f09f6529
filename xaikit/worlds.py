"""Ground-truth worlds: phantom sets and small models where *what the model uses* is known by construction.

A map can only be scored against the truth where the truth is known. Each world fixes which image evidence
decides the label, draws phantoms (:mod:`xaikit.phantom`) accordingly and trains a tiny model on them:

========================  ===========================================================  =====================
world                     how the label is made                                        evidence the model uses
========================  ===========================================================  =====================
``lesion_only``           label = lesion present; no marker anywhere                   ``lesion``
``marker_only``           label = corner marker present; lesions drawn at random       ``marker``
                          (rate 0.5) in both classes, so they carry no information
``both``                  label = lesion; a marker on 75% of positives and 25% of      ``lesion`` + ``marker``
                          negatives (with the shortcut set's 90% / 5% the tiny model
                          reads the marker only: removing lesions flipped no decision)
``glass_box``             lesion-only phantoms; a linear model, additive over 8 x 8    the blocks it weighs
                          blocks, whose attributions have closed forms                 (known exactly)
``label_random``          lesion-only phantoms, model trained on *permuted* labels     nothing (memorised)
                          (Adebayo et al. 2018, data-randomization test)
========================  ===========================================================  =====================

The trained models (``small_cnn``, widths 8-16-32, 64 px, about 20 s each on one CPU core) are shipped in
``data_samples/models/world_<name>.pt`` and rebuilt by :func:`build_world_models` (``python -m xaikit samples``).
Whether a model really uses its evidence is checked, not assumed: :func:`evidence_check` removes one kind of
evidence (the phantom redrawn without it) and counts the decisions that flip; the result is in each model card.

Examples
--------
>>> from xaikit.worlds import WORLDS, world_data
>>> sorted(WORLDS)
['both', 'glass_box', 'label_random', 'lesion_only', 'marker_only']
>>> data = world_data("marker_only", "test", n=4)
>>> tuple(data["images"].shape), sorted(data["masks"])
((4, 1, 64, 64), ['evidence', 'lesion', 'marker'])
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._modes import eval_mode, one_thread
from ._util import sample_dir
from .checkpoint import load_checkpoint, save_checkpoint
from .data.preprocess import Preprocess
from .errors import ArgumentError, CheckpointError
from .models import build_model
from .phantom.cohort import ChestSet
from .phantom.dataset import PhantomDataset
from .train._tensors import fit_tensors

__all__ = ["World", "WORLDS", "WORLD_PREPROCESS", "get_world", "world_data", "world_model", "world_model_path",
           "evidence_check", "glass_box_model", "glass_box_attribution", "glass_box_blocks", "build_world_model",
           "build_world_models"]

#: Input of every world model: 64 px phantoms, percentile-normalized (:class:`~xaikit.data.Preprocess`).
WORLD_PREPROCESS = {"size": 64}
_SIZE = 64
_CLASSES = ("absent", "present")
_BLOCK = 8


@dataclass(frozen=True)
class World:
    """One ground-truth world: how its phantoms are drawn and what its model uses.

    Attributes
    ----------
    name : str
        Key of :data:`WORLDS`.
    description : str
        In words, for tables and model cards.
    label_from : {"lesion", "marker"}
        Which drawn feature is the label.
    lesion_rate, marker_rate : (float, float)
        Probability of a lesion / a marker in class 0 and in class 1.
    evidence : tuple of str
        The masks whose union is the evidence the model uses (``()``: none, the label-randomization world).
    model : str
        ``"trained"`` (shipped checkpoint), ``"closed_form"`` (the glass box, built on demand).
    permute_labels : bool
        Train on a seeded permutation of the labels.
    seed : int
        Seed of the phantom plan and of training.
    n_images, n_test, epochs : int
        Size of the plan, of its test split (the last images) and training epochs.
    """

    name: str
    description: str
    label_from: str
    lesion_rate: tuple[float, float]
    marker_rate: tuple[float, float]
    evidence: tuple[str, ...]
    model: str = "trained"
    permute_labels: bool = False
    seed: int = 0
    n_images: int = 300
    n_test: int = 60
    epochs: int = 30

    @property
    def file_name(self) -> str:
        """File of the shipped model in ``data_samples/models/``."""
        return f"world_{self.name}.pt"


WORLDS: dict[str, World] = {w.name: w for w in (
    World("lesion_only", "label = lesion; no marker anywhere", "lesion", (0.0, 1.0), (0.0, 0.0), ("lesion",),
          seed=3101),
    World("marker_only", "label = corner marker; lesions at random (rate 0.5) in both classes", "marker",
          (0.5, 0.5), (0.0, 1.0), ("marker",), seed=3102),
    World("both", "label = lesion; marker on 75% of positives and 25% of negatives, so neither alone is enough",
          "lesion", (0.0, 1.0), (0.25, 0.75), ("lesion", "marker"), seed=3103),
    World("glass_box", "lesion-only phantoms; a linear model additive over 8 x 8 blocks (closed-form "
          "attributions)", "lesion", (0.0, 1.0), (0.0, 0.0), ("weights",), model="closed_form", seed=3101),
    World("label_random", "lesion-only phantoms; model trained on permuted labels (uses nothing)", "lesion",
          (0.0, 1.0), (0.0, 0.0), (), permute_labels=True, seed=3101, epochs=150),
)}


def get_world(name: str) -> World:
    """Look a world up by name; unknown names raise an error listing the known ones."""
    if not isinstance(name, str) or name not in WORLDS:
        raise ArgumentError(f"world={name!r} is not a known world; choose from {sorted(WORLDS)}.")
    return WORLDS[name]


# --------------------------------------------------------------------------------------------------- data
def _plan(world: World) -> dict[str, np.ndarray]:
    """Labels, lesion and marker flags and seeds of every image (one image per patient), drawn from the seed."""
    rng = np.random.default_rng([world.seed, 21])
    n = world.n_images
    labels = rng.permutation(np.arange(n) % 2)
    lesion = rng.random(n) < np.take(world.lesion_rate, labels)
    marker = rng.random(n) < np.take(world.marker_rate, labels)
    lesion = labels.astype(bool) if world.label_from == "lesion" else lesion
    marker = labels.astype(bool) if world.label_from == "marker" else marker
    return {"labels": labels, "lesion": lesion, "marker": marker, "seeds": rng.integers(0, 2**31 - 1, n)}


def _chest_set(world: World, plan: dict[str, np.ndarray], index: np.ndarray, remove: str | None):
    lesion, marker = plan["lesion"][index].copy(), plan["marker"][index].copy()
    if remove == "lesion":
        lesion[:] = False
    elif remove == "marker":
        marker[:] = False
    seeds = plan["seeds"][index]
    return ChestSet(image_ids=tuple(f"{world.name}{i:04d}" for i in index),
                    patient_ids=tuple(f"W{world.seed}-{i:04d}" for i in index), labels=lesion.astype(int),
                    markers=marker, image_seeds=seeds, anatomy_seeds=seeds, size=_SIZE, marker_corner="top_right")


def world_data(world: str, split: str = "test", *, n: int | None = None, remove: str | None = None) -> dict:
    """Images, labels, masks and ids of one split of a world, drawn in memory (deterministic).

    Parameters
    ----------
    world : str
        A key of :data:`WORLDS`.
    split : {"train", "test"}
        The last ``n_test`` images of the plan are the test split.
    n : int, optional
        Keep the first ``n`` images of the split.
    remove : {"lesion", "marker"}, optional
        Redraw the same phantoms without that evidence (same anatomy, pose and exposure): the counterfactual
        that :func:`evidence_check` feeds the model.

    Returns
    -------
    dict
        ``images`` N x 1 x 64 x 64, ``labels`` N (the world's labels; permuted in ``label_random``'s train split),
        ``masks`` ``{"lesion", "marker", "evidence"}`` N x 64 x 64 bool, ``image_ids``, ``patient_ids``.
    """
    w = get_world(world)
    if split not in ("train", "test"):
        raise ArgumentError(f'split={split!r} must be "train" or "test".')
    if remove not in (None, "lesion", "marker"):
        raise ArgumentError(f'remove={remove!r} must be None, "lesion" or "marker".')
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ArgumentError(f"n={n!r} must be a positive int (number of images).")
    images, labels, masks, ids = _drawn(w, split, None if n is None else int(n), remove)
    masks = {k: m.clone() for k, m in masks.items()}
    masks["evidence"] = _evidence_mask(w, masks)
    return {"images": images.clone(), "labels": labels.clone(), "masks": masks, "image_ids": list(ids),
            "patient_ids": [f"patient-{i}" for i in ids]}


@functools.lru_cache(maxsize=16)
def _drawn(w: World, split: str, n: int | None, remove: str | None):
    """Draw (once per process: ~60 ms a phantom) the images, labels and lesion/marker masks of a split."""

    plan = _plan(w)
    cut = w.n_images - w.n_test
    index = np.arange(cut) if split == "train" else np.arange(cut, w.n_images)
    index = index[:n] if n is not None else index
    ds = PhantomDataset(_chest_set(w, plan, index, remove), Preprocess(**WORLD_PREPROCESS))
    items = [ds[i] for i in range(len(ds))]
    labels = plan["labels"][index]
    if w.permute_labels:
        labels = np.random.default_rng([w.seed, 5]).permutation(plan["labels"])[index]
    masks = {k: torch.stack([s["masks"][k] for s in items]) for k in ("lesion", "marker")}
    return torch.stack([s["image"] for s in items]), torch.as_tensor(labels), masks, tuple(s["id"] for s in items)


def _evidence_mask(world: World, masks: dict[str, torch.Tensor]) -> torch.Tensor:
    n = len(masks["lesion"])
    if world.evidence == ("weights",):
        return glass_box_weights()[None].expand(n, -1, -1).ne(0)
    out = torch.zeros_like(masks["lesion"])
    for name in world.evidence:
        out |= masks[name]
    return out


# ---------------------------------------------------------------------------------------------- glass box
#: Blocks (row, column) of the 8 x 8 grid the glass box weighs, with their weights: the lower lung fields,
#: where the phantom's lesions lie, so the model is also a decent lesion detector.
_GLASS_BLOCKS = {(4, 1): 1.0, (4, 2): 0.6, (5, 1): 0.8, (5, 2): 0.4, (4, 5): 0.9, (4, 6): 0.5, (5, 5): 0.7,
                 (5, 6): 0.3}


def glass_box_weights() -> torch.Tensor:
    """The glass box's pixel weights ``64 x 64`` (float64): block weight / block area inside its blocks, else 0."""
    w = torch.zeros(_SIZE, _SIZE, dtype=torch.float64)
    for (r, c), a in _GLASS_BLOCKS.items():
        w[r * _BLOCK:(r + 1) * _BLOCK, c * _BLOCK:(c + 1) * _BLOCK] = a / _BLOCK**2
    return w


def glass_box_model(bias: float | None = None) -> nn.Module:
    """The glass-box classifier: ``logit_1 = sum_i w_i x_i - b``, ``logit_0 = -logit_1`` (float32).

    ``w`` is :func:`glass_box_weights` (additive over 8 x 8 blocks: ``logit_1 = sum_r a_r mean_r(x) - b``);
    ``b`` defaults to the median of ``sum_i w_i x_i`` over the world's train split, so both classes occur.
    For target class 1 and a zero baseline the exact attributions are closed-form: input x gradient,
    integrated gradients and the Shapley value of every pixel all equal ``w_i x_i``; occlusion of an aligned
    8 x 8 block removes exactly ``a_r mean_r(x)``.
    """
    w = glass_box_weights().float().reshape(1, -1)
    if bias is None:
        x = world_data("glass_box", "train", n=80)["images"].reshape(-1, w.shape[1])
        bias = float(torch.median(x @ w[0]))
    linear = nn.Linear(w.shape[1], 2)
    with torch.no_grad():
        linear.weight.copy_(torch.cat([-w, w]))
        linear.bias.copy_(torch.tensor([bias, -bias]))
    model = nn.Sequential(nn.Flatten(), linear).eval()
    model.xaikit_classes = list(_CLASSES)
    model.xaikit_preprocess = dict(_preprocess_dict())
    return model


def glass_box_attribution(images: torch.Tensor) -> torch.Tensor:
    """The exact attribution of the glass box for class 1 and a zero baseline: ``w * x``, ``N x 64 x 64``."""
    return glass_box_weights().to(images.dtype) * images[:, 0]


def glass_box_blocks(images: torch.Tensor) -> torch.Tensor:
    """Exact block contributions ``a_r mean_r(x)`` (Shapley values of the 64 blocks), ``N x 8 x 8``."""
    exact = glass_box_attribution(images)
    n = len(images)
    return exact.reshape(n, _SIZE // _BLOCK, _BLOCK, _SIZE // _BLOCK, _BLOCK).sum((2, 4))


def _preprocess_dict() -> dict:
    return Preprocess(**WORLD_PREPROCESS).to_dict()


# ------------------------------------------------------------------------------------------------- models
def world_model_path(world: str, folder: str | os.PathLike | None = None) -> Path:
    """Path of a world's shipped model (``data_samples/models/world_<name>.pt``); the glass box has none."""
    w = get_world(world)
    if w.model != "trained":
        raise ArgumentError(f"world {world!r} has no model file: its model is built in closed form; use "
                            "world_model(world) instead.")
    return Path(folder or sample_dir()) / "models" / w.file_name


def world_model(world: str, folder: str | os.PathLike | None = None) -> nn.Module:
    """The model of a world, in eval mode: the shipped checkpoint, or the closed-form glass box.

    Raises :class:`~xaikit.errors.ArgumentError` for an unknown world and
    :class:`~xaikit.errors.CheckpointError` when the shipped file is missing (rebuild with
    ``python -m xaikit samples --worlds``).
    """

    w = get_world(world)
    if w.model == "closed_form":
        return glass_box_model()
    path = world_model_path(world, folder)
    if not path.is_file():
        raise CheckpointError(f"{path}: the model of world {world!r} is missing; rebuild it with "
                              "`python -m xaikit samples --worlds` (xaikit.worlds.build_world_models).")
    return load_checkpoint(path, preprocess=WORLD_PREPROCESS).model



def _logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), eval_mode(model):
        return model(images)


def _predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return _logits(model, images).argmax(1)


def evidence_check(model: nn.Module, world: str, *, n: int | None = None) -> dict[str, Any]:
    """Does the model use its evidence? Remove each kind of evidence and count the decisions that flip.

    On the test images that carry a lesion (a marker), the phantom is redrawn without it and fed to the model.
    Returns ``{"accuracy", "n_lesion", "flips_without_lesion", "margin_drop_without_lesion", "n_marker", ...}``:
    the share of decisions that flip and the mean drop of the margin ``logit_1 - logit_0`` on the images that
    carried the evidence (NaN where none does).
    """
    data = world_data(world, "test", n=n)
    logits = _logits(model, data["images"])
    pred, margin = logits.argmax(1), logits[:, 1] - logits[:, 0]
    out: dict[str, Any] = {"accuracy": round(float((pred == data["labels"]).double().mean()), 4)}
    for kind in ("lesion", "marker"):
        has = data["masks"][kind].flatten(1).any(1)
        out[f"n_{kind}"] = int(has.sum())
        if not has.any():
            out[f"flips_without_{kind}"] = out[f"margin_drop_without_{kind}"] = float("nan")
            continue
        removed = _logits(model, world_data(world, "test", n=n, remove=kind)["images"])
        out[f"flips_without_{kind}"] = round(float((removed.argmax(1) != pred)[has].double().mean()), 4)
        drop = (margin - (removed[:, 1] - removed[:, 0]))[has]
        out[f"margin_drop_without_{kind}"] = round(float(drop.mean()), 4)
    return out


def build_world_model(world: str, out: str | os.PathLike | None = None, *, epochs: int | None = None,
                      seed: int = 0) -> Path:
    """Train the model of one world (``small_cnn`` 8-16-32 on its 240 train phantoms) and write its checkpoint.

    Cross-entropy, AdamW and a one-cycle schedule (:func:`xaikit.train._tensors.fit_tensors`) on one thread,
    so the bytes do not depend on the machine. The summary holds a model card (data, evidence, intended use),
    the test accuracy and :func:`evidence_check`.
    """

    w = get_world(world)
    epochs = w.epochs if epochs is None else epochs
    path = world_model_path(world, out)
    train = world_data(world, "train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model("small_cnn", num_classes=2, widths=(8, 16, 32))
    with one_thread():
        history = fit_tensors(model, train["images"], train["labels"], nn.functional.cross_entropy, epochs=epochs,
                              batch_size=32, lr=3e-3, seed=seed)
    model.eval()
    train_acc = float((_predict(model, train["images"]) == train["labels"]).double().mean())
    check = evidence_check(model, world)
    card = {"data": f"world {w.name!r} (xaikit.worlds): {w.description}; {len(train['images'])} phantoms at 64 px, "
                    "drawn in memory", "evidence": list(w.evidence) or "none (labels permuted)",
            "classes": list(_CLASSES), "n_train_images": len(train["images"]), "input": str(_preprocess_dict()),
            "intended_use": "meta-evaluation of explanation methods and metrics where the evidence the model uses "
                            "is known by construction; not a diagnostic model",
            "evidence_check": check}
    summary = {"task": f"ground-truth world {w.name}", "epochs": epochs, "seed": seed,
               "final_train_loss": round(float(history["loss"].iloc[-1]), 4), "train_accuracy": round(train_acc, 4),
               "test_accuracy": check["accuracy"], "model_card": card}
    return save_checkpoint(path, model, classes=list(_CLASSES), preprocess=WORLD_PREPROCESS, summary=summary)


def build_world_models(out: str | os.PathLike | None = None) -> dict[str, Path]:
    """Train and write every trained world model (all of :data:`WORLDS` but the closed-form glass box).

    About 20-40 s a model on one CPU core (the label-randomization model, 150 epochs to memorise: ~2 min).
    """
    return {name: build_world_model(name, out) for name, w in WORLDS.items() if w.model == "trained"}
