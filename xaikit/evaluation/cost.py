"""What a study costs before it runs: model passes per (method, metric), time calibrated on one probe pass, memory.

The unit is one forward+backward pass of one image (the saliency registry's ``cost`` unit; a forward-only pass
counts 1/3 of it). Each metric's passes follow from its parameters and the method's own cost: a deletion curve
of ``steps`` points runs ``steps - 1`` forward passes per image; max-sensitivity re-explains ``n_samples`` noisy
copies (``n_samples`` times the method's cost); a randomization check re-explains once per stage. Metrics that
read one sweep together (insertion and LeRF deletion; max-sensitivity and the local Lipschitz estimate) are
counted once, where :func:`xaikit.evaluation.score_many` computes them. Time is the passes times the seconds of
one image's forward+backward, probed on these inputs and this device (batches of 8); what runs beside the model
(ROAD's imputation,
similarity measures, Python) is not in it, so read the estimate as a lower bound: on a 2-core CPU, notebook 06's
study (15 methods + 2 controls x 11 metrics, 24 phantoms at 128 px) planned ~3.6 min and its scoring took 7.5 min;
the whole-study ratio is what ``benchmarks/bench_workload.py`` prints.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import ArgumentError
from ..saliency.batch import _jobs
from ..saliency.memory import plan as memory_plan
from ..saliency.registry import get_method
from ..saliency.safety import guarded
from .randomization import randomizable_layers
from .registry import get_metric
from .runner import CONTROLS, _metric_jobs

__all__ = ["Plan", "plan", "unit_weights", "metric_passes"]

FORWARD = 1 / 3  # a forward-only pass in forward+backward units (the saliency registry's convention)
#: Metrics that read another metric's sweep when both run with the same parameters (score_many shares it).
SHARES = {"deletion_lerf": "insertion", "local_lipschitz": "max_sensitivity"}


@dataclass
class Plan:
    """The cost of a study, one row per (method, metric), before any of it runs.

    Attributes
    ----------
    table : pandas.DataFrame
        ``method, metric, passes, seconds``: image forward+backward passes over all images, and the estimate.
    seconds_per_pass : float
        One image's forward+backward, measured by the probe (``nan`` when ``probe=False``).
    peak_memory : int
        Estimated peak bytes: weights, inputs and the largest activation chunk of the saliency memory plan.
    n_images : int
    device : str
    """

    table: pd.DataFrame
    seconds_per_pass: float
    peak_memory: int
    n_images: int
    device: str

    @property
    def passes(self) -> float:
        """All passes of the study."""
        return float(self.table["passes"].sum())

    @property
    def seconds(self) -> float:
        """Estimated wall time of the study (explain and score); ``nan`` when the plan was not probed."""
        if not np.isfinite(self.seconds_per_pass):
            return float("nan")
        return float(self.table["seconds"].sum(min_count=1))

    def summary(self, rows: int = 20) -> str:
        """The plan as readable text: the ``rows`` costliest (method, metric) pairs, the rest counted, the totals."""
        ranked = self.table.sort_values("passes", ascending=False, kind="stable")
        idle = ranked["passes"] == 0  # NaN (a metric the plan does not know) stays visible
        busy, idle = ranked[~idle], ranked[idle]
        shown, rest = busy.head(rows), busy.iloc[rows:]
        width = max([len(f"{m} x {k}") for m, k in zip(shown["method"], shown["metric"])] + [24])
        lines = [f"plan: {self.n_images} images on {self.device}; one forward+backward pass "
                 f"{_duration(self.seconds_per_pass)} per image"]
        for method, metric, passes, seconds in shown[["method", "metric", "passes", "seconds"]].itertuples(False):
            lines.append(f"  {f'{method} x {metric}':<{width}}  {passes:>12,.0f} passes  ~{_duration(seconds)}")
        if len(rest):
            lines.append(f"  {f'{len(rest)} more pairs':<{width}}  {rest['passes'].sum():>12,.0f} passes  "
                         f"~{_duration(rest['seconds'].sum(min_count=1))}")
        if len(idle):
            lines.append(f"  {f'{len(idle)} pairs run no model':<{width}}  {0:>12} passes  "
                         "(maps, masks, shared sweeps)")
        lines.append(f"  {'total':<{width}}  {self.passes:>12,.0f} passes  ~{_duration(self.seconds)}; "
                     f"peak memory ~{self.peak_memory / 2**20:,.0f} MiB")
        lines.append("  (model passes only: a lower bound; what runs beside the model comes on top)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{self.summary()}</pre>"


def plan(model: nn.Module, inputs: torch.Tensor, methods: Any, metrics: Sequence[str] | Mapping | None = None, *,
         masks: bool = False, controls: Sequence[str] | None = None, probe: bool = True,
         memory_budget: int | None = None) -> Plan:
    """Model passes, time and peak memory of explaining ``inputs`` with ``methods`` and scoring ``metrics``.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : torch.Tensor
        ``N x C x H x W`` on the device the study will use (a probe pass runs there).
    methods : str, list, dict of specs or dict of Explanations
        What :func:`xaikit.saliency.explain_many` accepts (a preset name such as ``"sumer2023"``), or the
        ``{label: Explanation}`` already computed (then only scoring is planned).
    metrics : list of str or dict, optional
        As for :func:`score_many`; default every registered metric (localization ones when ``masks``).
    masks : bool
        Whether ground-truth masks will be given (the default metric list then includes localization).
    controls : sequence of str, optional
        Control maps scored beside the methods (default :data:`~xaikit.evaluation.CONTROLS`).
    probe : bool
        Time one forward+backward pass to estimate seconds (``False``: passes and memory only).
    memory_budget : int, optional
        As for :func:`score_many`.

    Examples
    --------
    >>> print(plan(net, images, "sumer2023", ["deletion", "max_sensitivity"]))  # doctest: +SKIP
    """

    specs, explained = _method_specs(methods)
    controls = CONTROLS if controls is None else tuple(controls)
    specs.update({c: (c, {}) for c in controls if c not in specs})
    jobs = [(info.name, params) for info, params in _metric_jobs(metrics, masks)]
    n, rows = len(inputs), []
    for label, (method, params) in specs.items():
        cost = _method_cost(method, params, inputs)
        if label not in explained:
            rows.append((label, "explain", n * cost))
        for name, mparams in jobs:
            rows.append((label, name, n * metric_passes(name, mparams, cost, model, jobs)))
    if any(get_metric(name).uses_model for name, _ in jobs):
        rows.append(("(all methods)", "clean and baseline outputs", n * 2 * FORWARD))
    table = pd.DataFrame(rows, columns=["method", "metric", "passes"])
    per_pass = _probe_seconds(model, inputs) if probe else float("nan")
    table["seconds"] = table["passes"] * per_pass
    copies = int(np.ceil(table["passes"].max() / max(n, 1) / FORWARD)) if len(table) else 1  # inputs per image
    return Plan(table, per_pass, _peak_memory(model, inputs, memory_budget, n * max(copies, 1)), n, str(inputs.device))


def metric_passes(metric: str, params: Mapping, method_cost: float, model: nn.Module,
                  jobs: Sequence[tuple[str, Mapping]] = ()) -> float:
    """Forward+backward passes per image of one metric of one method (0 when another metric's sweep serves it)."""
    p = {**get_metric(metric).defaults, **params}
    partner = SHARES.get(metric)
    if partner and any(name == partner and _same_sweep(p, {**get_metric(name).defaults, **q}) for name, q in jobs):
        return 0.0
    if metric in ("deletion", "insertion", "deletion_lerf"):
        return (p["steps"] - 1) * FORWARD
    if metric == "road":
        return len(p["fractions"]) * FORWARD
    if metric == "faithfulness_correlation":
        return p["n_runs"] * FORWARD
    if metric == "infidelity":
        return (p["n_samples"] + 1) * FORWARD
    if metric in ("max_sensitivity", "local_lipschitz", "sensitivity_max"):
        return p["n_samples"] * method_cost
    if metric.endswith("_randomization"):
        return _stages(model, p) * method_cost
    if not get_metric(metric).uses_model or get_metric(metric).family == "localization":
        return 0.0  # maps against masks, or maps alone
    return float("nan")  # a metric this plan does not know yet: shown as unknown, never guessed


def unit_weights(model: nn.Module, inputs: torch.Tensor, explanations: Mapping[str, Any],
                 jobs: Sequence[tuple[str, Mapping]]) -> dict[tuple[str, str], float]:
    """Planned passes per image of each ``(label, metric)`` (what score_many's progress bar advances by)."""
    out = {}
    for label, exp in explanations.items():
        method = getattr(exp, "method", None)
        cost = _method_cost(method, getattr(exp, "params", {}), inputs) if method else 1.0
        for name, params in jobs:
            value = metric_passes(name, params, cost, model, jobs)
            out[(str(label), name)] = 1.0 if np.isnan(value) else value
    return out


def _same_sweep(a: Mapping, b: Mapping) -> bool:
    keys = set(a) & set(b)
    return all(str(a[k]) == str(b[k]) for k in keys)


def _stages(model: nn.Module, params: Mapping) -> int:
    layers = params.get("layers")
    count = len(set(layers)) if layers else len(randomizable_layers(model))
    return count + int(bool(params.get("include_original")))


def _method_specs(methods: Any) -> tuple[dict[str, tuple[str, dict]], set]:
    if isinstance(methods, Mapping) and methods and all(hasattr(v, "maps") for v in methods.values()):
        return {str(k): (v.method, dict(v.params)) for k, v in methods.items()}, {str(k) for k in methods}
    if not methods:
        raise ArgumentError("methods must name at least one saliency method (a name, a preset, a list or a dict).")
    return _jobs(methods), set()


def _method_cost(method: str, params: Mapping, inputs: torch.Tensor) -> float:
    sized = {"input_size": int(inputs.shape[-1]), "spatial_dims": inputs.ndim - 2, **params}
    return get_method(method).passes(sized)


def _probe_seconds(model: nn.Module, inputs: torch.Tensor, batch: int = 8) -> float:
    """Seconds of one image's forward+backward at ``batch`` images a pass (the inputs repeated to fill it): one
    warm-up pass, then the mean of two timed ones (one timed pass alone swings with the machine's load)."""
    x = inputs.detach().repeat((batch + len(inputs) - 1) // len(inputs), *[1] * (inputs.ndim - 1))[:batch]
    times = []
    with guarded(model), torch.enable_grad():
        for _ in range(3):
            start = time.perf_counter()
            probe = x.clone().requires_grad_(True)
            model(probe).sum().backward()
            if probe.is_cuda:
                torch.cuda.synchronize(probe.device)
            times.append(time.perf_counter() - start)
    return float(np.mean(times[1:])) / len(x)


def _peak_memory(model: nn.Module, inputs: torch.Tensor, budget: int | None, largest: int) -> int:
    """Weights, the inputs, and the activations of the largest chunk: the memory plan's ``max_batch`` inputs, or
    all of the largest unit's inputs (``largest``) where they fit in fewer."""

    with guarded(model):
        chunk = memory_plan(model, inputs, budget, "evaluation")
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    images = inputs.numel() * inputs.element_size()
    return int(weights + images + min(chunk.max_batch, largest) * chunk.per_sample)


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "? (not probed)"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"

