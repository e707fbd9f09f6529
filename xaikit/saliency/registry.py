"""The method registry: every saliency method by name, with the facts a user and the engine need.

Methods register themselves with :func:`register`, so adding one is one decorated function, and tests
parametrized over :data:`METHODS` cover it automatically (the zennit ``COMPOSITES`` pattern).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union

from ..errors import ExplanationError

__all__ = ["MethodInfo", "METHODS", "register", "get_method"]

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
    defaults : dict
        Default parameters; ``explain(..., **params)`` overrides them.
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


METHODS: dict[str, MethodInfo] = {}


def register(name: str, **meta: Any) -> Callable[[Callable], Callable]:
    """Decorator adding a method function to :data:`METHODS` under ``name``.

    Examples
    --------
    >>> @register("my_gradient", family="gradient", library="captum")  # doctest: +SKIP
    ... def my_gradient(ctx):
    ...     ...
    """

    def wrapped(fn: Callable) -> Callable:
        if name in METHODS:
            raise ExplanationError(f"saliency method {name!r} is registered twice; pick another name.")
        METHODS[name] = MethodInfo(name=name, fn=fn, **meta)
        return fn

    return wrapped


def get_method(name: str) -> MethodInfo:
    """Look a method up by name; unknown names raise an error that lists the known ones."""
    if not isinstance(name, str) or name not in METHODS:
        known = ", ".join(sorted(METHODS))
        raise ExplanationError(f"unknown saliency method {name!r}. Known methods: {known}.")
    return METHODS[name]
