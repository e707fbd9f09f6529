"""Faithfulness: does removing what the map calls relevant change the model's output?

- ``deletion`` / ``insertion`` / ``deletion_lerf``: perturbation curves (Samek et al. 2017 MoRF/LeRF pixel
  flipping; Petsiuk et al. 2018 deletion/insertion) over patches ranked by the map, with their area under the
  curve on a [0, 1] removed-fraction axis. Insertion at fraction ``f`` and LeRF deletion at ``1 - f`` are the
  same inputs, so both metrics read one sweep.
- ``road``: remove-and-debias (Rong et al. 2022): the most relevant pixels are replaced by noisy linear
  imputation from their neighbours, which leaks no information about the removed shape.
- ``faithfulness_correlation`` (Bhatt et al. 2020): correlation, over random pixel subsets, between the
  relevance removed and the output drop.
- ``infidelity`` (Yeh et al. 2019): captum's implementation.

Perturbed copies are built in torch, ``ctx.batch`` at a time, and each chunk is one forward pass.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ArgumentError
from .context import OUTPUTS, EvalContext
from .registry import register_metric

__all__ = ["perturbation_curves", "patch_ranks", "noisy_linear_imputation"]


# ---------------------------------------------------------------------------------------- perturbation sweeps
def patch_ranks(maps: torch.Tensor, patch: int) -> tuple[torch.Tensor, int]:
    """Rank (0 = most relevant) of each pixel's ``patch x patch`` cell by the cell's summed relevance.

    Ties keep raster order (a stable sort), so the same map always gives the same order.
    """
    n, h, w = maps.shape
    ph, pw = math.ceil(h / patch), math.ceil(w / patch)
    padded = F.pad(maps[:, None], (0, pw * patch - w, 0, ph * patch - h))
    cells = F.avg_pool2d(padded, patch).reshape(n, -1) * patch * patch
    order = torch.argsort(-cells, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(ph * pw).expand(n, -1).contiguous())
    pixel = ranks.reshape(n, ph, pw).repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, :h, :w]
    return pixel.contiguous(), ph * pw


def _baseline(x: torch.Tensor, baseline: Any) -> torch.Tensor:
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if baseline == "blur":
        from torchvision.transforms.functional import gaussian_blur

        k = max(3, (min(x.shape[2:]) // 8) | 1)
        return gaussian_blur(x, [k, k], [k / 3.0, k / 3.0])
    raise ArgumentError(f'baseline must be a number, "mean" or "blur"; got {baseline!r}.')


def _check_sweep(ctx: EvalContext, patch: int, steps: int, output: str) -> int:
    h, w = ctx.inputs.shape[2:]
    if not isinstance(patch, int) or patch < 1 or patch > min(h, w):
        raise ArgumentError(f"patch={patch!r} must be an integer from 1 to the image side ({min(h, w)} px).")
    n_cells = math.ceil(h / patch) * math.ceil(w / patch)
    if not isinstance(steps, int) or steps < 1 or steps > n_cells:
        raise ArgumentError(f"steps={steps!r} must be an integer from 1 to the number of {patch}x{patch} patches "
                            f"({n_cells}); use fewer steps or a smaller patch.")
    if output not in OUTPUTS:
        raise ArgumentError(f"output={output!r} is not one of {OUTPUTS}.")
    return n_cells


def sweep(ctx: EvalContext, kind: str, patch: int, steps: int, baseline: Any,
          output: str) -> tuple[np.ndarray, np.ndarray]:
    """Outputs ``N x (steps + 1)`` and the removed fractions of one sweep, cached on the context.

    ``kind="removed"``: the ``k`` most relevant patches are set to the baseline (MoRF deletion).
    ``kind="kept"``: only the ``k`` most relevant patches keep their values (insertion; LeRF deletion read
    backwards). The clean and the all-baseline ends are shared by every method.
    """
    key = ("sweep", kind, patch, steps, str(baseline), output)
    if key in ctx.cache:
        return ctx.cache[key]
    n_cells = _check_sweep(ctx, patch, steps, output)
    x, base = ctx.inputs, _baseline(ctx.inputs, baseline)
    ranks = patch_ranks(ctx.maps, patch)[0].to(x.device)
    counts = torch.from_numpy(np.rint(np.linspace(0, n_cells, steps + 1)).astype(np.int64))
    inner = torch.arange(1, steps)  # step 0 and the last step are the clean / all-baseline inputs
    pairs = torch.cartesian_prod(torch.arange(len(x)), inner) if steps > 1 else torch.empty(0, 2, dtype=torch.long)

    def make(pos: torch.Tensor):
        img, step = pairs[pos, 0], pairs[pos, 1]
        removed = ranks[img.to(x.device)] < counts[step].to(x.device)[:, None, None]
        if kind == "kept":
            removed = ~removed
        return torch.where(removed[:, None], base[img.to(x.device)], x[img.to(x.device)]), img

    inner_out = ctx.outputs(ctx.chunked(len(pairs), make), output).reshape(len(x), -1)
    clean, empty = ctx.clean_outputs(output), _all_baseline(ctx, base, baseline, output)
    first, last = (clean, empty) if kind == "removed" else (empty, clean)
    values = torch.cat([first[:, None], inner_out, last[:, None]], 1).numpy()
    ctx.cache[key] = (values, counts.numpy() / n_cells)
    return ctx.cache[key]


def _all_baseline(ctx: EvalContext, base: torch.Tensor, baseline: Any, output: str) -> torch.Tensor:
    key = ("all_baseline", str(baseline), output, tuple(ctx.targets.tolist()))
    if key not in ctx.shared:
        index = torch.arange(len(ctx))
        ctx.shared[key] = ctx.outputs(ctx.chunked(len(ctx), lambda p: (base[p], index[p])), output)
    return ctx.shared[key]


def curve(ctx: EvalContext, name: str, patch: int, steps: int, baseline: Any, output: str):
    """``(fractions removed, outputs N x points)`` of the curve ``name`` (deletion, insertion, deletion_lerf)."""
    if name == "deletion":
        values, removed = sweep(ctx, "removed", patch, steps, baseline, output)
        return removed, values
    values, kept = sweep(ctx, "kept", patch, steps, baseline, output)
    if name == "insertion":
        return kept, values  # x: fraction inserted
    return (1 - kept)[::-1], values[:, ::-1]  # LeRF deletion: the least relevant removed first


def _auc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.trapezoid(y, x, axis=1) if hasattr(np, "trapezoid") else np.trapz(y, x, axis=1)


def _curve_metric(name: str):
    def fn(ctx: EvalContext, patch: int = 1, steps: int = 32, baseline: Any = 0.0, output: str = "logit"):
        x, values = curve(ctx, name, patch, steps, baseline, output)
        return [({}, _auc(x, values))]

    return fn


_CURVE_DOC = ("Area under the {0} curve of the target output over the fraction of {1} patches ranked by the map "
              "({2} is better). Samek et al. 2017; Petsiuk et al. 2018.")
for _name, _what, _better, _hib in (("deletion", "removed", "lower", False), ("insertion", "inserted", "higher", True),
                                    ("deletion_lerf", "removed (least relevant first)", "higher", True)):
    _fn = _curve_metric(_name)
    _fn.__doc__ = _CURVE_DOC.format(_name, _what, _better)
    _fn.__name__ = _name
    register_metric(_name, family="faithfulness", higher_is_better=_hib, quantus="PixelFlipping" if _name == "deletion"
                    else None, defaults={"patch": 1, "steps": 32, "baseline": 0.0, "output": "logit"})(_fn)


def perturbation_curves(ctx: EvalContext, curves=("deletion", "insertion"), *, patch: int = 1, steps: int = 32,
                        baseline: Any = 0.0, output: str = "logit"):
    """Tidy curves for figures: ``image_id, method, curve, fraction, output`` (one row per point)."""
    import pandas as pd

    rows = []
    for name in curves:
        x, values = curve(ctx, name, patch, steps, baseline, output)
        n, k = values.shape
        rows.append(pd.DataFrame({"image_id": np.repeat(np.asarray(ctx.image_ids, dtype=object), k),
                                  "method": ctx.label, "curve": name, "fraction": np.tile(x, n),
                                  "output": values.ravel()}))
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------------------------- ROAD
_NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
               ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def noisy_linear_imputation(image: np.ndarray, removed: np.ndarray, noise: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Fill ``removed`` pixels of ``image`` (C x H x W) from their 8 neighbours, plus Gaussian noise.

    Every removed pixel equals the weighted mean of its neighbours (1/6 direct, 1/12 diagonal; Rong et al.
    2022), a sparse linear system solved with scipy for all channels at once. Hand-written because no
    maintained library offers it (Quantus' version is a test-only reference and solves per call in a Python loop
    over offsets of a LIL matrix).
    """
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = image.shape
    idx = np.flatnonzero(removed.ravel())
    if idx.size == 0:
        return image.copy()
    var = np.full(h * w, -1)
    var[idx] = np.arange(idx.size)
    flat = image.reshape(c, -1).astype(np.float64)
    rows_i, cols_i = idx // w, idx % w
    a_rows, a_cols, a_vals = [], [], []
    b = np.zeros((idx.size, c))
    total = np.zeros(idx.size)
    for (dr, dc), weight in _NEIGHBOURS:
        r, cc = rows_i + dr, cols_i + dc
        ok = (r >= 0) & (r < h) & (cc >= 0) & (cc < w)
        total[ok] += weight
        nb = r[ok] * w + cc[ok]
        unknown = var[nb] >= 0
        eq = np.flatnonzero(ok)
        a_rows += [eq[unknown]]
        a_cols += [var[nb[unknown]]]
        a_vals += [np.full(int(unknown.sum()), weight)]
        b[eq[~unknown]] -= weight * flat[:, nb[~unknown]].T
    a_rows.append(np.arange(idx.size))
    a_cols.append(np.arange(idx.size))
    a_vals.append(-total)
    a = csc_matrix((np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))), shape=(idx.size,) * 2)
    solved = np.asarray(spsolve(a, b)).reshape(idx.size, c).T
    out = flat.copy()
    out[:, idx] = solved + noise * rng.standard_normal(solved.shape)
    return out.reshape(c, h, w)


@register_metric("road", family="faithfulness", higher_is_better=False, quantus="ROAD",
                 defaults={"fractions": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "noise": 0.01,
                           "output": "logit"})
def road(ctx: EvalContext, fractions=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), noise: float = 0.01,
         output: str = "logit"):
    """Mean target output after the most relevant fractions of pixels are imputed (ROAD MoRF; lower is better).

    ``output="correct"`` reads 1 where the model still predicts the target, 0 otherwise: averaged over images
    that is Quantus' ROAD curve point. Rong et al. 2022, "A consistent and efficient evaluation strategy for
    attribution methods" (ICML).
    """
    values = road_curve(ctx, fractions, noise, output)
    return [({}, values.mean(1))]


def road_curve(ctx: EvalContext, fractions, noise: float, output: str) -> np.ndarray:
    """ROAD outputs ``N x len(fractions)`` (cached on the context)."""
    fractions = tuple(float(f) for f in fractions)
    if not fractions or any(not 0 < f < 1 for f in fractions):
        raise ArgumentError(f"fractions={fractions!r} must be fractions of pixels strictly between 0 and 1.")
    if output not in (*OUTPUTS, "correct"):
        raise ArgumentError(f"output={output!r} is not one of {(*OUTPUTS, 'correct')}.")
    key = ("road", fractions, float(noise), output)
    if key in ctx.cache:
        return ctx.cache[key]
    n, c, h, w = ctx.inputs.shape
    ranks, _ = patch_ranks(ctx.maps, 1)
    rng = np.random.default_rng(ctx.seed)
    images = ctx.inputs.detach().cpu().double().numpy()
    imputed = torch.stack([torch.from_numpy(noisy_linear_imputation(images[i], ranks[i].numpy() < int(h * w * f),
                                                                    noise, rng))
                           for i in range(n) for f in fractions]).to(ctx.inputs.dtype).to(ctx.inputs.device)
    index = torch.arange(n).repeat_interleave(len(fractions))
    if output == "correct":
        logits = _all_logits(ctx, imputed, index)
        out = (logits.argmax(1) == ctx.targets[index]).double()
    else:
        out = ctx.outputs(ctx.chunked(len(imputed), lambda p: (imputed[p], index[p])), output)
    ctx.cache[key] = out.reshape(n, len(fractions)).numpy()
    return ctx.cache[key]


def _all_logits(ctx: EvalContext, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    parts = []
    with torch.no_grad():
        for pos in ctx.chunked(len(x), lambda p: p):
            parts.append(ctx.model(x[pos]).double())
            ctx.counts["forward_batches"] += 1
            ctx.counts["forward_inputs"] += len(pos)
    return torch.cat(parts).cpu()  # one copy to the host, after the loop


# ---------------------------------------------------------------------------------------- faithfulness correlation
@register_metric("faithfulness_correlation", family="faithfulness", higher_is_better=True,
                 quantus="FaithfulnessCorrelation",
                 defaults={"n_runs": 100, "subset_size": 224, "baseline": 0.0, "output": "logit"})
def faithfulness_correlation(ctx: EvalContext, n_runs: int = 100, subset_size: int = 224, baseline: Any = 0.0,
                             output: str = "logit"):
    """Pearson correlation, over random pixel subsets, of the relevance they hold and the output drop when removed.

    Subsets are drawn with ``numpy.random.RandomState(seed).choice`` in Quantus' order (run-major, one draw per
    image), so a Quantus run after ``np.random.seed(seed)`` sees the same subsets. Bhatt et al. 2020 (IJCAI).
    """
    n, c, h, w = ctx.inputs.shape
    if not isinstance(subset_size, int) or not 1 <= subset_size < h * w:
        raise ArgumentError(f"subset_size={subset_size!r} must be an integer from 1 to the pixel count - 1 "
                            f"({h * w - 1}).")
    if not isinstance(n_runs, int) or n_runs < 2:
        raise ArgumentError(f"n_runs={n_runs!r} must be an integer >= 2 (a correlation needs two points).")
    rs = np.random.RandomState(ctx.seed)
    subsets = np.stack([np.stack([rs.choice(h * w, subset_size, replace=False) for _ in range(n)])
                        for _ in range(n_runs)], 1)  # N x runs x subset
    subsets = torch.from_numpy(subsets)
    x, base = ctx.inputs, _baseline(ctx.inputs, baseline)
    pairs = torch.cartesian_prod(torch.arange(n), torch.arange(n_runs))

    def make(pos: torch.Tensor):
        img, run = pairs[pos, 0], pairs[pos, 1]
        removed = torch.zeros(len(pos), h * w, dtype=torch.bool)
        removed.scatter_(1, subsets[img, run], True)
        on = img.to(x.device)
        return torch.where(removed.view(-1, 1, h, w).to(x.device), base[on], x[on]), img

    perturbed = ctx.outputs(ctx.chunked(len(pairs), make), output).reshape(n, n_runs).numpy()
    drops = ctx.clean_outputs(output).numpy()[:, None] - perturbed
    held = np.take_along_axis(ctx.maps.reshape(n, -1).numpy()[:, None, :].repeat(n_runs, 1),
                              subsets.numpy(), axis=2).sum(-1)
    return [({}, _pearson_rows(held, drops))]


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


# ---------------------------------------------------------------------------------------- captum metrics
def _forward(ctx: EvalContext):
    def forward(x: torch.Tensor) -> torch.Tensor:
        ctx.counts["forward_batches"] += 1
        ctx.counts["forward_inputs"] += len(x)
        return ctx.model(x)

    return forward


def _per_batch(ctx: EvalContext, n_samples: int) -> int:
    """captum needs every sub-batch to hold each input once: between N and N x n_samples examples."""
    return min(max(ctx.batch, len(ctx)), len(ctx) * n_samples)


def _attributions(ctx: EvalContext) -> torch.Tensor:
    c = ctx.inputs.shape[1]
    return (ctx.maps[:, None] / c).expand(-1, c, -1, -1).to(device=ctx.inputs.device, dtype=ctx.inputs.dtype)


@register_metric("infidelity", family="faithfulness", higher_is_better=False, quantus="Infidelity",
                 defaults={"noise_std": 0.1, "n_samples": 16})
def infidelity(ctx: EvalContext, noise_std: float = 0.1, n_samples: int = 16):
    """Expected squared error between attribution·noise and the output change under Gaussian noise (captum).

    ``captum.metrics.infidelity`` with perturbations ``I ~ N(0, noise_std^2)`` and ``normalize=True`` (the
    attribution is rescaled by its optimal factor first, as Yeh et al. 2019 recommend). Maps of ``C``-channel
    inputs are spread evenly over the channels. Yeh et al. 2019 (NeurIPS).
    """
    from captum.metrics import infidelity as captum_infidelity

    if noise_std <= 0 or n_samples < 1:
        raise ArgumentError(f"noise_std={noise_std} must be > 0 and n_samples={n_samples} >= 1.")
    gen = torch.Generator().manual_seed(ctx.seed)

    def perturb(inputs: torch.Tensor):
        noise = (torch.randn(inputs.shape, generator=gen, dtype=inputs.dtype) * noise_std).to(inputs.device)
        return noise, inputs - noise

    with torch.random.fork_rng(devices=[]):
        values = captum_infidelity(_forward(ctx), perturb, ctx.inputs, _attributions(ctx), target=ctx.targets,
                                   n_perturb_samples=n_samples, max_examples_per_batch=_per_batch(ctx, n_samples),
                                   normalize=True)
    return [({}, values.detach().double().numpy())]
