"""The training loop shared by the in-memory fits (:func:`~xaikit.train.segmentation.fit_segmentation`,
:func:`~xaikit.train.detection.fit_boxes`): tensors in memory, AdamW, a one-cycle schedule, seeded shuffling.

Not :func:`xaikit.train.fit`: that one reads datasets through loaders, selects the best epoch on validation and
checkpoints; these small sample models train on one tensor each, so the loop is a dozen lines.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch
from torch import nn

from .._modes import train_mode

__all__ = ["fit_tensors"]


def fit_tensors(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, epochs: int, batch_size: int,
                lr: float, seed: int) -> pd.DataFrame:
    """Train ``model`` on ``loss_fn(model(images[idx]), targets[idx])``; return ``epoch, loss`` (mean per image).

    The model's train/eval modes are restored afterwards; the shuffling draws from its own seeded generator.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(images) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    rows = []
    with train_mode(model):
        for epoch in range(epochs):
            order, total = torch.randperm(len(images), generator=gen), 0.0
            for start in range(0, len(images), batch_size):
                idx = order[start : start + batch_size]
                loss = loss_fn(model(images[idx]), targets[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            rows.append({"epoch": epoch + 1, "loss": total / len(images)})
    return pd.DataFrame(rows)
