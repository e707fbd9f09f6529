"""Scoped changes to a model and to torch's global switches, always undone in ``finally``.

A leaf module (torch only) so that ``models`` and ``train`` share it: the training side's counterpart of
:func:`xaikit.saliency.safety.guarded` (which they cannot import: saliency sits downstream of them). Every function
of :mod:`xaikit.train` (and :func:`xaikit.models.cam_layer`) that switches a model between train and eval mode does
it through :func:`model_mode`, and :func:`determinism` puts back every global setting it touches.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
from torch import nn

__all__ = ["model_mode", "eval_mode", "train_mode", "determinism", "one_thread"]

#: environment variables :func:`determinism` may set, restored (or removed) on exit
_ENV = ("CUBLAS_WORKSPACE_CONFIG",)


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """``model.train(training)`` for the block; afterwards every submodule gets back its own previous mode
    (a model with a frozen, eval-mode backbone inside a training head stays exactly that)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train(training)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def eval_mode(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Eval mode for the block, every submodule's mode restored after (see :func:`model_mode`)."""
    return model_mode(model, False)


def train_mode(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Train mode for the block, every submodule's mode restored after (see :func:`model_mode`)."""
    return model_mode(model, True)


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms for the block; torch's global switches and ``CUBLAS_WORKSPACE_CONFIG`` are put
    back afterwards (the variable removed again when it was not set before)."""
    if not enabled:
        yield
        return
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    env = {name: os.environ.get(name) for name in _ENV}
    try:
        if device.type == "cuda":  # cuBLAS needs this to be deterministic (PyTorch reproducibility notes)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread inside the block (the number before is put back): the float sums of training then do
    not depend on the machine's thread count (same bytes everywhere the kernels agree), and tiny convolutions on a
    shared 2-core machine do not wait on each other (measured: a test run 50 s -> 3 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
