"""Private plumbing shared by fit and assess: device choice, label checks, loaders, batched inference."""
from __future__ import annotations

import contextlib
import itertools
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._modes import eval_mode
from ..errors import ArgumentError, DatasetError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is passed to ``torch.device``."""
    if str(device) != "auto":
        try:
            return torch.device(device)
        except RuntimeError as exc:
            raise ArgumentError(f"device={device!r} is not a torch device ('auto', 'cpu', 'cuda', 'mps')") from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def dataset_labels(dataset: Dataset, name: str) -> np.ndarray:
    """Integer labels of every sample: ``dataset.labels`` when the dataset provides it (no image is read),
    else ``dataset[i]["label"]`` for each sample."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset[i]["label"] for i in range(len(dataset))]
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(dataset):
        raise DatasetError(f"{name}: expected one integer label per sample, got shape {labels.shape}")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{name}: labels must be integer class indices, got dtype {labels.dtype}")
    return labels.astype(np.int64)


def check_labels(labels: np.ndarray, classes: Sequence[str], name: str, *, need_two: bool = True) -> None:
    """Refuse an empty split, labels outside ``range(len(classes))`` and (``need_two``) a single class."""
    if len(labels) == 0:
        raise DatasetError(f"{name} is empty; it needs at least one sample of each class")
    bad = np.unique(labels[(labels < 0) | (labels >= len(classes))])
    if bad.size:
        count = int(np.isin(labels, bad).sum())
        raise DatasetError(
            f"{name}: {count} samples have labels {bad.tolist()} outside the {len(classes)} classes {list(classes)} "
            f"(valid: 0..{len(classes) - 1}); fix the labels or the class list"
        )
    present = np.unique(labels)
    if need_two and present.size < 2:
        raise DatasetError(
            f"{name} holds only class {classes[int(present[0])]!r} ({len(labels)} samples); a classifier needs "
            "examples of at least two classes. Check the manifest labels and the split."
        )


def resolve_classes(model: nn.Module, dataset: Dataset, classes: Sequence[str] | None) -> list[str]:
    """Class names in logit order: ``classes``, else ``model.xaikit_classes``, ``dataset.classes``, else
    ``"0", "1", ...`` for each output of the model's last linear layer."""
    for candidate in (classes, getattr(model, "xaikit_classes", None), getattr(dataset, "classes", None)):
        if candidate is not None:
            return [str(c) for c in candidate]
    head = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not head:
        raise ArgumentError("classes are unknown: pass classes=[...] (names in logit order)")
    return [str(i) for i in range(head[-1].out_features)]


def seed_worker(_worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from its torch seed (augmentations stay reproducible)."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def collate_xy(batch: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images and labels only (metadata and masks are not needed to train and may not collate)."""
    return torch.stack([s["image"] for s in batch]), torch.as_tensor([int(s["label"]) for s in batch])


def collate_eval(batch: list[dict]) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    images, labels = collate_xy(batch)
    return images, labels, [str(s["id"]) for s in batch], [str(s.get("patient_id") or s["id"]) for s in batch]


def make_loader(dataset: Dataset, batch_size: int, *, collate=collate_xy, shuffle: bool = False, sampler=None,
                num_workers: int = 0, device: torch.device, generator: torch.Generator | None = None) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
        num_workers=num_workers, collate_fn=collate, pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0, generator=generator,
        worker_init_fn=seed_worker if num_workers > 0 else None,
    )


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def infer(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False):
    """Logits (float32, CPU) and labels of all batches of ``loader``, plus one list per extra batch item
    (e.g. image ids and patient ids with :func:`collate_eval`)."""
    logits, labels, extras = [], [], []
    with eval_mode(model), torch.inference_mode():
        for images, y, *rest in loader:
            with autocast(device, amp):
                out = model(images.to(device, non_blocking=True))
            logits.append(out.float().cpu())
            labels.append(y)
            extras.append(rest)
    columns = [list(itertools.chain.from_iterable(column)) for column in zip(*extras)]
    return torch.cat(logits), torch.cat(labels), columns
