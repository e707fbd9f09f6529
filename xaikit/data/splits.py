"""Patient-level stratified splits, class weights and a weighted sampler for imbalanced data."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import WeightedRandomSampler

from ..errors import ArgumentError, DatasetError

__all__ = ["patient_split", "patient_leaks", "class_weights", "weighted_sampler"]


def patient_split(
    table: pd.DataFrame,
    *,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    names: Sequence[str] = ("train", "val", "test"),
    stratify: str | None = "label",
    patient_col: str | None = "patient_id",
    seed: int = 0,
) -> pd.DataFrame:
    """Assign every row to a split so that no patient appears in two splits.

    Patients (not images) are split, with :func:`sklearn.model_selection.train_test_split` applied to the
    list of patients, stratified by each patient's label (the most frequent one among the patient's images;
    ties go to the first in sorted order). The fractions are fractions of patients.

    Parameters
    ----------
    table : pandas.DataFrame
        A manifest (e.g. ``ManifestDataset.table`` or a loader's output).
    fractions : sequence of float
        One fraction per split, summing to 1 (two or three splits).
    names : sequence of str
        Split names, one per fraction.
    stratify : str or None
        Column to stratify on (``None``: no stratification).
    patient_col : str or None
        Column holding patient ids. ``None`` treats every row as its own patient (only when no patient has
        several images, e.g. MedMNIST, whose splits come with the data).
    seed : int
        Random state.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with its ``split`` column set (replacing any existing one).

    Examples
    --------
    >>> t = pd.DataFrame({"label": ["a", "b"] * 10, "patient_id": [f"p{i // 2}" for i in range(20)]})
    >>> out = patient_split(t, fractions=(0.5, 0.5), names=("train", "test"))
    >>> patient_leaks(out).empty
    True
    """
    fractions, names = _check_fractions(fractions, names)
    groups = _groups(table, patient_col)
    patients = pd.Series(groups).drop_duplicates().tolist()
    strata = _patient_strata(table, groups, stratify) if stratify else None
    assigned: dict[str, str] = {}
    remaining, remaining_frac = patients, 1.0
    for name, frac in zip(names[:-1], fractions[:-1]):
        take = frac / remaining_frac
        chosen, remaining = _split_once(remaining, strata, take, seed, name)
        assigned.update(dict.fromkeys(chosen, name))
        remaining_frac -= frac
    assigned.update(dict.fromkeys(remaining, names[-1]))
    out = table.copy()
    out["split"] = [assigned[g] for g in groups]
    return out


def _split_once(patients: list, strata: dict | None, take: float, seed: int, name: str) -> tuple[list, list]:
    if take >= 1.0:
        return patients, []
    y = None if strata is None else [strata[p] for p in patients]
    try:
        rest, chosen = train_test_split(patients, test_size=1 - take, stratify=y, random_state=seed)
    except ValueError as exc:
        raise DatasetError(
            f"patient_split could not form split {name!r} from {len(patients)} patients ({exc}). Use fewer or "
            "larger splits, or stratify=None when a class has too few patients to appear in every split."
        ) from exc
    return list(rest), list(chosen)


def _check_fractions(fractions: Sequence[float], names: Sequence[str]) -> tuple[list[float], list[str]]:
    fractions, names = [float(f) for f in fractions], [str(n) for n in names]
    if len(fractions) not in (2, 3) or len(names) != len(fractions):
        raise ArgumentError(f"patient_split: fractions={fractions} and names={names} must be two or three of each.")
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ArgumentError(f"patient_split: fractions={fractions} must be positive and sum to 1.")
    if len(set(names)) != len(names):
        raise ArgumentError(f"patient_split: split names {names} must be unique.")
    return fractions, names


def _groups(table: pd.DataFrame, patient_col: str | None) -> list:
    if len(table) == 0:
        raise DatasetError("patient_split: the table has no rows.")
    if patient_col is None:
        return list(range(len(table)))
    if patient_col not in table.columns:
        raise ArgumentError(
            f"patient_split: no column {patient_col!r} in the table (columns: {list(table.columns)}). Without patient "
            "ids images of one patient can land in two splits; add the column, or pass patient_col=None if every "
            "image is from a different patient."
        )
    values = table[patient_col].astype(str).str.strip()
    if (values == "").any() or table[patient_col].isna().any():
        raise DatasetError(f"patient_split: {int((values == '').sum() + table[patient_col].isna().sum())} rows have "
                           f"an empty {patient_col!r}; fill them (e.g. with the image id).")
    return values.tolist()


def _patient_strata(table: pd.DataFrame, groups: list, column: str) -> dict:
    if column not in table.columns:
        raise ArgumentError(f"patient_split: stratify={column!r} is not a column (columns: {list(table.columns)}).")
    frame = pd.DataFrame({"patient": groups, "value": table[column].astype(str).to_numpy()})
    counts = frame.groupby(["patient", "value"]).size().reset_index(name="n")
    counts = counts.sort_values(["patient", "n", "value"], ascending=[True, False, True], kind="stable")
    return dict(counts.drop_duplicates("patient")[["patient", "value"]].itertuples(index=False, name=None))


def patient_leaks(table: pd.DataFrame, *, patient_col: str = "patient_id", split_col: str = "split") -> pd.DataFrame:
    """Patients that appear in more than one split: ``patient_id, splits, n_images`` (empty when none).

    This table holds patient identifiers on purpose (you asked for them); do not export it.
    """
    for col in (patient_col, split_col):
        if col not in table.columns:
            raise ArgumentError(f"patient_leaks: no column {col!r} in the table (columns: {list(table.columns)}).")
    grouped = table.groupby(patient_col)[split_col]
    summary = pd.DataFrame({"splits": grouped.agg(lambda s: sorted(set(s.astype(str)))), "n_images": grouped.size()})
    leaks = summary[summary["splits"].map(len) > 1]
    return leaks.reset_index().rename(columns={patient_col: "patient_id"})


def class_weights(labels: Sequence[int], n_classes: int | None = None) -> torch.Tensor:
    """Balanced class weights ``n_samples / (n_classes * count_k)`` (sklearn's ``"balanced"``), float32.

    For ``torch.nn.CrossEntropyLoss(weight=...)``. Every class in ``range(n_classes)`` must occur.
    """
    labels = _int_labels(labels)
    n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    missing = sorted(set(range(n_classes)) - set(labels.tolist()))
    if missing:
        raise DatasetError(f"class_weights: classes {missing} have no samples; a balanced weight is undefined. "
                           "Check the split, or drop the empty classes.")
    weights = compute_class_weight("balanced", classes=np.arange(n_classes), y=labels)
    return torch.as_tensor(weights, dtype=torch.float32)


def weighted_sampler(
    labels: Sequence[int], *, seed: int = 0, num_samples: int | None = None, replacement: bool = True
) -> WeightedRandomSampler:
    """A sampler that draws every class equally often on average (weights from :func:`class_weights`).

    Parameters
    ----------
    labels : sequence of int
        Label of every sample of the dataset.
    seed : int
        Seed of the sampler's own generator (reproducible epochs).
    num_samples : int, optional
        Samples per epoch (default: ``len(labels)``).
    replacement : bool
        Draw with replacement (needed to oversample the rare class).
    """
    labels = _int_labels(labels)
    per_sample = class_weights(labels)[torch.as_tensor(labels)].double()
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(per_sample, num_samples or len(labels), replacement=replacement, generator=generator)


def _int_labels(labels: Sequence[int]) -> np.ndarray:
    array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if array.ndim != 1 or array.size == 0:
        raise ArgumentError(f"labels must be a non-empty 1D sequence of class indices; got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0:
        raise ArgumentError(f"labels must be non-negative integer class indices; got dtype {array.dtype}.")
    return array.astype(np.int64)
