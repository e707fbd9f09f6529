"""LRP rules by name, and a zennit composite that assigns them by layer name, position and type.

A rule specification is a name, ``(name, {params})`` or a zennit ``Hook`` instance; a rule map assigns rules
to *selectors*: ``"first"`` (the first conv/dense layer in ``model.named_modules()`` order, the input layer
of iNNvestigate), a dotted module name, or a layer type: ``"conv"``, ``"dense"``, ``"linear"`` (both, used
where ``"conv"``/``"dense"`` are not given), ``"avgpool"``, ``"sum"`` (zennit's residual-sum module),
``"activation"``, ``"batchnorm"``. Priority: module name, then ``"first"``, then type. Layers no rule
covers (max pooling, flatten, ...) pass relevance as the gradient does (max pooling: to the arg-max).

Rules are zennit's where zennit computes what iNNvestigate 2.1.2 (Alber et al. 2019) does, and small
custom zennit rules where the two differ (all checked against iNNvestigate maps in
``tests/test_lrp_innvestigate.py``):

* ``alpha_beta``: iNNvestigate's. The positive part sees ``x+ W+ + b+`` and ``x- W- + b-``, so *its
  denominator holds the full bias* ``b`` (likewise the negative part); zennit's ``AlphaBeta`` puts only
  ``b+`` (``b-``) in the positive (negative) denominator. ``bias=False`` is iNNvestigate's "IB" variant.
* ``zplus``: iNNvestigate's z+ = alpha1-beta0 *without bias* (inputs of both signs); zennit's ``ZPlus``
  keeps the positive bias in the denominator.
* ``zplus_fast``: positive weights on the unclamped input, no bias (iNNvestigate's ``ZPlusFastRule``).
* ``wsquare``: squared weights *without bias* (zennit's ``WSquare`` also squares the bias).
* ``epsilon``: ``z + epsilon * sign(z)`` with ``sign(0) = +1`` in both libraries; ``epsilon`` is the rule's
  own parameter and never the stabilizer of other layers.
* ``z`` (LRP-0), ``flat``, ``gamma``, ``zbox``, ``norm`` (sum/average pooling), ``pass``: zennit's, with
  the composite's stabilizer.

Two stabilizers keep divisions finite in every rule but ``epsilon``: ``"sign"`` (zennit's default,
``z + eps * sign(z)``) and ``"zero"`` (iNNvestigate's ``safe_divide``: only exact zeros become ``eps``;
iNNvestigate uses Keras' ``epsilon() = 1e-7``).

Bach et al. 2015 (LRP, alpha-beta); Montavon et al. 2017 (deep Taylor: z+, w-square, z-box); Lapuschkin
et al. 2019 (flat); Montavon et al. 2019 (epsilon, gamma); Alber et al. 2019 (iNNvestigate).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import nn
from zennit.core import Composite, Hook
from zennit.layer import Sum
from zennit.rules import Epsilon, Flat, Gamma, Norm, Pass, WSquare, ZBox
from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear

from ..errors import ExplanationError
from .direct_rules import DirectAlphaBetaFullBias, DirectEpsilon, DirectFlat, DirectPass, DirectSumNorm
from .hooks import STABILIZERS, AlphaBetaFullBias, SafeDivide, ZPlusFast, bias_params, stabilizer_fn

__all__ = ["SafeDivide", "AlphaBetaFullBias", "ZPlusFast", "RULES", "DIRECT_RULES", "STABILIZERS", "RuleComposite",
           "stabilizer_fn", "rule_composite"]


def _zbox(stab, bias, low=0.0, high=1.0):
    return ZBox(low=float(low), high=float(high), stabilizer=stab, zero_params=bias_params(bias))


# name -> builder(stabilizer, bias, **params) -> zennit Hook
RULES: dict[str, Callable[..., Hook]] = {
    "epsilon": lambda stab, bias, epsilon=1e-6: Epsilon(epsilon=float(epsilon), zero_params=bias_params(bias)),
    "z": lambda stab, bias: Epsilon(epsilon=stab, zero_params=bias_params(bias)),
    "alpha_beta": lambda stab, bias, alpha=2.0, beta=1.0: AlphaBetaFullBias(float(alpha), float(beta), stab, bias),
    "zplus": lambda stab, bias: AlphaBetaFullBias(1.0, 0.0, stab, bias=False),
    "zplus_fast": lambda stab, bias: ZPlusFast(stab),
    "flat": lambda stab, bias: Flat(stabilizer=stab),
    "wsquare": lambda stab, bias: WSquare(stabilizer=stab, zero_params=["bias"]),
    "gamma": lambda stab, bias, gamma=0.25: Gamma(gamma=float(gamma), stabilizer=stab, zero_params=bias_params(bias)),
    "zbox": _zbox,
    "norm": lambda stab, bias: Norm(stabilizer=stab),
    "pass": lambda stab, bias: Pass(),
}

# name -> builder of the same rule computed directly (xaikit.saliency.direct_rules: same maps, about half the work);
# rules not listed here run as zennit hooks
DIRECT_RULES: dict[str, Callable[..., Hook]] = {
    "epsilon": lambda stab, bias, epsilon=1e-6: DirectEpsilon(epsilon=float(epsilon), zero_params=bias_params(bias)),
    "z": lambda stab, bias: DirectEpsilon(epsilon=stab, zero_params=bias_params(bias)),
    "alpha_beta": lambda stab, bias, alpha=2.0, beta=1.0: DirectAlphaBetaFullBias(float(alpha), float(beta), stab,
                                                                                 bias),
    "zplus": lambda stab, bias: DirectAlphaBetaFullBias(1.0, 0.0, stab, bias=False),
    "flat": lambda stab, bias: DirectFlat(stabilizer=stab),
    "norm": lambda stab, bias: DirectSumNorm(stabilizer=stab),
    "pass": lambda stab, bias: DirectPass(),
}

# selector -> module types (checked in this order after names and "first")
TYPE_SELECTORS: dict[str, tuple] = {
    "conv": (Convolution,), "dense": (nn.Linear,), "linear": (Linear,), "avgpool": (AvgPool,), "sum": (Sum,),
    "activation": (Activation,), "batchnorm": (BatchNorm,),
}
DEFAULT_RULES: dict[str, Any] = {"avgpool": "norm", "sum": "norm", "activation": "pass", "batchnorm": "pass"}


class RuleComposite(Composite):
    """A zennit composite from resolved ``{selector: Hook}``: module names, then ``"first"``, then types."""

    def __init__(self, hooks: Mapping[str, Hook], canonizers: list | None = None):
        self.hooks = dict(hooks)
        super().__init__(module_map=self._map, canonizers=canonizers)

    def _map(self, ctx: dict, name: str, module: nn.Module) -> Hook | None:
        first = isinstance(module, Linear) and not ctx.get("seen_linear")
        if first:
            ctx["seen_linear"] = True
        if name in self.hooks and name not in TYPE_SELECTORS and name != "first":
            return self.hooks[name]
        if first and "first" in self.hooks:
            return self.hooks["first"]
        for selector, types in TYPE_SELECTORS.items():
            if selector in self.hooks and isinstance(module, types):
                return self.hooks[selector]
        return None


def _parse(spec: Any, selector: str) -> tuple[str | None, dict]:
    """A rule spec -> (name, params); (None, {}) for a zennit Hook instance."""
    if isinstance(spec, Hook):
        return None, {}
    if isinstance(spec, str):
        name, params = spec, {}
    elif (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)
          and isinstance(spec[1], Mapping)):
        name, params = spec[0], dict(spec[1])
    else:
        raise ExplanationError(
            f"rules[{selector!r}] = {spec!r} is not a rule; give a name ({sorted(RULES)}), a (name, {{params}}) "
            "pair, e.g. ('alpha_beta', {'alpha': 2, 'beta': 1}), or a zennit Hook instance.")
    if name not in RULES:
        raise ExplanationError(f"rules[{selector!r}]: unknown rule {name!r}; known rules: {sorted(RULES)}.")
    return name, params


def _build(name: str, params: dict, stab, bias: bool, selector: str) -> Hook:
    params = dict(params)
    bias = bool(params.pop("bias", bias))
    try:
        return DIRECT_RULES.get(name, RULES[name])(stab, bias, **params)
    except TypeError as err:  # unknown keyword for this rule: say which rule and which keywords it takes
        raise ExplanationError(f"rules[{selector!r}]: rule {name!r} does not accept parameters {sorted(params)} "
                               f"({err}); see xaikit.saliency.rules.RULES.") from None
    except (ValueError, ExplanationError) as err:  # zennit's and the kit's own parameter checks
        raise ExplanationError(f"rules[{selector!r}]: rule {name!r} with {params}: {err}") from None


def _check_selector(selector: Any, model: nn.Module, names: set) -> None:
    if not isinstance(selector, str):
        raise ExplanationError(f"rules keys must be strings (a selector or a module name); got {selector!r}.")
    if selector in TYPE_SELECTORS or selector == "first" or selector in names:
        return
    near = sorted(n for n in names if n)[:12]
    raise ExplanationError(
        f"rules key {selector!r} is neither a selector ({['first', *TYPE_SELECTORS]}) nor a module of "
        f"{type(model).__name__} (names include {near}).")


def rule_composite(model: nn.Module, rules: Mapping | None, bias: bool, stabilizer: float,
                   stabilizer_kind: str) -> tuple[RuleComposite, dict]:
    """Build the composite for ``rules`` on ``model``; also return the rules as plain data for the record.

    ``rules`` is merged over :data:`DEFAULT_RULES` (sums and average pooling: ``norm``; activations and
    unmerged BatchNorms: ``pass``).
    """
    if rules is not None and not isinstance(rules, Mapping):
        raise ExplanationError(f"rules must be a dict {{selector: rule}}; got {type(rules).__name__}.")
    stab = stabilizer_fn(stabilizer, stabilizer_kind)
    names = {n for n, _ in model.named_modules()}
    merged = {**DEFAULT_RULES, **dict(rules or {})}
    hooks, record = {}, {}
    for selector, spec in merged.items():
        _check_selector(selector, model, names)
        name, params = _parse(spec, selector)
        hooks[selector] = spec if name is None else _build(name, params, stab, bias, selector)
        record[selector] = type(spec).__name__ if name is None else [name, params]
    return RuleComposite(hooks), record
