"""xaikit.train restores what it changes: every module's train/eval mode through one context manager, torch's
deterministic switches and CUBLAS_WORKSPACE_CONFIG through determinism(); the fit settings are frozen groups."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from xaikit._modes import determinism, eval_mode, model_mode, train_mode

TRAIN = Path(__file__).resolve().parents[1] / "xaikit" / "train"


def _mixed() -> nn.Module:
    """A model whose submodules are in different modes (a frozen eval-mode backbone inside a training head)."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    net.train()
    net[1].eval()
    return net


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


@pytest.mark.parametrize("context", [eval_mode, train_mode, lambda m: model_mode(m, False)])
def test_every_module_gets_its_own_mode_back_even_after_an_error(context):
    net = _mixed()
    before = _modes(net)
    with context(net) as inside:
        assert inside is net and len(set(_modes(net))) == 1         # one mode for the whole block
    assert _modes(net) == before
    with pytest.raises(RuntimeError, match="boom"), context(net):
        raise RuntimeError("boom")
    assert _modes(net) == before


def test_training_and_prediction_functions_restore_mixed_modes():
    from xaikit.train import fit_boxes, predict_boxes

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 6 * 6, 4))
    net[1].eval()
    before = _modes(net)
    x = torch.randn(6, 1, 8, 8)
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5]] * 6)
    fit_boxes(net, x, boxes, epochs=1, batch_size=3)
    assert _modes(net) == before
    predict_boxes(net, x)
    assert _modes(net) == before


def test_no_hand_written_mode_restoring_left_in_train():
    """Every train/eval switch with a restore goes through xaikit._modes (one shape, undone in finally)."""
    for path in [*TRAIN.glob("*.py"), *(TRAIN.parent / "models").glob("*.py")]:
        text = path.read_text()
        assert not re.search(r"=\s*model\.training\b", text), f"{path.name} saves model.training by hand"
        assert "model.train(was" not in text, f"{path.name} restores a mode by hand"


@pytest.mark.parametrize("before", [None, ":16:8"])
def test_determinism_puts_back_cublas_workspace_and_torch_switches(before, monkeypatch):
    if before is None:
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    else:
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", before)
    switches = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
                torch.backends.cudnn.deterministic)
    with pytest.raises(RuntimeError, match="inside"), determinism(True, torch.device("cuda")):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == (before or ":4096:8")
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        raise RuntimeError("inside")
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == before
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic) == switches


def test_fit_settings_are_frozen_and_keyword_only():
    """A swapped argument cannot pass unnoticed: the groups are built by keyword only and never change."""
    from xaikit.train._settings import FitSettings, Hardware, Optimization, Output, Sampling, Selection

    with pytest.raises(TypeError):
        Optimization("adamw", 1e-3, 1e-4, None, 2)  # type: ignore[misc]
    settings = FitSettings(
        optimization=Optimization(optimizer="adamw", lr=1e-3, weight_decay=1e-4, scheduler=None, epochs=2),
        sampling=Sampling(batch_size=8, class_weight=None, sampler=None, seed=0, num_workers=0),
        selection=Selection(monitor="val_loss", stop_metric="val_loss", patience=None),
        hardware=Hardware(device=torch.device("cpu"), amp=False, deterministic=False),
        output=Output(checkpoint_path=None, preprocess=None, progress=False))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.optimization.lr = 1.0  # type: ignore[misc]
    assert settings.params(n_train=10, n_val=4) == dict(
        epochs=2, batch_size=8, optimizer="adamw", lr=1e-3, weight_decay=1e-4, scheduler=None, class_weight=None,
        sampler=None, seed=0, amp=False, n_train=10, n_val=4)
