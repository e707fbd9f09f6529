"""The settings of one :func:`xaikit.train.fit` run, carried in small frozen dataclasses.

``fit`` keeps its flat keyword signature (the public call); inside, the run's settings travel as these few
named, immutable groups instead of long positional lists, so a swapped argument cannot pass unnoticed.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch

__all__ = ["Optimization", "Sampling", "Selection", "Hardware", "Output", "FitSettings", "EpochTools"]


@dataclass(frozen=True, kw_only=True)
class Optimization:
    """How the weights are updated: optimizer, learning rate, weight decay, schedule, number of epochs."""

    optimizer: str
    lr: float
    weight_decay: float
    scheduler: str | None
    epochs: int


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How batches are drawn and weighted: batch size, class imbalance handling, seed, loader workers."""

    batch_size: int
    class_weight: str | None
    sampler: str | None
    seed: int
    num_workers: int


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which epoch is kept and when training stops: ``monitor`` picks the best epoch, ``stop_metric`` with
    ``patience`` (None: never) stops early."""

    monitor: str
    stop_metric: str
    patience: int | None


@dataclass(frozen=True, kw_only=True)
class Hardware:
    """Where and how the arithmetic runs."""

    device: torch.device
    amp: bool
    deterministic: bool


@dataclass(frozen=True, kw_only=True)
class Output:
    """What the run writes and shows: the best checkpoint (with its Preprocess) and the progress bar."""

    checkpoint_path: str | os.PathLike | None
    preprocess: Any
    progress: bool


@dataclass(frozen=True, kw_only=True)
class FitSettings:
    """Every setting of one run, grouped."""

    optimization: Optimization
    sampling: Sampling
    selection: Selection
    hardware: Hardware
    output: Output

    def params(self, n_train: int, n_val: int) -> dict[str, Any]:
        """The plain-value parameters recorded in ``FitResult.params``, the checkpoint summary and MLflow."""
        o, s = asdict(self.optimization), asdict(self.sampling)
        return dict(epochs=o["epochs"], batch_size=s["batch_size"], optimizer=o["optimizer"], lr=o["lr"],
                    weight_decay=o["weight_decay"], scheduler=o["scheduler"], class_weight=s["class_weight"],
                    sampler=s["sampler"], seed=s["seed"], amp=self.hardware.amp, n_train=n_train, n_val=n_val)


@dataclass(frozen=True, kw_only=True)
class EpochTools:
    """What one training epoch uses besides the model and the loader."""

    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    batch_scheduler: Any  # a per-batch scheduler (one-cycle) or None
    on_batch: Sequence[Callable[[int, int, torch.Tensor], Any]]
