"""balanced_batch: the first k samples of each class, stacked, with the dataset's order and metadata."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xaikit.data import SampleBatch, balanced_batch
from xaikit.errors import ArgumentError


class _Toy:
    """A dataset with the ManifestDataset surface the batch needs: labels, classes, sample dicts."""

    classes = ["normal", "pneumonia", "other"]

    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": torch.full((1, 4, 4), float(i)), "label": int(self.labels[i]), "id": f"img{i}",
                "patient_id": f"p{i // 2}", "masks": {"lung": torch.eye(4, dtype=torch.bool) * (i % 2 == 0),
                                                       "heart": torch.ones(4, 4, dtype=torch.bool)}}


def test_first_k_of_each_class_in_dataset_order():
    data = _Toy([1, 0, 1, 0, 0, 1, 1])
    batch = balanced_batch(data, 2)
    assert isinstance(batch, SampleBatch) and len(batch) == 4
    assert batch.image_ids == ["img1", "img3", "img0", "img2"]                 # class 0 first, then class 1
    assert batch.labels.tolist() == [0, 0, 1, 1] and batch.patient_ids == ["p0", "p1", "p0", "p1"]
    assert batch.images[:, 0, 0, 0].tolist() == [1.0, 3.0, 0.0, 2.0] and batch.images.shape == (4, 1, 4, 4)
    assert batch.classes == _Toy.classes
    masks = batch.masks("lung", "heart")
    assert masks["lung"].shape == (4, 4, 4) and masks["lung"][2].equal(data[0]["masks"]["lung"])
    assert set(batch.masks()) == {"lung", "heart"}


def test_none_takes_everything_and_classes_choose_and_order():
    data = _Toy([1, 0, 1, 0, 0, 1, 1])
    assert len(balanced_batch(data)) == 7
    assert balanced_batch(data, 1, classes=[1, 0]).image_ids == ["img0", "img1"]
    assert balanced_batch(data, 10, classes=[1]).labels.tolist() == [1, 1, 1, 1]


def test_bad_arguments_are_refused():
    data = _Toy([1, 0])
    with pytest.raises(ArgumentError, match="per_class must be a positive integer"):
        balanced_batch(data, 0)
    with pytest.raises(ArgumentError, match=r"classes \[5\] are not class indices"):
        balanced_batch(data, 1, classes=[5])
    with pytest.raises(ArgumentError, match=r"masks \['lesion'\] are missing"):
        balanced_batch(data, 1).masks("lesion")
