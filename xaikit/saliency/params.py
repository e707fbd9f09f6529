"""Method parameters checked before any library sees them.

captum guards many of its arguments with ``assert`` statements, which vanish under ``python -O`` (and give
no hint when they fire); others fail deep inside with a ``ZeroDivisionError`` or a numpy error. Each method
declares the rules of its parameters next to its definition with :func:`checked`; the engine calls them
once the inputs are known, so a rule may depend on the input shape (an occlusion window larger than the
image). Every violation is an :class:`~xaikit.errors.ExplanationError` naming the method, the parameter,
the value and what to pass instead.

>>> from xaikit.saliency.params import checked, positive_int
>>> @checked(n_steps=positive_int)
... def method(ctx, n_steps=50): ...
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ExplanationError

__all__ = ["checked", "check_params", "positive_int", "int_between", "non_negative", "positive", "real_number",
           "one_of", "boolean", "window_size", "stride_within_window"]

#: ``rule(value, name, method, inputs)`` raises ExplanationError when ``value`` is not acceptable.
Rule = Callable[[Any, str, str, torch.Tensor], None]


def checked(**rules: Rule) -> Callable[[Callable], Callable]:
    """Attach parameter rules to a method function (read by :func:`check_params`).

    A rule named ``_all`` is called as ``rule(params, method, inputs)`` for checks across parameters.
    """
    def attach(fn: Callable) -> Callable:
        fn.param_rules = {**getattr(fn, "param_rules", {}), **rules}
        return fn
    return attach


def check_params(fn: Callable, params: dict, method: str, inputs: torch.Tensor) -> None:
    """Apply the rules attached to ``fn`` to the resolved ``params`` (defaults included)."""
    rules = {**{k: r for k, r in _COMMON_RULES.items() if k in params}, **getattr(fn, "param_rules", {})}
    for name, rule in rules.items():
        if name in params:
            rule(params[name], name, method, inputs)
    if "_all" in rules:
        rules["_all"](params, method, inputs)


def _common_non_negative(value: Any, name: str, method: str, inputs: torch.Tensor) -> None:
    non_negative(value, name, method, inputs)


#: Rules for parameters that mean the same in every method that has them (LRP's epsilon, stabilizer and gamma):
#: applied unless the method declares its own, so epsilon='x' is an ExplanationError, not float()'s ValueError.
_COMMON_RULES: dict[str, Rule] = {"epsilon": _common_non_negative, "stabilizer": _common_non_negative,
                                  "gamma": _common_non_negative}


def _fail(method: str, name: str, value: Any, need: str) -> None:
    raise ExplanationError(f"method {method!r}: {name}={value!r} is not valid; {name} must be {need}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value: Any, name: str, method: str, inputs: torch.Tensor) -> None:
    """An integer >= 1 (``n_steps``, ``n_samples``, ``n_segments``, ``stride``)."""
    if not _is_int(value) or value < 1:
        _fail(method, name, value, "an integer >= 1")


def int_between(low: int, high: int, why: str = "") -> Rule:
    """An integer in ``[low, high]``; ``why`` explains the upper bound in the message."""
    def rule(value: Any, name: str, method: str, inputs: torch.Tensor) -> None:
        if not _is_int(value) or not low <= value <= high:
            _fail(method, name, value, f"an integer from {low} to {high}{why}")
    return rule


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def real_number(value: Any, name: str, method: str, inputs: torch.Tensor) -> None:
    """A finite real number (a constant ``baseline``: 0.0 is black for zero-based inputs)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype.is_floating_point:
        value = float(value)
    if not _finite(value):
        _fail(method, name, value, "a finite number (the constant input value of the baseline, e.g. 0.0); "
              "strings such as 'zeros' and tensors are not accepted")


def non_negative(value: Any, name: str, method: str, inputs: torch.Tensor) -> None:
    """A finite number >= 0 (``noise_level``, ``stdevs``)."""
    if not _finite(value) or value < 0:
        _fail(method, name, value, "a finite number >= 0")


def positive(value: Any, name: str, method: str, inputs: torch.Tensor) -> None:
    """A finite number > 0 (``compactness``)."""
    if not _finite(value) or value <= 0:
        _fail(method, name, value, "a finite number > 0")


def one_of(*choices: str) -> Rule:
    """One of the given strings (e.g. captum's integration methods)."""
    def rule(value: Any, name: str, method: str, inputs: torch.Tensor) -> None:
        if value not in choices:
            _fail(method, name, value, f"one of {list(choices)}")
    return rule


def boolean(value: Any, name: str, method: str, inputs: torch.Tensor) -> None:
    """``True`` or ``False`` (numpy bools too; not 0/1 or strings, which read as a typo)."""
    if not isinstance(value, (bool, np.bool_)):
        _fail(method, name, value, "True or False")


def stride_within_window(params: dict, method: str, inputs: torch.Tensor) -> None:
    """Occlusion: a stride larger than the window would skip pixels (captum asserts it; we say it)."""
    if params["stride"] > params["window"]:
        raise ExplanationError(f"method {method!r}: stride={params['stride']} is larger than window="
                               f"{params['window']}; pixels between windows would never be occluded. Use stride <= "
                               "window.")


def window_size(value: Any, name: str, method: str, inputs: torch.Tensor) -> None:
    """An integer >= 1 that fits inside the spatial extent of every input."""
    positive_int(value, name, method, inputs)
    smallest = min(int(s) for s in inputs.shape[2:])
    if value > smallest:
        _fail(method, name, value, f"at most the image size {tuple(inputs.shape[2:])} (smallest side {smallest}); "
              "a window larger than the image occludes nothing but the whole image")
