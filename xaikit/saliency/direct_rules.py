"""LRP rules for convolutions and dense layers whose modified backward is computed directly.

zennit computes a rule in a backward hook: the layer's ordinary gradient is computed first and thrown away,
then the layer is run again once per (input, parameter) modifier under autograd and differentiated (z+: two
modified forwards and backwards, alpha-beta: four). Measured on a ResNet-18 that is 3x (z+) and 6x (alpha2-beta1)
a forward + backward, where the arithmetic needs about 1.5x and 2.5x. The rules here give the same maps
(``tests/test_lrp_direct.py`` compares them with zennit's on every layer type) from:

* a forward hook that replaces the layer's output by an autograd function whose backward *is* the rule, so the
  ordinary gradient of the layer is never computed;
* the modified outputs ``z`` by one convolution each (the layer's own output when the rule uses it unmodified)
  and ``W^T (R / z)`` by one ``aten.convolution_backward`` (input gradient only) each;
* terms that vanish dropped: after a ReLU the layer input is non-negative, so ``x-`` is exactly zero and the
  ``x- W-`` and ``x- W+`` terms of z+ and alpha-beta (half of their work) contribute exact zeros;
* clamped weights ``W+``/``W-`` of the private canonized copy computed once, not per call (:func:`clamped`);
* alpha-beta after a ReLU (one term per group left) as one layer with stacked weights (:meth:`DirectRule.
  _stacked_terms`): ``[W+; W-]`` gives ``z+`` and ``z-`` in one convolution, ``[alpha W+; -beta W-]^T`` the
  weighted sum of both groups' ``W^T (R / z)`` in one input gradient, times the input once (the same sums; one
  pass over the input per step instead of two). Deriving ``z-`` as ``output - z+`` would save a further forward
  but is not done: where ``|z-| << |z+|`` the subtraction loses the digits of ``z-`` (a 1 % error of a unit's
  negative relevance at ``|z-|/|z+| = 1e-5`` in float32), so conservation would hold only approximately;
* ``Pass`` on ReLUs and ``Norm`` on zennit's residual ``Sum`` without zennit's input copies and without the
  discarded ReLU/sum gradients (:class:`DirectPass`, :class:`DirectSumNorm`).

On ResNet-18 (224 px, batch 8, 2 shared CPU cores) EpsilonPlusFlat then costs 1.2-2.0x and EpsilonAlpha2Beta1
2.3-2.9x a forward + input-only backward, over several runs (zennit: 3.1-4.1x and 5.5-6.3x); with the stacked
alpha-beta, 2.89x -> 2.64x (ResNet-18, 112 px) and 2.83x -> 2.38x (the phantom CNN, 128 px) in one interleaved
run (CPU time, one thread, 3 rounds, loaded machine);
``benchmarks/bench_saliency.py`` measures it.

Layers the direct path does not cover (transposed convolutions, padding modes other than zeros, string
padding, ``zero_params`` other than the bias) get the equivalent zennit rule: :meth:`DirectRule.zennit`.
Hand-written because neither zennit nor captum offers a rule implementation without the re-run forward.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from zennit.core import Hook, RemovableHandle, RemovableHandleList, Stabilizer
from zennit.layer import Sum
from zennit.rules import AlphaBeta, Epsilon, Flat, Norm, Pass, ZPlus
from zennit.types import Activation, AvgPool, BatchNorm

from .hooks import AlphaBetaFullBias, check_alpha_beta
from .safety import register_cache

__all__ = ["DirectRule", "DirectEpsilon", "DirectZPlus", "DirectAlphaBeta", "DirectAlphaBetaFullBias", "DirectFlat",
           "DirectPass", "DirectSumNorm", "direct_layer_map_base", "clamped", "direct_supported"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def direct_supported(module: nn.Module) -> bool:
    """Conv1d/2d/3d with zero padding given as numbers, and ``nn.Linear``: the layers computed directly."""
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, _CONVS) and module.padding_mode == "zeros" and not isinstance(module.padding, str))


# id(tensor) -> (weak reference, {(sign, version): tensor})
_CLAMPED: dict[int, tuple[weakref.ref, dict]] = register_cache({})


def _modified(t: torch.Tensor, sign: str) -> torch.Tensor:
    return {"id": lambda: t, "pos": lambda: t.clamp(min=0), "neg": lambda: t.clamp(max=0),
            "ones": lambda: torch.ones_like(t)}[sign]()


def clamped(t: torch.Tensor | None, sign: str, cache: bool = True) -> torch.Tensor | None:
    """``t`` (``"id"``), its positive (``"pos"``) or negative (``"neg"``) part, or ones (``"ones"``).

    With ``cache`` the result is kept per tensor and in-place version, so the weights of a private model copy
    (:func:`~xaikit.saliency.canonizers.canonized_copy`, which nobody changes) are clamped once, not per call. A
    user's weights are not cached: ``p.data = ...`` changes them without a version change.
    """
    if t is None or sign == "id":
        return t
    if not cache:
        return _modified(t, sign)
    return _cached(t, sign, lambda: _modified(t, sign))


class _Op:
    """Forward and input-gradient of one conv/linear layer with given weights."""

    def __init__(self, module: nn.Module):
        self.module = module

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.module, nn.Linear):
            return F.linear(x, weight, bias)
        return self.module._conv_forward(x, weight, bias)

    def broadcast_bias(self, bias: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``bias`` shaped to add to an output ``z`` (last axis for dense layers, channel axis for convolutions)."""
        return bias if isinstance(self.module, nn.Linear) else bias.view(1, -1, *([1] * (z.ndim - 2)))

    def input_grad(self, x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``W^T grad``: the gradient of ``forward(x, weight)`` w.r.t. ``x`` for output gradient ``grad``."""
        if isinstance(self.module, nn.Linear):
            return grad @ weight
        m = self.module
        dims = x.ndim - 2
        return torch.ops.aten.convolution_backward(
            grad, x, weight, None, list(m.stride), list(m.padding), list(m.dilation), False, [0] * dims, m.groups,
            [True, False, False])[0]


@dataclass(frozen=True)
class Term:
    """One modified forward ``z = forward(input modifier(x), weight modifier(W), bias or None)``."""

    inputs: str  # "id", "pos", "neg", "ones"
    weight: str  # "id", "pos", "neg", "ones"
    bias: str | None  # modifier of the bias, or None: no bias


@dataclass(frozen=True)
class Group:
    """Terms summed into one denominator ``z``; the group's relevance is ``factor * sum(x_t * W_t^T (R / z))``
    (``times_input=False``: ``sum(W_t^T (R / z))``, the flat and w-square rules)."""

    terms: tuple[Term, ...]
    factor: float = 1.0
    times_input: bool = True


class _Relevance(torch.autograd.Function):
    """Identity on the layer output whose backward is the rule (the layer's own gradient is never computed)."""

    @staticmethod
    def forward(ctx, x, holder, rule, op):  # noqa: D102 (autograd.Function API)
        out = holder[0]  # the layer's output, detached; handed over in a list so it is not an input of the node
        ctx.rule, ctx.op = rule, op
        ctx.params = (op.module.weight, op.module.bias)
        if rule.uses_output:  # epsilon: z is the output itself, kept safe from in-place ops after the layer
            ctx.save_for_backward(x, out)
            return out.clone()
        ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, *out = ctx.saved_tensors
        return ctx.rule.relevance(ctx.op, ctx.params, x, out[0] if out else None, grad), None, None, None


class DirectRule(Hook):
    """A zennit ``Hook`` for conv/linear layers computing ``groups`` directly (see the module docstring)."""

    def __init__(self, groups: Sequence[Group], stabilizer: Any = 1e-6):
        super().__init__()
        self.groups = tuple(groups)
        self.stabilizer = stabilizer
        self._stab = Stabilizer.ensure(stabilizer)
        plain = isinstance(self._stab, Stabilizer) and not self._stab.clip and not self._stab.norm_scale
        self._eps = float(self._stab.epsilon) if plain and isinstance(self._stab.epsilon, (int, float)) else None
        self.uses_output = any(_is_output(t) for g in self.groups for t in g.terms)
        self._signed_inputs = any(t.inputs == "neg" for g in self.groups for t in g.terms)

    def _stabilize(self, z: torch.Tensor) -> torch.Tensor:
        """zennit's ``Stabilizer``: ``z + eps * sign(z)`` with sign(0) = +1, in two passes instead of five.

        ``copysign`` gives ``-0.0`` the sign -1 where zennit's gives +1. A ``z`` of ``-0.0`` is a sum of
        ``-0.0`` products only (any nonzero or ``+0.0`` term makes the sum nonzero or ``+0.0``), so every input
        the unit sees contributes ``x_i w_ij = 0``: its relevance ``x_i w_ij R_j / z_j`` is zero with either sign.
        """
        if self._eps is None:
            return self._stab(z)
        return z + torch.copysign(torch.tensor(self._eps, dtype=z.dtype, device=z.device), z)

    def zennit(self) -> Hook:
        """The equivalent zennit rule (used for layers :func:`direct_supported` rejects)."""
        raise NotImplementedError

    def copy(self) -> "DirectRule":
        dup = DirectRule.__new__(type(self))
        dup.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k not in ("stored_tensors", "active", "tensor_handles")})
        Hook.__init__(dup)
        return dup

    def register(self, module: nn.Module) -> RemovableHandleList:
        if not direct_supported(module) or not _only_bias(getattr(self, "zero_params", None)):
            return self.zennit().register(module)
        op = _Op(module)

        def hook(mod, args, output):
            if not self.active or not isinstance(output, torch.Tensor) or output.grad_fn is None:
                return None
            return _Relevance.apply(args[0], [output.detach()], self, op)

        return RemovableHandleList([RemovableHandle(self), module.register_forward_hook(hook)])

    def relevance(self, op: _Op, params: tuple, x: torch.Tensor, out: torch.Tensor | None,
                  grad: torch.Tensor) -> torch.Tensor:
        weight, bias = params
        own = getattr(op.module, "xaikit_private", False)
        nonneg = self._signed_inputs and bool(x.amin() >= 0)  # after a ReLU: x- is exactly zero, x+ is x
        stacked = self._stacked_terms(op, nonneg)
        if stacked is not None:
            return self._stacked_relevance(op, stacked, weight, bias, x, grad, own, nonneg)
        total = None
        for group in self.groups:
            if group.factor == 0.0:  # beta = 0 (z+ as alpha1-beta0): the group adds only (signed) zeros
                continue
            terms = [t for t in group.terms if not (nonneg and t.inputs == "neg")]  # x- W terms are exact zeros
            z = None
            for t in terms:
                zt = out if _is_output(t) else op.forward(
                    _input(x, t.inputs, nonneg), clamped(weight, t.weight, own),
                    clamped(bias, t.bias, own) if t.bias else None)
                z = zt if z is None else z + zt
            for t in group.terms:  # a dropped term still adds its bias (full-bias alpha-beta): 0 W + b = b
                if t not in terms and t.bias and bias is not None:
                    z = z + op.broadcast_bias(clamped(bias, t.bias, own), z)
            s = grad / self._stabilize(z)
            part = None
            for t in terms:
                g = op.input_grad(x, clamped(weight, t.weight, own), s)
                r = _input(x, t.inputs, nonneg) * g if group.times_input else g
                part = r if part is None else part.add_(r)
            part = part if group.factor == 1.0 else part.mul_(group.factor)
            total = part if total is None else total.add_(part)
        return total

    def _stacked_terms(self, op: _Op, nonneg: bool) -> tuple[tuple[Term, float], ...] | None:
        """``(term, factor)`` of each group when the groups can run as one layer with stacked weights: two or more
        groups of one term each (after dropping the ``x-`` terms of non-negative inputs, none with a bias), all
        on the same input modifier, times the input, on a dense layer or an ungrouped convolution. Alpha-beta after
        a ReLU is such a rule: ``z+ = x W+ + b+`` and ``z- = x W- + b-``."""
        if not (isinstance(op.module, nn.Linear) or op.module.groups == 1):
            return None
        out = []
        for group in self.groups:
            if group.factor == 0.0:
                continue
            kept = [t for t in group.terms if not (nonneg and t.inputs == "neg")]
            dropped_bias = any(t.bias for t in group.terms if t not in kept)
            if len(kept) != 1 or dropped_bias or not group.times_input or _is_output(kept[0]):
                return None
            out.append((kept[0], group.factor))
        if len(out) < 2 or len({t.inputs for t, _ in out}) != 1:
            return None
        return tuple(out)

    def _stacked_relevance(self, op: _Op, stacked: tuple, weight: torch.Tensor, bias: torch.Tensor | None,
                           x: torch.Tensor, grad: torch.Tensor, own: bool, nonneg: bool) -> torch.Tensor:
        """The groups of :meth:`_stacked_terms` as one layer of ``G x C_out`` outputs: one forward for every ``z``,
        one input gradient ``[f_1 W_1; ...; f_G W_G]^T [R / z_1; ...; R / z_G]`` for the factor-weighted sum of
        the groups' ``W_g^T (R / z_g)``, one product with the input. The same sums as group by group, computed
        in one pass over the input instead of one per group."""
        terms = tuple(t for t, _ in stacked)
        factors = tuple(f for _, f in stacked)
        inp = _input(x, terms[0].inputs, nonneg)
        w_fwd = _stacked_params(weight, tuple(t.weight for t in terms), None, own)
        w_bwd = _stacked_params(weight, tuple(t.weight for t in terms), factors, own)
        b = None if bias is None or not any(t.bias for t in terms) else _stacked_params(
            bias, tuple(t.bias or "zero" for t in terms), None, own)
        z = op.forward(inp, w_fwd, b)
        n_groups, axis = len(terms), (z.ndim - 1 if isinstance(op.module, nn.Linear) else 1)
        shape = (*z.shape[:axis], n_groups, z.shape[axis] // n_groups, *z.shape[axis + 1:])
        s = (grad.unsqueeze(axis) / self._stabilize(z.view(shape))).view(z.shape)
        return inp * op.input_grad(x, w_bwd, s)


def _stacked_params(t: torch.Tensor, signs: tuple[str, ...], factors: tuple[float, ...] | None,
                   cache: bool = True) -> torch.Tensor:
    """``cat([f_1 * mod_1(t), ..., f_G * mod_G(t)])`` along the first (output) axis, modifiers as in
    :func:`clamped` (``"zero"``: zeros); cached like :func:`clamped` for a private copy's weights."""
    def make() -> torch.Tensor:
        parts = [torch.zeros_like(t) if sign == "zero" else _modified(t, sign) for sign in signs]
        if factors is not None:
            parts = [p if f == 1.0 else p * f for p, f in zip(parts, factors)]
        return torch.cat(parts)

    return _cached(t, ("stacked", signs, factors), make) if cache else make()


def _cached(t: torch.Tensor, key: Any, make) -> torch.Tensor:
    """``make()`` kept per tensor (by identity, forgotten when it is freed), in-place version and ``key``."""
    ident = id(t)
    entry = _CLAMPED.get(ident)
    if entry is None or entry[0]() is not t:  # tensors compare by value: key by identity, forget when freed
        entry = (weakref.ref(t, lambda _ref, ident=ident: _CLAMPED.pop(ident, None)), {})
        _CLAMPED[ident] = entry
    store = entry[1]
    full = (key, t._version)
    if full not in store:
        if len(store) > 7:
            store.clear()
        store[full] = make()
    return store[full]


def _is_output(t: Term) -> bool:
    """The unmodified layer (input, weights and bias as they are): its ``z`` is the layer's output."""
    return (t.inputs, t.weight, t.bias) == ("id", "id", "id")


def _input(x: torch.Tensor, sign: str, nonneg: bool) -> torch.Tensor:
    if nonneg and sign == "pos":
        return x
    return _modified(x, sign)


def _bias_term(zero_bias: bool, sign: str) -> str | None:
    return None if zero_bias else sign


def _names(zero_params) -> list[str]:
    return [zero_params] if isinstance(zero_params, str) else list(zero_params or [])


def _check_zero_params(zero_params) -> bool:
    """True when the bias is zeroed (other zeroed parameters go to the zennit rule: :func:`_only_bias`)."""
    return "bias" in _names(zero_params)


def _only_bias(zero_params) -> bool:
    return set(_names(zero_params)) <= {"bias"}


class DirectEpsilon(DirectRule):
    """zennit's ``Epsilon``: ``R_in = x * W^T (R / (z + eps * sign(z)))``, ``z`` the layer output."""

    def __init__(self, epsilon: Any = 1e-6, zero_params=None):
        self.epsilon, self.zero_params = epsilon, zero_params
        no_bias = _check_zero_params(zero_params)
        super().__init__([Group((Term("id", "id", _bias_term(no_bias, "id")),))], stabilizer=epsilon)

    def zennit(self) -> Hook:
        return Epsilon(epsilon=self.epsilon, zero_params=self.zero_params)


class DirectZPlus(DirectRule):
    """zennit's ``ZPlus``: ``z = x+ W+ + b+ + x- W-``, ``R_in = x+ W+^T (R/z) + x- W-^T (R/z)``."""

    def __init__(self, stabilizer: Any = 1e-6, zero_params=None):
        self.zero_params = zero_params
        no_bias = _check_zero_params(zero_params)
        super().__init__([Group((Term("pos", "pos", _bias_term(no_bias, "pos")), Term("neg", "neg", None)))],
                         stabilizer=stabilizer)

    def zennit(self) -> Hook:
        return ZPlus(stabilizer=self.stabilizer, zero_params=self.zero_params)


class DirectAlphaBeta(DirectRule):
    """zennit's ``AlphaBeta``: ``alpha`` x the z+ relevance (denominator ``x+ W+ + b+ + x- W-``) minus ``beta`` x
    the negative one (``x+ W- + b- + x- W+``)."""

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: Any = 1e-6, zero_params=None):
        if alpha < 0 or beta < 0:
            raise ValueError("Both alpha and beta parameters must be positive!")
        if alpha - beta != 1.0:
            raise ValueError("The difference of parameters alpha - beta must equal 1!")
        self.alpha, self.beta, self.zero_params = float(alpha), float(beta), zero_params
        no_bias = _check_zero_params(zero_params)
        super().__init__([
            Group((Term("pos", "pos", _bias_term(no_bias, "pos")), Term("neg", "neg", None)), factor=self.alpha),
            Group((Term("pos", "neg", _bias_term(no_bias, "neg")), Term("neg", "pos", None)), factor=-self.beta),
        ], stabilizer=stabilizer)

    def zennit(self) -> Hook:
        return AlphaBeta(alpha=self.alpha, beta=self.beta, stabilizer=self.stabilizer, zero_params=self.zero_params)


class DirectAlphaBetaFullBias(DirectRule):
    """:class:`xaikit.saliency.rules.AlphaBetaFullBias` (iNNvestigate's alpha-beta: the full bias ``b+ + b-`` in
    both denominators; ``bias=False``: none), computed directly."""

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: Any = 1e-6, bias: bool = True):
        check_alpha_beta(alpha, beta)
        self.alpha, self.beta, self.bias = float(alpha), float(beta), bool(bias)
        pos, neg = ("pos", "neg") if bias else (None, None)
        super().__init__([
            Group((Term("pos", "pos", pos), Term("neg", "neg", neg)), factor=self.alpha),
            Group((Term("pos", "neg", neg), Term("neg", "pos", pos)), factor=-self.beta),
        ], stabilizer=stabilizer)

    def zennit(self) -> Hook:
        return AlphaBetaFullBias(self.alpha, self.beta, self.stabilizer, self.bias)


class DirectFlat(DirectRule):
    """zennit's ``Flat``: inputs and weights set to one, no bias; ``R_in = 1^T (R / z)``."""

    def __init__(self, stabilizer: Any = 1e-6, zero_params=None):
        self.zero_params = zero_params
        super().__init__([Group((Term("ones", "ones", None),), times_input=False)], stabilizer=stabilizer)

    def zennit(self) -> Hook:
        return Flat(stabilizer=self.stabilizer, zero_params=self.zero_params)


class _PassReLU(torch.autograd.Function):
    """ReLU forward (out of place), identity backward: zennit's ``Pass`` rule without its input copy and without
    computing the ReLU's own gradient that ``Pass`` throws away."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return torch.relu(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad


class DirectPass(Hook):
    """zennit's ``Pass`` for activations: relevance passes unchanged. ``nn.ReLU`` modules get :class:`_PassReLU` as
    their forward for the duration (the instance attribute is removed with the hook); other activations get
    zennit's ``Pass``."""

    def copy(self) -> "DirectPass":
        return DirectPass()

    def register(self, module: nn.Module) -> RemovableHandleList:
        if type(module) is not nn.ReLU or "forward" in vars(module):
            return Pass().register(module)
        module.forward = _PassReLU.apply
        return RemovableHandleList([RemovableHandle(self), _AttributeHandle(module, "forward")])


class _AttributeHandle:
    """Removes an instance attribute set for the duration of a composite (zennit handle protocol: ``remove()``)."""

    def __init__(self, module: nn.Module, name: str):
        self.module, self.name = module, name

    def remove(self) -> None:
        vars(self.module).pop(self.name, None)


class _NormRelevance(torch.autograd.Function):
    """Identity on a zennit ``Sum`` output whose backward is the ``Norm`` rule: ``R_i = x_i R / stab(sum x)``."""

    @staticmethod
    def forward(ctx, x, holder, rule, dim):  # noqa: D102
        out = holder[0]
        ctx.save_for_backward(x, out)
        ctx.rule, ctx.dim = rule, dim
        return out.clone()  # in-place ops after the sum (ResNet's ReLU) must not touch the saved ``out``

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, out = ctx.saved_tensors
        return x * (grad / ctx.rule._stabilize(out)).unsqueeze(ctx.dim), None, None, None


class DirectSumNorm(DirectRule):
    """zennit's ``Norm`` on its ``Sum`` module (the residual sums of canonized ResNets), computed directly; other
    modules get zennit's ``Norm``."""

    def __init__(self, stabilizer: Any = 1e-6):
        super().__init__([], stabilizer=stabilizer)

    def zennit(self) -> Hook:
        return Norm(stabilizer=self.stabilizer)

    def register(self, module: nn.Module) -> RemovableHandleList:
        if type(module) is not Sum:
            return self.zennit().register(module)

        def hook(mod, args, output):
            if not self.active or not isinstance(output, torch.Tensor) or output.grad_fn is None:
                return None
            return _NormRelevance.apply(args[0], [output.detach()], self, mod.dim)

        return RemovableHandleList([RemovableHandle(self), module.register_forward_hook(hook)])


def direct_layer_map_base(stabilizer: Any = 1e-6) -> list:
    """zennit's ``layer_map_base`` (activations: Pass, sums and average pooling: Norm, BatchNorm: Pass) with the
    activation and sum rules computed directly."""
    return [(Activation, DirectPass()), (Sum, DirectSumNorm(stabilizer)), (AvgPool, Norm(stabilizer=stabilizer)),
            (BatchNorm, Pass())]
