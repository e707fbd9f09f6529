"""Train a classifier: one call, honest validation, best weights restored, nothing left changed by accident.

Example
-------
>>> from xaikit.models import build_model
>>> from xaikit.train import fit
>>> model = build_model("small_cnn", num_classes=2)
>>> result = fit(model, train_set, val_set, epochs=10, lr=1e-3)  # doctest: +SKIP
>>> result.history_wide()                                        # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .._modes import determinism, train_mode
from ..checkpoint import save_checkpoint
from ..data.splits import class_weights, weighted_sampler
from ..errors import ArgumentError, TrainingError
from . import metrics as M
from ._data import autocast, infer, make_loader, resolve_classes, resolve_device
from ._settings import EpochTools, FitSettings, Hardware, Optimization, Output, Sampling, Selection
from ._setup import (
    MONITORS,
    OPTIMIZERS,
    SCHEDULERS,
    VAL_METRICS,
    as_callbacks,
    check_args,
    check_data,
    common_preprocess,
    early_stopping_rule,
    make_optimizer,
    make_scheduler,
)
from .tracking import TRACKERS, MlflowRun

__all__ = ["FitResult", "fit", "OPTIMIZERS", "SCHEDULERS", "MONITORS"]


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes
    ----------
    history : tidy table, one row per epoch and quantity: ``epoch`` (1-based), ``split`` (``train``/``val``),
        ``metric`` (``loss``, ``seconds`` (wall time of the pass), for ``train`` also ``lr``, for ``val`` the
        names in ``VAL_METRICS``), ``value``.
    best_epoch, best_value : the epoch whose weights were restored and its ``monitor`` value.
    monitor : the quantity that picked the best epoch.
    stopped_early : whether early stopping ended training before ``epochs``.
    """

    history: pd.DataFrame
    best_epoch: int
    best_value: float
    monitor: str
    epochs_run: int
    stopped_early: bool
    classes: list[str]
    device: str
    seconds: float
    params: dict = field(default_factory=dict)
    tracking_run_id: str | None = None

    def history_wide(self) -> pd.DataFrame:
        """One row per epoch, one column per ``<split>_<metric>`` (e.g. ``train_loss``, ``val_roc_auc``)."""
        wide = self.history.assign(name=self.history["split"] + "_" + self.history["metric"])
        return wide.pivot(index="epoch", columns="name", values="value").rename_axis(columns=None).reset_index()

    def summary(self) -> dict:
        """Plain-value summary for :func:`xaikit.checkpoint.save_checkpoint`."""
        best = self.history_wide().set_index("epoch").loc[self.best_epoch].to_dict()
        return {"best_epoch": self.best_epoch, "monitor": self.monitor, "best_value": self.best_value,
                "epochs_run": self.epochs_run, "stopped_early": self.stopped_early, "device": self.device,
                "seconds": round(self.seconds, 2), "best_epoch_metrics": best, "params": self.params}

    def plot(self):
        """Loss and validation metric curves (:func:`xaikit.viz.training.training_curves`)."""
        from ..viz.training import training_curves

        return training_curves(self.history)


def fit(
    model: nn.Module,
    train: Dataset,
    val: Dataset,
    *,
    classes: Sequence[str] | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    scheduler: str | None = "cosine",
    class_weight: str | None = None,
    sampler: str | None = None,
    early_stopping: int | tuple[str, int] | None = None,
    monitor: str = "val_roc_auc",
    seed: int = 0,
    deterministic: bool = False,
    device: str | torch.device = "auto",
    amp: bool | None = None,
    num_workers: int = 0,
    callbacks: Sequence[Any] = (),
    checkpoint_path: str | os.PathLike | None = None,
    preprocess: Any = None,
    progress: bool = True,
    tracking: str | None = None,
    tracking_uri: str | os.PathLike | None = None,
    experiment: str = "xaikit",
) -> FitResult:
    """Train ``model`` on ``train``, validate on ``val`` after every epoch, restore the best epoch's weights.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits ``N x K``. It stays on the training device; its train/eval mode is restored.
        Only parameters with ``requires_grad`` are optimized (see :func:`xaikit.models.freeze_backbone`).
    train, val : Dataset
        Samples ``{"image": C x H x W float tensor, "label": int, ...}``. ``dataset.labels`` (if present) is
        used to check labels without reading images. ``val`` must not be empty.
    classes : sequence of str, optional
        Class names in logit order (default ``train.classes`` or ``"0", "1", ...``).
    epochs, batch_size, lr, weight_decay : training length, batch size, learning rate, weight decay.
    optimizer : {"adamw", "adam", "sgd"}
        ``sgd`` uses Nesterov momentum 0.9.
    scheduler : {"cosine", "onecycle", "plateau", None}
        Cosine annealing over the epochs, one-cycle over all batches, or reduce-on-plateau of ``monitor``.
    class_weight : {"balanced", None}
        Weight the loss by inverse class frequency (scikit-learn's ``compute_class_weight("balanced")``).
    sampler : {"weighted", None}
        Draw training samples with probability inversely proportional to their class frequency.
        Use either this or ``class_weight``, not both (that corrects imbalance twice).
    early_stopping : int or (metric, patience), optional
        Stop when the metric (default ``monitor``) has not improved for ``patience`` epochs.
    monitor : str
        One of :data:`MONITORS`; picks the best epoch (losses are minimized, other metrics maximized).
    seed : int
        Seeds torch's global RNG (dropout), the shuffling order and data workers.
    deterministic : bool
        Use deterministic algorithms (warn where none exists) while training; torch's global switches and (on
        CUDA) ``CUBLAS_WORKSPACE_CONFIG`` are restored afterwards.
    device : "auto", "cpu", "cuda", "mps" or torch.device
        ``"auto"`` picks CUDA, then MPS, then CPU.
    amp : bool, optional
        Mixed precision (float16 autocast + gradient scaling); default on for CUDA only.
    callbacks : sequence
        Objects with ``on_epoch_end(row: dict)`` and/or ``on_batch_end(epoch, batch, loss)``; a plain callable
        is an ``on_epoch_end``. ``row`` holds ``epoch`` and every ``<split>_<metric>`` of that epoch.
        (:class:`xaikit.widgets.training.LiveCurve` draws a live curve from it.)
    checkpoint_path : path-like, optional
        Save a checkpoint (:func:`xaikit.checkpoint.save_checkpoint`) every time ``monitor`` improves;
        needs a model from :func:`xaikit.models.build_model`.
    preprocess : Preprocess, optional
        Stored in the checkpoint (default ``train.preprocess``). It must equal ``val.preprocess`` and, when
        fine-tuning a loaded checkpoint, ``model.xaikit_preprocess`` (else ``PreprocessMismatchError``).
    progress : bool
        Show a tqdm progress bar.
    tracking : {"mlflow", None}
        Log the run to MLflow (optional dependency ``mlflow-skinny``): parameters, per-epoch metrics, the best
        epoch's evaluation, and the checkpoint as artifact ``model.pt`` (see :mod:`xaikit.train.tracking`);
        ``FitResult.tracking_run_id`` names the run, ``load_checkpoint("runs:/<id>/model.pt")`` loads it back.
    tracking_uri : str or path, optional
        MLflow tracking URI or folder (default ``MLFLOW_TRACKING_URI``, else ``./mlruns``).
    experiment : str
        MLflow experiment name.

    Returns
    -------
    FitResult

    Raises
    ------
    TrainingError
        On a non-finite loss (names the epoch and batch; the best weights so far are restored and the best
        checkpoint is kept) or an empty validation set.
    DatasetError
        A training set with one class or labels outside ``classes``.
    """
    check_args(epochs, batch_size, optimizer, scheduler, class_weight, sampler, monitor, amp)
    stop_metric, patience = early_stopping_rule(early_stopping, monitor)
    classes = resolve_classes(model, train, classes)
    y_train, y_val = check_data(train, val, classes, monitor)
    arch = getattr(model, "xaikit_arch", None)
    if checkpoint_path is not None and arch is None:
        raise ArgumentError("checkpoint_path needs a model built by xaikit.models.build_model (its architecture "
                            "is recorded in the checkpoint); build it that way or save it yourself after fit")
    preprocess = common_preprocess(model, train, val, preprocess)
    device = resolve_device(device)
    settings = FitSettings(
        optimization=Optimization(optimizer=optimizer, lr=lr, weight_decay=weight_decay, scheduler=scheduler,
                                  epochs=epochs),
        sampling=Sampling(batch_size=batch_size, class_weight=class_weight, sampler=sampler, seed=seed,
                          num_workers=num_workers),
        selection=Selection(monitor=monitor, stop_metric=stop_metric, patience=patience),
        hardware=Hardware(device=device, amp=device.type == "cuda" if amp is None else bool(amp),
                          deterministic=deterministic),
        output=Output(checkpoint_path=checkpoint_path, preprocess=preprocess, progress=progress),
    )
    params = settings.params(n_train=len(y_train), n_val=len(y_val))
    run = _Run(model, classes, settings, params)
    tracker = _tracker(tracking, tracking_uri, experiment, params)
    callbacks = [*callbacks, tracker] if tracker is not None else callbacks
    try:
        result = _train(run, train, val, y_train, callbacks)
    except BaseException:
        if tracker is not None:
            tracker.close("FAILED")
        raise
    if tracker is not None:
        result.tracking_run_id = tracker.run_id
        tracker.finish(result, model, classes, preprocess)
    return result


def _tracker(tracking, tracking_uri, experiment, params):
    if tracking is None:
        return None

    if tracking not in TRACKERS:
        raise ArgumentError(f"tracking={tracking!r}: use one of {list(TRACKERS)} or None.")
    tracker = MlflowRun(tracking_uri, experiment)
    tracker.log_params(params)
    return tracker


def _train(run: _Run, train: Dataset, val: Dataset, y_train, callbacks) -> FitResult:
    """Loaders, loss, optimizer and schedule of the run, then its epoch loop; global switches and every
    module's train/eval mode are restored afterwards."""
    model, hw, sampling, opt_s = run.model, run.settings.hardware, run.settings.sampling, run.settings.optimization
    with determinism(hw.deterministic, hw.device), train_mode(model):
        torch.manual_seed(sampling.seed)
        generator = torch.Generator().manual_seed(sampling.seed)
        model.to(hw.device)
        sampler = weighted_sampler(y_train, seed=sampling.seed) if sampling.sampler else None
        loader = make_loader(train, sampling.batch_size, shuffle=True, num_workers=sampling.num_workers,
                             device=hw.device, sampler=sampler, generator=generator)
        val_loader = make_loader(val, sampling.batch_size, num_workers=sampling.num_workers, device=hw.device)
        weight = class_weights(y_train, len(run.classes)).to(hw.device) if sampling.class_weight else None
        opt = make_optimizer(opt_s.optimizer, model, opt_s.lr, opt_s.weight_decay)
        sched = make_scheduler(opt_s.scheduler, opt, opt_s.lr, opt_s.epochs, len(loader), run.monitor)
        run.loop(loader, val_loader, nn.CrossEntropyLoss(weight=weight), opt, sched, as_callbacks(callbacks))
    return run.result()


# ------------------------------------------------------------------------------------------ the run


class _Run:
    """State of one training run: history, best weights, the epoch loop."""

    def __init__(self, model: nn.Module, classes: Sequence[str], settings: FitSettings, params: dict):
        self.model, self.classes, self.settings, self.params = model, classes, settings, params
        self.device, self.amp = settings.hardware.device, settings.hardware.amp
        self.monitor = settings.selection.monitor
        self.checkpoint_path, self.preprocess = settings.output.checkpoint_path, settings.output.preprocess
        self.rows: list[dict] = []
        self.best_epoch, self.best_value, self.best_val_loss = 0, math.nan, math.inf
        self.best_state = _copy_state(model)  # the weights before training, restored if epoch 1 fails
        self.stopped_early = False
        self.start = time.perf_counter()

    def loop(self, loader, val_loader, criterion, opt, sched, callbacks):
        epochs = self.settings.optimization.epochs
        stop_metric, patience = self.settings.selection.stop_metric, self.settings.selection.patience
        batch_sched = sched if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR) else None
        tools = EpochTools(criterion=criterion, optimizer=opt, scaler=torch.amp.GradScaler("cuda", enabled=self.amp),
                           batch_scheduler=batch_sched,
                           on_batch=tuple(cb.on_batch_end for cb in callbacks if hasattr(cb, "on_batch_end")))
        on_epoch = [cb.on_epoch_end for cb in callbacks if hasattr(cb, "on_epoch_end")]
        since_best, best_stop = 0, math.nan
        with tqdm(total=epochs * len(loader), desc="fit", unit="batch",
                  disable=not self.settings.output.progress) as bar:
            for epoch in range(1, epochs + 1):
                tic = time.perf_counter()
                lr = opt.param_groups[0]["lr"]
                losses, sizes = _train_epoch(self.model, loader, tools, self.settings.hardware, epoch, bar)
                train_loss = self._check_finite(losses, sizes, epoch)
                row = {"epoch": epoch, "train_loss": train_loss, "train_lr": lr,
                       "train_seconds": time.perf_counter() - tic}
                tic = time.perf_counter()
                row |= self._validate(val_loader)
                row["val_seconds"] = time.perf_counter() - tic
                self.rows.append(row)
                self._step_scheduler(sched, batch_sched, row)
                self._keep_if_best(row)
                for hook in on_epoch:
                    hook(dict(row))
                bar.set_postfix({"epoch": epoch, "train_loss": f"{train_loss:.4f}",
                                 self.monitor: f"{row[self.monitor]:.4f}"})
                if _improved(row[stop_metric], best_stop, stop_metric):
                    best_stop, since_best = row[stop_metric], 0
                else:
                    since_best += 1
                if patience is not None and since_best >= patience and epoch < epochs:
                    self.stopped_early = True
                    break
        if self.best_epoch == 0:
            warnings.warn(f"{self.monitor} was never finite, so no best epoch could be chosen; keeping the "
                          "weights of the last epoch. Monitor 'val_loss' instead.", stacklevel=3)
            self.best_epoch, self.best_value = len(self.rows), math.nan
        else:
            self.model.load_state_dict(self.best_state)

    def _validate(self, val_loader) -> dict:
        logits, y, _ = infer(self.model, val_loader, self.device, self.amp)
        y_np = y.numpy()
        prob = torch.softmax(logits.double(), 1).numpy()
        with M.fast_sklearn():
            scores = M.classification_scores(y_np, prob, prob.argmax(1))
        loss = float(nn.functional.cross_entropy(logits, y))
        return {"val_loss": loss, **{f"val_{m}": scores[m] for m in VAL_METRICS}}

    def _check_finite(self, losses: list[torch.Tensor], sizes: list[int], epoch: int) -> float:
        # the losses stay on the device during the epoch (no per-batch synchronization); checked once here
        stacked = torch.stack(losses).float().cpu()
        bad = torch.nonzero(~torch.isfinite(stacked)).flatten()
        if bad.numel():
            self.model.load_state_dict(self.best_state)
            raise TrainingError(self._nan_message(epoch, int(bad[0]) + 1, float(stacked[bad[0]])))
        return float((stacked * torch.as_tensor(sizes, dtype=torch.float32)).sum() / sum(sizes))

    def _nan_message(self, epoch: int, batch: int, value: float) -> str:
        if self.best_epoch:
            kept = (f"the weights of the best epoch {self.best_epoch} ({self.monitor}={self.best_value:.4g}) "
                    "were restored")
            if self.checkpoint_path is not None:
                kept += f" and its checkpoint is kept at {self.checkpoint_path}"
        else:
            kept = "no epoch finished, so the weights from before training were restored"
        return (f"training loss is {value} at epoch {epoch}, batch {batch}; {kept}. Lower the learning rate, "
                "check the images for NaN/inf values, or train with amp=False.")

    def _step_scheduler(self, sched, batch_sched, row) -> None:
        if sched is None or sched is batch_sched:
            return
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(row[self.monitor])
        else:
            sched.step()

    def _keep_if_best(self, row) -> None:
        tie = row[self.monitor] == self.best_value and row["val_loss"] < self.best_val_loss
        if not (tie or _improved(row[self.monitor], self.best_value, self.monitor)):
            return  # a tie (e.g. ROC AUC saturated at 1) goes to the epoch with the lower validation loss
        self.best_epoch, self.best_value = row["epoch"], float(row[self.monitor])
        self.best_val_loss = row["val_loss"]
        self.best_state = _copy_state(self.model)
        if self.checkpoint_path is not None:

            save_checkpoint(self.checkpoint_path, self.model, classes=self.classes, preprocess=self.preprocess,
                            summary=self.result().summary())

    def result(self) -> FitResult:
        long = pd.DataFrame(self.rows).melt(id_vars="epoch", var_name="name", value_name="value")
        split_metric = long["name"].str.split("_", n=1, expand=True)
        history = pd.DataFrame({"epoch": long["epoch"].astype(int), "split": split_metric[0],
                                "metric": split_metric[1], "value": long["value"].astype(float)})
        history = history.sort_values(["epoch", "split"], kind="stable").reset_index(drop=True)
        return FitResult(history, self.best_epoch, self.best_value, self.monitor, len(self.rows),
                         self.stopped_early, list(self.classes), str(self.device),
                         time.perf_counter() - self.start, dict(self.params))


def _train_epoch(model: nn.Module, loader, tools: EpochTools, hw: Hardware, epoch: int, bar
                 ) -> tuple[list[torch.Tensor], list[int]]:
    """One pass over ``loader``: the hot loop, kept free of host-device synchronization."""
    model.train()
    losses, sizes = [], []
    for batch, (images, labels) in enumerate(loader, start=1):
        images = images.to(hw.device, non_blocking=True)
        labels = labels.to(hw.device, non_blocking=True)
        loss = _step(model, images, labels, tools, hw)
        if tools.batch_scheduler is not None:
            tools.batch_scheduler.step()
        losses.append(loss)
        sizes.append(labels.shape[0])
        for hook in tools.on_batch:
            hook(epoch, batch, loss)
        bar.update(1)
    return losses, sizes


def _step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, tools: EpochTools, hw: Hardware
          ) -> torch.Tensor:
    """One optimizer step (with gradient scaling under mixed precision); returns the detached loss."""
    opt = tools.optimizer
    opt.zero_grad(set_to_none=True)
    if hw.amp:
        with autocast(hw.device, hw.amp):
            loss = tools.criterion(model(images), labels)
        tools.scaler.scale(loss).backward()
        tools.scaler.step(opt)
        tools.scaler.update()
    else:
        loss = tools.criterion(model(images), labels)
        loss.backward()
        opt.step()
    return loss.detach()


def _mode(metric: str) -> str:
    return "min" if metric.endswith("loss") else "max"


def _improved(value: float, best: float, metric: str) -> bool:
    if not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return value < best if _mode(metric) == "min" else value > best


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
