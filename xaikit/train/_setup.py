"""Private set-up of :func:`xaikit.train.fit`: argument checks, data checks, optimizer, schedule, callbacks.

Loss weights and the balanced sampler are :func:`xaikit.data.class_weights` and :func:`xaikit.data.weighted_sampler`
(one implementation, upstream); the deterministic-mode context is :func:`xaikit.train._modes.determinism`."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..checkpoint import check_preprocess, preprocess_dict
from ..errors import ArgumentError, DatasetError, PreprocessMismatchError, TrainingError
from ._data import check_labels, dataset_labels

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "onecycle", "plateau", None)
#: validation metrics recorded every epoch (as ``val_<name>``); any of them, ``val_loss`` or ``train_loss``
#: can be monitored
VAL_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "roc_auc", "pr_auc")
MONITORS = ("train_loss", "val_loss", *(f"val_{m}" for m in VAL_METRICS))


def check_args(epochs, batch_size, optimizer, scheduler, class_weight, sampler, monitor, amp) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ArgumentError(f"epochs={epochs!r} must be a positive integer")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size={batch_size!r} must be a positive integer")
    for name, value, allowed in (("optimizer", optimizer, OPTIMIZERS), ("scheduler", scheduler, SCHEDULERS),
                                 ("class_weight", class_weight, ("balanced", None)),
                                 ("sampler", sampler, ("weighted", None)), ("monitor", monitor, MONITORS)):
        if value not in allowed:
            raise ArgumentError(f"{name}={value!r} is not one of {list(allowed)}")
    if class_weight and sampler:
        warnings.warn("class_weight='balanced' together with sampler='weighted' corrects class imbalance twice "
                      "(the minority class ends up over-weighted); use one of them", stacklevel=3)
    if amp and not torch.cuda.is_available():
        raise ArgumentError("amp=True needs a CUDA device; leave amp=None (automatic) on CPU/MPS")


def common_preprocess(model, train, val, preprocess) -> Any:
    """The preprocessing of this run: ``preprocess`` or ``train.preprocess``, which must equal
    ``val.preprocess`` and (for a loaded checkpoint being fine-tuned) ``model.xaikit_preprocess``."""

    preprocess = preprocess if preprocess is not None else getattr(train, "preprocess", None)
    val_preprocess = getattr(val, "preprocess", None)
    if preprocess is None:
        return None
    if val_preprocess is not None and preprocess_dict(val_preprocess) != preprocess_dict(preprocess):
        raise PreprocessMismatchError(
            f"the validation set is preprocessed differently ({preprocess_dict(val_preprocess)}) from training "
            f"({preprocess_dict(preprocess)}); build both datasets with the same Preprocess")
    if getattr(model, "xaikit_preprocess", None) is not None:
        check_preprocess(model, preprocess)
    return preprocess


def early_stopping_rule(early_stopping, monitor) -> tuple[str, int | None]:
    if early_stopping is None:
        return monitor, None
    metric, patience = (monitor, early_stopping) if isinstance(early_stopping, int) else early_stopping
    if metric not in MONITORS:
        raise ArgumentError(f"early_stopping metric {metric!r} is not one of {list(MONITORS)}")
    if not isinstance(patience, int) or patience < 1:
        raise ArgumentError(f"early_stopping patience {patience!r} must be a positive integer (epochs)")
    return metric, patience


def check_data(train, val, classes, monitor) -> tuple[np.ndarray, np.ndarray]:
    if len(classes) < 2:
        raise ArgumentError(f"classes={list(classes)}: a classifier needs at least 2 classes")
    if val is None or len(val) == 0:
        raise TrainingError("the validation set is empty: fit picks the best epoch and stops early on "
                            "validation data; split off a validation set (e.g. by patient) and pass it as val")
    y_train = dataset_labels(train, "training set")
    check_labels(y_train, classes, "training set")
    y_val = dataset_labels(val, "validation set")
    check_labels(y_val, classes, "validation set", need_two=False)
    if np.unique(y_val).size < 2 and monitor in ("val_roc_auc", "val_pr_auc", "val_balanced_accuracy"):
        raise DatasetError(f"the validation set holds only class {classes[int(y_val[0])]!r}, so {monitor} is "
                           "undefined; give it samples of every class or monitor 'val_loss'")
    return y_train, y_val


def make_optimizer(name, model, lr, weight_decay) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ArgumentError("the model has no trainable parameter (all frozen); call xaikit.models.unfreeze "
                            "or unfreeze the head")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay)


def make_scheduler(name, opt, lr, epochs, steps, monitor):
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    if name == "plateau":
        mode = "min" if monitor.endswith("loss") else "max"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.3, patience=2)
    return None


def as_callbacks(callbacks) -> list:
    out = []
    for cb in callbacks:
        if hasattr(cb, "on_epoch_end") or hasattr(cb, "on_batch_end"):
            out.append(cb)
        elif callable(cb):
            out.append(_EpochHook(cb))
        else:
            raise ArgumentError(f"callback {cb!r} has neither on_epoch_end nor on_batch_end and is not callable")
    return out


@dataclass
class _EpochHook:
    on_epoch_end: Callable[[dict], Any]
