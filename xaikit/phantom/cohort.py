"""Sets of phantoms: labels, shortcut markers and patients planned up front, images drawn on demand."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ArgumentError
from .chest import ChestPhantom, draw_chest
from .marker import MARKER_CORNERS

__all__ = ["ChestSet", "draw_chest_set"]


@dataclass(frozen=True)
class ChestSet(Sequence):
    """A planned, deterministic set of chest phantoms; ``set[i]`` draws image ``i`` (about 20-30 ms).

    The plan (labels, markers, patients, seeds) is known without drawing any image, so a split or an
    audit can use it for free. Each item is exactly ``draw_chest(image_seed, anatomy_seed=...)`` with the
    flags of the plan; its ``meta`` also records ``image_id`` and ``patient_id``.

    Attributes
    ----------
    image_ids, patient_ids : tuple of str
        Synthetic identifiers (``img00000``, ``P0001``), never real ones.
    labels, markers : numpy.ndarray
        int 0/1 label and bool marker flag of every image.
    image_seeds, anatomy_seeds : numpy.ndarray
        Seeds passed to :func:`~xaikit.phantom.draw_chest`.
    size : int
        Image side in pixels.
    marker_corner : str
        Corner of every marker.
    """

    image_ids: tuple[str, ...]
    patient_ids: tuple[str, ...]
    labels: np.ndarray
    markers: np.ndarray
    image_seeds: np.ndarray
    anatomy_seeds: np.ndarray
    size: int
    marker_corner: str

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int | slice) -> ChestPhantom | list[ChestPhantom]:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ArgumentError(f"ChestSet index must be an int or a slice; got {type(index).__name__}.")
        if not -len(self) <= index < len(self):
            raise IndexError(f"ChestSet index {index} out of range for {len(self)} images.")
        i = int(index) % len(self)
        phantom = draw_chest(
            int(self.image_seeds[i]), size=self.size, pneumonia=bool(self.labels[i]), marker=bool(self.markers[i]),
            marker_corner=self.marker_corner, anatomy_seed=int(self.anatomy_seeds[i]),
        )  # fmt: skip
        phantom.meta.update(image_id=self.image_ids[i], patient_id=self.patient_ids[i])
        return phantom

    def table(self) -> pd.DataFrame:
        """The plan as a tidy table: ``image_id, patient_id, label, marker, image_seed, anatomy_seed``."""
        return pd.DataFrame({
            "image_id": list(self.image_ids), "patient_id": list(self.patient_ids),
            "label": self.labels.astype(int), "marker": self.markers.astype(bool),
            "image_seed": self.image_seeds.astype(np.int64), "anatomy_seed": self.anatomy_seeds.astype(np.int64),
        })  # fmt: skip


def _check_rate(name: str, value: float) -> float:
    if not isinstance(value, (int, float, np.floating)) or not 0.0 <= float(value) <= 1.0:
        raise ArgumentError(f"{name} must be a probability in [0, 1]; got {value!r}.")
    return float(value)


def _check_counts(n: int, n_patients: int | None) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ArgumentError(f"n must be a positive int (number of images); got {n!r}.")
    if n_patients is None:
        return int(n)
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or not 1 <= n_patients <= n:
        raise ArgumentError(f"n_patients must be an int between 1 and n={n}; got {n_patients!r}.")
    return int(n_patients)


def _assign_patients(rng: np.random.Generator, n: int, n_patients: int) -> np.ndarray:
    """Patient index of every image: each patient gets one image, the rest go to random patients."""
    extra = rng.integers(0, n_patients, n - n_patients)
    return rng.permutation(np.concatenate([np.arange(n_patients), extra]))


def draw_chest_set(
    n: int,
    *,
    seed: int = 0,
    size: int = 224,
    prevalence: float = 0.5,
    marker_rate_pos: float = 0.0,
    marker_rate_neg: float = 0.0,
    n_patients: int | None = None,
    marker_corner: str = "top_right",
) -> ChestSet:
    """Plan a deterministic set of ``n`` chest phantoms with a controllable marker shortcut.

    Parameters
    ----------
    n : int
        Number of images.
    seed : int
        Seed of the plan and of every image in it.
    size : int
        Image side in pixels.
    prevalence : float
        Share of pneumonia patients (exactly ``round(prevalence * n_patients)`` of them).
    marker_rate_pos, marker_rate_neg : float
        Probability that a pneumonia / normal image carries the corner marker. Unequal rates make the
        marker a shortcut a classifier can learn instead of the disease (e.g. 0.9 and 0.1).
    n_patients : int, optional
        Number of patients; images of one patient share anatomy and label and differ in pose, breath-hold,
        lesions, exposure and noise. Default: one image per patient.
    marker_corner : str
        Corner of the markers (see :func:`~xaikit.phantom.draw_chest`).

    Returns
    -------
    ChestSet

    Examples
    --------
    >>> from xaikit.phantom import draw_chest_set
    >>> cs = draw_chest_set(8, seed=1, size=64, marker_rate_pos=0.9, marker_rate_neg=0.1, n_patients=4)
    >>> len(cs), int(cs.labels.sum()), len(set(cs.patient_ids))
    (8, 4, 4)
    >>> cs[0].image.shape
    (64, 64)
    """
    n_pat = _check_counts(n, n_patients)
    prevalence = _check_rate("prevalence", prevalence)
    rate_pos, rate_neg = (_check_rate("marker_rate_pos", marker_rate_pos),
                          _check_rate("marker_rate_neg", marker_rate_neg))
    if marker_corner not in MARKER_CORNERS:
        raise ArgumentError(f"marker_corner must be one of {MARKER_CORNERS}; got {marker_corner!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArgumentError(f"seed must be a non-negative int; got {seed!r}.")
    rng = np.random.default_rng([int(seed), 7])
    n_pos = int(round(prevalence * n_pat))
    patient_label = rng.permutation(np.r_[np.ones(n_pos, int), np.zeros(n_pat - n_pos, int)])
    patient_seed = rng.integers(0, 2**31 - 1, n_pat)
    patient = np.arange(n) if n_patients is None else _assign_patients(rng, n, n_pat)
    labels = patient_label[patient]
    markers = rng.random(n) < np.where(labels == 1, rate_pos, rate_neg)
    width = max(4, len(str(n_pat)))
    return ChestSet(
        image_ids=tuple(f"img{i:05d}" for i in range(n)),
        patient_ids=tuple(f"P{p + 1:0{width}d}" for p in patient),
        labels=labels, markers=markers, image_seeds=rng.integers(0, 2**31 - 1, n),
        anatomy_seeds=patient_seed[patient], size=int(size), marker_corner=marker_corner,
    )  # fmt: skip
