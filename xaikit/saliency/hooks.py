"""The LRP hooks the kit adds to zennit's, and the pieces both rule files share (stabilizers, bias, alpha/beta check).

:mod:`.rules` assigns rules by name to layers; :mod:`.direct_rules` computes some of them directly. Both import
this module, which imports neither: the rules' shared parts live here once.

Bach et al. 2015 (LRP, alpha-beta); Montavon et al. 2017 (deep Taylor, z+); Alber et al. 2019 (iNNvestigate's
``safe_divide`` and its alpha-beta with the full bias).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from zennit.core import BasicHook, Stabilizer
from zennit.rules import ClampMod

from ..errors import ExplanationError

__all__ = ["SafeDivide", "STABILIZERS", "stabilizer_fn", "bias_params", "check_alpha_beta", "AlphaBetaFullBias",
           "ZPlusFast"]


class SafeDivide:
    """iNNvestigate's ``safe_divide`` as a zennit stabilizer: exact zeros become ``eps``, nothing else moves."""

    def __init__(self, eps: float = 1e-7):
        self.eps = float(eps)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.eps * (z == 0).to(z)

    def __repr__(self) -> str:
        return f"SafeDivide({self.eps:g})"


STABILIZERS: dict[str, Callable[[float], Callable]] = {"sign": Stabilizer, "zero": SafeDivide}


def stabilizer_fn(value: float, kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stabilizer callable of ``kind`` (``"sign"`` or ``"zero"``) with size ``value``."""
    if kind not in STABILIZERS:
        raise ExplanationError(f"stabilizer_kind={kind!r} is not known; use one of {sorted(STABILIZERS)}.")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ExplanationError(f"stabilizer must be a positive number (e.g. 1e-6); got {value!r}.")
    return STABILIZERS[kind](float(value))


def bias_params(bias: bool) -> list[str] | None:
    """zennit's ``zero_params`` for a rule with (``None``) or without (``["bias"]``) the layer's bias."""
    return None if bias else ["bias"]


def check_alpha_beta(alpha: float, beta: float) -> None:
    """Refuse alpha/beta pairs for which LRP does not conserve relevance (both rule files use this check)."""
    if alpha < 0 or beta < 0 or alpha - beta != 1:
        raise ExplanationError(f"alpha and beta must be >= 0 and alpha - beta must be 1 (got alpha={alpha:g}, "
                               f"beta={beta:g}); LRP conserves relevance only then.")


class AlphaBetaFullBias(BasicHook):
    """alpha-beta rule as iNNvestigate computes it: the full bias in both denominators (Bach et al. 2015).

    ``R_i = alpha * (x+_i W+ + x-_i W-) R / (z+ + b) - beta * (x+_i W- + x-_i W+) R / (z- + b)`` with
    ``z+ = x+ W+ + x- W-``, ``z- = x+ W- + x- W+`` and ``b = b+ + b-`` (``b = 0`` for ``bias=False``).
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: Any = 1e-6, bias: bool = True):
        check_alpha_beta(alpha, beta)
        stab = Stabilizer.ensure(stabilizer)
        pos, neg = ClampMod(min=0.0, zero_params=bias_params(bias)), ClampMod(max=0.0, zero_params=bias_params(bias))
        super().__init__(
            input_modifiers=[lambda x: x.clamp(min=0), lambda x: x.clamp(max=0)] * 2,
            param_modifiers=[pos, neg, neg, pos],
            output_modifiers=[lambda z: z] * 4,
            gradient_mapper=lambda g, zs: [g / stab(zs[0] + zs[1])] * 2 + [g / stab(zs[2] + zs[3])] * 2,
            reducer=lambda xs, gs: (alpha * (xs[0] * gs[0] + xs[1] * gs[1])
                                    - beta * (xs[2] * gs[2] + xs[3] * gs[3])),
        )


class ZPlusFast(BasicHook):
    """iNNvestigate's z+ "fast": positive weights, no bias, on the unclamped input (assumes ``x >= 0``)."""

    def __init__(self, stabilizer: Any = 1e-6):
        stab = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[lambda x: x],
            param_modifiers=[ClampMod(min=0.0, zero_params=["bias"])],
            output_modifiers=[lambda z: z],
            gradient_mapper=lambda g, zs: g / stab(zs[0]),
            reducer=lambda xs, gs: xs[0] * gs[0],
        )
