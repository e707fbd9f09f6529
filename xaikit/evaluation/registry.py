"""The metric registry: every explanation-quality metric by name, with what it needs and which way is better.

Metrics register themselves with :func:`register_metric` (the :data:`xaikit.saliency.METHODS` pattern), so
tests parametrized over :data:`METRICS` cover each new metric automatically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .._registry import Registry
from ..errors import ArgumentError

__all__ = ["MetricInfo", "METRICS", "register_metric", "get_metric", "FAMILIES"]

FAMILIES = ("faithfulness", "robustness", "randomization", "localization", "complexity")


@dataclass(frozen=True)
class MetricInfo:
    """Metadata of one registered metric.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"deletion"``.
    fn : callable
        ``fn(ctx, **params) -> list[(extra_columns, values)]``: per-image values (``N``) with the extra
        columns that tell rows apart (``layer``, ``similarity``...); most metrics return one pair.
    family : str
        One of :data:`FAMILIES`.
    higher_is_better : bool
        Direction used by the ranking (randomization similarities: lower is better, the map should change).
    needs_masks : bool
        Needs ground-truth masks ``N x H x W`` (localization).
    reexplains : bool
        Calls the saliency method again (robustness, randomization): needs an :class:`Explanation`.
    uses_model : bool
        Runs the model at all (complexity metrics do not).
    needs_reference : bool
        Needs a second model (``reference=`` checkpoint; the data-randomization check): scored only when asked.
    quantus : str or None
        Name of the Quantus 0.6 metric with the same definition (tests compare against it).
    defaults : dict
        Default parameters, recorded as columns of the result.
    """

    name: str
    fn: Callable[..., Any]
    family: str
    higher_is_better: bool
    needs_masks: bool = False
    reexplains: bool = False
    uses_model: bool = True
    needs_reference: bool = False
    quantus: str | None = None
    defaults: dict = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """First line of the metric function's docstring."""
        doc = (self.fn.__doc__ or "").strip().splitlines()
        return doc[0] if doc else self.name


def _metric_info(name: str, fn: Callable, **meta: Any) -> MetricInfo:
    if meta.get("family") not in FAMILIES:
        raise ArgumentError(f"metric {name!r}: family must be one of {FAMILIES}; got {meta.get('family')!r}.")
    return MetricInfo(name=name, fn=fn, **meta)


#: name -> :class:`MetricInfo`, filled by :func:`register_metric`.
METRICS: Registry[MetricInfo] = Registry("metric", make=_metric_info)


def register_metric(name: str, **meta: Any) -> Callable[[Callable], Callable]:
    """Decorator adding a metric function to :data:`METRICS` under ``name``."""
    return METRICS.register(name, **meta)


def get_metric(name: str) -> MetricInfo:
    """Look a metric up by name; unknown names raise an error listing the known ones."""
    return METRICS.lookup(name)
