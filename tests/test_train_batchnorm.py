"""Precise-BN recalibration: running statistics become the dataset's own, the mode is restored."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from xaikit.errors import ArgumentError
from xaikit.train import recalibrate_batchnorm


class _Samples(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": 0}


def test_running_stats_equal_dataset_statistics():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 3, 3, bias=False)
    model = nn.Sequential(conv, nn.BatchNorm2d(3), nn.ReLU()).double()
    x = torch.randn(40, 1, 8, 8, dtype=torch.float64) * 2 + 1
    model.eval()
    n = recalibrate_batchnorm(model, _Samples(x), batch_size=8)
    assert n == 1 and not model.training
    bn = model[1]
    with torch.no_grad():
        feats = conv(x)
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3)), atol=1e-10)
    # cumulative average of the per-batch unbiased variances (batches of equal size)
    per_batch = torch.stack([feats[i:i + 8].var((0, 2, 3), unbiased=True) for i in range(0, 40, 8)])
    assert torch.allclose(bn.running_var, per_batch.mean(0), atol=1e-10)
    assert bn.momentum == 0.1
    assert not any(p.grad is not None for p in model.parameters())


def test_no_batchnorm_and_empty_dataset():
    assert recalibrate_batchnorm(nn.Linear(2, 2), _Samples(torch.zeros(3, 2))) == 0
    with pytest.raises(ArgumentError, match="non-empty"):
        recalibrate_batchnorm(nn.BatchNorm2d(1), _Samples(torch.zeros(0, 1, 2, 2)))
