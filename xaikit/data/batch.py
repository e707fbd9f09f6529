"""A class-balanced batch of dataset samples, stacked for explaining and region scoring.

The notebooks and the demo all take "the first k images of each class of the test split" and stack their
images, labels, ids, patient ids and masks; this is that step, once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ArgumentError, DatasetError

__all__ = ["SampleBatch", "balanced_batch"]


@dataclass(frozen=True)
class SampleBatch:
    """Samples of a dataset stacked for :func:`xaikit.saliency.explain_many` and :func:`xaikit.regions.region_scores`.

    Attributes
    ----------
    samples : list of dict
        The dataset samples (``image``, ``label``, ``id``, ``patient_id``, ``masks``, ``meta``), in batch order.
    images : torch.Tensor
        ``N x C x H x W`` (or ``N x C x D x H x W``).
    labels : torch.Tensor
        ``N`` integer labels.
    image_ids, patient_ids : list of str
    classes : list of str
        The dataset's class names (``classes[label]``).
    """

    samples: list[dict[str, Any]]
    images: torch.Tensor
    labels: torch.Tensor
    image_ids: list[str]
    patient_ids: list[str]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.samples)

    def masks(self, *names: str) -> dict[str, torch.Tensor]:
        """Each named mask stacked over the batch (``N x H x W``); all masks of the first sample when none named."""
        if not names:
            names = tuple(self.samples[0]["masks"])
        missing = [n for n in names if any(n not in s["masks"] for s in self.samples)]
        if missing:
            raise ArgumentError(f"masks {missing} are missing from some samples; the samples carry "
                                f"{sorted(self.samples[0]['masks'])}. Name masks every sample has.")
        return {n: torch.stack([torch.as_tensor(s["masks"][n]) for s in self.samples]) for n in names}


def balanced_batch(dataset: Any, per_class: int | None = None, *, classes: Sequence[int] | None = None) -> SampleBatch:
    """The first ``per_class`` samples of each class, in dataset order, class by class.

    Parameters
    ----------
    dataset
        A dataset with ``labels`` (an integer array), ``classes`` (names) and ``__getitem__`` returning
        sample dicts, e.g. :class:`xaikit.data.ManifestDataset`.
    per_class
        Samples per class; ``None`` takes every sample. A class with fewer samples gives all it has.
    classes
        Class indices to take, in this order; default every class of the dataset.

    Returns
    -------
    SampleBatch

    Examples
    --------
    >>> test = ManifestDataset("manifest.csv", split="test", preprocess=pre)  # doctest: +SKIP
    >>> batch = balanced_batch(test, 6)  # doctest: +SKIP
    >>> maps = explain_many(model, batch.images, "quick", labels=batch.labels,
    ...                     image_ids=batch.image_ids)  # doctest: +SKIP
    """
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer))
                                  or per_class < 1):
        raise ArgumentError(f"per_class must be a positive integer or None (every sample); got {per_class!r}.")
    labels = np.asarray(dataset.labels)
    names = list(dataset.classes)
    order = range(len(names)) if classes is None else [int(c) for c in classes]
    bad = [c for c in order if not 0 <= c < len(names)]
    if bad:
        raise ArgumentError(f"classes {bad} are not class indices of this dataset (0..{len(names) - 1}: {names}).")
    rows = [int(i) for c in order for i in np.flatnonzero(labels == c)[:per_class]]
    if not rows:
        raise DatasetError(f"The dataset {dataset!r} has no samples of classes {list(order)}; nothing to batch.")
    samples = [dataset[i] for i in rows]
    return SampleBatch(samples=samples, images=torch.stack([s["image"] for s in samples]),
                       labels=torch.tensor([int(s["label"]) for s in samples]),
                       image_ids=[str(s["id"]) for s in samples], patient_ids=[str(s["patient_id"]) for s in samples],
                       classes=names)
