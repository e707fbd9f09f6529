"""Reduced precision, checked: maps and scores under ``torch.autocast`` against the same study in float32.

Autocast (float16 on a GPU, bfloat16 on a CPU) makes model passes cheaper; whether a study may use it is an
empirical question per model and method, so :func:`autocast_parity` answers it on the user's own images before
a long run: the relative L2 difference of each method's maps, and per (method, metric) the largest difference of
the scores and whether the methods' order on the metric survives (Spearman correlation of the method means).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from ..errors import ArgumentError
from ..saliency import explain_many
from .core import score_many

__all__ = ["autocast_parity"]


def autocast_parity(model: nn.Module, inputs: torch.Tensor, methods: Any, metrics: Sequence[str] | Mapping,
                    *, dtype: torch.dtype | None = None, masks: Any = None, target: Any = "pred",
                    controls: Sequence[str] = (), **score_kwargs: Any) -> pd.DataFrame:
    """The same study in float32 and under autocast: ``method, metric, float32, autocast, max_abs_diff,
    rel_diff`` per (method, metric) (metric ``"maps"``: the maps themselves), plus ``rank_spearman`` per metric.

    Parameters
    ----------
    dtype : torch.dtype, optional
        The autocast dtype; default ``torch.float16`` on CUDA, ``torch.bfloat16`` on CPU.
    methods, metrics, masks, target, controls, **score_kwargs
        As for :func:`xaikit.saliency.explain_many` and :func:`score_many` (no cache: both runs compute).

    Examples
    --------
    >>> check = autocast_parity(net.cuda(), images.cuda(), "quick", ["deletion"])  # doctest: +SKIP
    >>> check.query("metric == 'maps'")["rel_diff"].max() < 0.01  # doctest: +SKIP
    """

    if score_kwargs.get("cache_dir") is not None:
        raise ArgumentError("autocast_parity computes both runs; leave cache_dir out.")
    dtype = dtype or (torch.float16 if inputs.device.type == "cuda" else torch.bfloat16)
    ref_maps = explain_many(model, inputs, methods, target=target, progress=False)
    with torch.autocast(inputs.device.type, dtype=dtype):
        low_maps = explain_many(model, inputs, methods, target=target, progress=False)
    kw = dict(masks=masks, controls=controls, progress=False, **score_kwargs)
    ref = score_many(model, inputs, ref_maps, metrics, **kw)
    low = score_many(model, inputs, low_maps, metrics, autocast=dtype, **kw)
    rows = [_map_row(label, ref_maps[label].maps, low_maps[label].maps) for label in ref_maps]
    return pd.concat([pd.DataFrame(rows), _score_rows(ref, low)], ignore_index=True)


def _map_row(label: str, ref: torch.Tensor, low: torch.Tensor) -> dict:
    ref, low = ref.double(), low.double()
    scale = float(ref.norm())
    return {"method": label, "metric": "maps", "float32": scale, "autocast": float(low.norm()),
            "max_abs_diff": float((ref - low).abs().max()),
            "rel_diff": float((ref - low).norm()) / scale if scale > 0 else np.nan}


def _score_rows(ref: pd.DataFrame, low: pd.DataFrame) -> pd.DataFrame:
    diff = (ref["value"] - low["value"]).abs()
    table = ref.assign(autocast=low["value"].to_numpy(), diff=diff.to_numpy())
    keys = [k for k in ("metric", "layer", "similarity") if k in table.columns]
    table[keys] = table[keys].astype(object).where(table[keys].notna(), "-")
    out = table.groupby(["method", *keys], sort=False).agg(
        float32=("value", "mean"), autocast=("autocast", "mean"), max_abs_diff=("diff", "max")).reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rel_diff"] = (out["float32"] - out["autocast"]).abs() / out["float32"].abs()
    ranks = out.groupby(keys, sort=False).apply(_rank_agreement, include_groups=False)
    return out.merge(ranks.rename("rank_spearman").reset_index(), on=keys, how="left")


def _rank_agreement(group: pd.DataFrame) -> float:
    if len(group) < 3 or group["float32"].nunique() < 2:
        return np.nan
    return float(stats.spearmanr(group["float32"], group["autocast"]).statistic)
