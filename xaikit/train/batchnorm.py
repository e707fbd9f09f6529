"""Re-estimate BatchNorm statistics after training ("precise BN").

During training BatchNorm keeps an exponential moving average of batch statistics that lags behind the
weights; with few, small batches (a few hundred images on a CPU) the averages can be far from the statistics
the final weights produce, so eval-mode outputs are miscalibrated although their ranking (ROC AUC) is good.
Recomputing the averages over the training data with the final weights fixes that (Wu & Johnson 2021,
"Rethinking 'Batch' in BatchNorm", arXiv:2105.07576). torch has no function for it (torchvision's
``update_bn`` lives in ``torch.optim.swa_utils`` and expects bare tensors from a loader), hence this one.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._modes import train_mode
from ..errors import ArgumentError

__all__ = ["recalibrate_batchnorm"]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Dataset, *, batch_size: int = 32, device: str = "cpu") -> int:
    """Recompute every BatchNorm's running mean/variance as the average over ``dataset`` (no augmentation).

    Parameters
    ----------
    model : nn.Module
        Trained model; its weights are not changed, its train/eval mode is restored.
    dataset : Dataset of sample dicts
        Usually the training split *without* augmentation, preprocessed as for training.
    batch_size : int
        Batch size of the statistics pass.

    Returns
    -------
    int
        Number of BatchNorm layers recalibrated (0: nothing to do).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    if len(dataset) == 0:
        raise ArgumentError("recalibrate_batchnorm needs a non-empty dataset (the training split).")
    momenta = [m.momentum for m in norms]
    try:
        with train_mode(model):
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative moving average: the plain mean over all batches
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                model(batch["image"].to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return len(norms)
