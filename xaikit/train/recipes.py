"""One-call recipes built from :func:`~xaikit.models.build_model`, :func:`~xaikit.train.fit` and checkpoints."""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from ..checkpoint import preprocess_dict
from ..models import build_model
from .fit import FitResult, fit

__all__ = ["train_sample_model"]


def train_sample_model(
    train: Dataset,
    val: Dataset,
    path: str | os.PathLike,
    *,
    classes: Sequence[str],
    preprocess: Any = None,
    arch: str = "small_cnn",
    arch_kwargs: dict | None = None,
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
    **fit_kw,
) -> tuple[nn.Module, FitResult]:
    """Build ``arch`` from scratch, train it with AdamW + one-cycle schedule, keep the best epoch by validation
    ROC AUC and save it as a checkpoint at ``path`` (with ``classes`` and ``preprocess``).

    The defaults train ``small_cnn`` on a few hundred 128 px phantom radiographs in minutes on 2 CPU cores
    (220 phantoms, ``Preprocess(size=128)``: test ROC AUC 0.982, 0.4 MB checkpoint).
    ``arch_kwargs`` go to :func:`~xaikit.models.build_model`, extra keyword arguments to
    :func:`~xaikit.train.fit`. Returns the trained model (best weights, eval mode, ``xaikit_classes`` and
    ``xaikit_preprocess`` set) and the :class:`FitResult`.

    Example
    -------
    >>> model, result = train_sample_model(train_set, val_set, "model.pt",
    ...                                    classes=["normal", "pneumonia"], preprocess=prep)  # doctest: +SKIP
    """
    in_channels = int(train[0]["image"].shape[0])
    with torch.random.fork_rng(devices=[]):  # the initial weights follow ``seed``; the global RNG is left alone
        torch.manual_seed(seed)
        model = build_model(arch, num_classes=len(classes), in_channels=in_channels, **(arch_kwargs or {}))
    fit_kw = {"scheduler": "onecycle", "monitor": "val_roc_auc", "device": "cpu", **fit_kw}
    result = fit(model, train, val, classes=classes, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                 checkpoint_path=path, preprocess=preprocess, progress=progress, **fit_kw)
    model.eval()
    model.xaikit_classes = list(classes)
    model.xaikit_preprocess = _preprocess_dict(preprocess)
    return model, result


def _preprocess_dict(preprocess: Any) -> dict | None:
    return preprocess_dict(preprocess)
