"""The method registry: every saliency method by name, with the facts a user and the engine need.

Methods register themselves with :func:`register`, so adding one is one decorated function, and tests
parametrized over :data:`METHODS` cover it automatically (the zennit ``COMPOSITES`` pattern).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from .._registry import Registry
from ..errors import ExplanationError

__all__ = ["MethodInfo", "METHODS", "register", "get_method", "signature_defaults"]

Cost = Union[float, Callable[[dict], float]]


@dataclass(frozen=True)
class MethodInfo:
    """Metadata of one registered saliency method.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"integrated_gradients"``.
    fn : callable
        ``fn(ctx, **params) -> Tensor``: an ``N x C x H x W`` input attribution or an ``N x 1 x h x w``
        layer map (upsampled by the engine).
    family : str
        ``"gradient"``, ``"path"``, ``"sampling"``, ``"perturbation"``, ``"cam"``, ``"lrp"`` or ``"control"``.
    library : str
        Backing library: ``"captum"``, ``"zennit"``, ``"xaikit"`` (hand-written, reason in its docstring).
    cost : float or callable
        Forward+backward passes per sample; a callable receives the resolved parameters.
    needs_layer : bool
        The method works on an inner layer (CAM family); ``layer=None`` picks the last spatial one.
    signed : bool
        Whether the stored map can be negative.
    supports_3d : bool
        Whether the method works on ``N x C x D x H x W`` volumes.
    clean_forward : bool
        The method evaluates the model on the unperturbed inputs in its own forward pass, so
        ``target="pred"`` is resolved inside that pass (no extra forward).
    private_copy : bool
        The method runs on a private copy of the model with a fresh, non-in-place ReLU module per use
        (captum's DeepLift and modified-ReLU methods need that; see :mod:`xaikit.saliency.safety`).
    refuses : dict
        Targets the method refuses, with the reason (key ``"detection"``, read by
        :func:`xaikit.saliency.detection.supports`, which :func:`explain` consults): registry-wide tests read it,
        so a method either runs on volumes, segmentation and detection targets or says here why not (volumes:
        ``supports_3d``).
    defaults : dict
        Default parameters; ``explain(..., **params)`` overrides them. Read by :func:`register` from the
        keyword defaults of ``fn``'s signature, the one place they are stated.
    """

    name: str
    fn: Callable[..., Any]
    family: str
    library: str
    cost: Cost = 1.0
    needs_layer: bool = False
    signed: bool = True
    supports_3d: bool = False
    clean_forward: bool = False
    private_copy: bool = False
    refuses: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)

    def passes(self, params: dict | None = None) -> float:
        """Forward+backward passes per sample for these parameters."""
        merged = {**self.defaults, **(params or {})}
        return float(self.cost(merged) if callable(self.cost) else self.cost)

    @property
    def summary(self) -> str:
        """One line describing the method."""
        doc = (self.fn.__doc__ or "").strip().splitlines()
        return doc[0] if doc else self.name


def _method_info(name: str, fn: Callable, **meta: Any) -> MethodInfo:
    return MethodInfo(name=name, fn=fn, defaults=signature_defaults(fn, name), **meta)


#: name -> :class:`MethodInfo`, filled by :func:`register`.
METHODS: Registry[MethodInfo] = Registry("saliency method", error=ExplanationError, make=_method_info)


def register(name: str, **meta: Any) -> Callable[[Callable], Callable]:
    """Decorator adding a method function to :data:`METHODS` under ``name``.

    The method's parameters and their defaults are the keyword defaults of the function (after ``ctx``),
    read from its signature (through decorators that keep ``__wrapped__``): stated once, so a new keyword
    option is registered by writing it. Every parameter needs a default (``explain`` fills the ones the user
    does not pass); ``*args``/``**kwargs`` are refused (the registry must know each parameter's name).

    Examples
    --------
    >>> @register("my_gradient", family="gradient", library="captum")  # doctest: +SKIP
    ... def my_gradient(ctx, abs: bool = False):
    ...     ...
    >>> METHODS["my_gradient"].defaults  # doctest: +SKIP
    {'abs': False}
    """
    if "defaults" in meta:  # refused at once, before any function is decorated
        raise ExplanationError(f"register({name!r}, defaults=...): the defaults are read from the function's "
                               "signature; state them there as keyword defaults and drop defaults=.")
    return METHODS.register(name, **meta)


def signature_defaults(fn: Callable, name: str) -> dict[str, Any]:
    """``{parameter: default}`` of a method function's parameters after the first (``ctx``)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    variadic = [p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    missing = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if variadic or missing:
        raise ExplanationError(f"saliency method {name!r}: every parameter after ctx needs a keyword default "
                               f"(no default: {missing}; *args/**kwargs: {variadic}); the registry reads the "
                               "method's options from its signature.")
    return {p.name: p.default for p in params}


def get_method(name: str) -> MethodInfo:
    """Look a method up by name; unknown names raise an error that lists the known ones."""
    return METHODS.lookup(name)
