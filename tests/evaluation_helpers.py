"""Tiny seeded models and inputs shared by the evaluation tests."""
from __future__ import annotations

import torch
from torch import nn


def tiny_cnn(seed: int = 0, bn: bool = False) -> nn.Module:
    """conv-relu-conv-relu -> avgpool -> linear on 1 x 16 x 16 inputs, float32 (Quantus works in float32)."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, 4, 3, padding=1), *([nn.BatchNorm2d(4)] if bn else []), nn.ReLU(),
              nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)]
    return nn.Sequential(*layers).eval()


class Linear(nn.Module):
    """logits = W x + b over flattened pixels: occlusion effects are exact and additive."""

    def __init__(self, side: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(side * side, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def inputs(n: int = 4, side: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, side, side, generator=g)


def lesion_masks(n: int = 4, side: int = 16) -> torch.Tensor:
    masks = torch.zeros(n, side, side, dtype=torch.bool)
    for i in range(n):
        masks[i, 2 + i : 8 + i, 3 + i : 10 + i] = True
    return masks
