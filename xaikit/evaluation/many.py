""":func:`score_many` in batches of images: a disk cache that makes evaluation resumable, and Dask tasks.

The work is cut into units of (method, metric, batch of images). Within a batch every method and metric shares
the model passes of :func:`xaikit.evaluation.score_many` (clean outputs, fully perturbed inputs, randomized
copies), so a batch is also one task on an executor. With ``cache_dir`` each unit's rows are written to one file
as soon as they exist, named by a SHA-256 of everything the rows depend on (model weights, the batch's inputs,
maps, targets and masks, the metric and its parameters, the seed); a run that is interrupted recomputes at most
the unit it was in, and a rerun reads the cache. A damaged file is reported with a warning, deleted and
recomputed, never trusted (as :func:`xaikit.saliency.explain_many` does with its maps).

The files are JSON (column values, dtypes and a checksum): Python writes floats with their shortest exact
representation, so a table read back equals the one computed, bit for bit, without pickle (pyarrow, which
parquet needs, is not a dependency of the kit).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._util import atomic_write
from ..domain import domain_check_off
from ..errors import ArgumentError
from ..saliency.batch import _MODEL_LOCK, _as_completed, _Boxed, model_fingerprint
from ..saliency.explanation import plain
from ..saliency.safety import guarded
from .context import make_context
from .registry import get_metric
from .runner import _warn_nan, run_metric

__all__ = ["score_batches", "ScoreCache"]

CACHE_FORMAT = "xaikit-scores"


def score_batches(model: nn.Module, inputs: torch.Tensor, explanations: Mapping[str, Any],
                  jobs: Sequence[tuple[str, dict]], *, masks: Any = None, target: Any = None, seed: int = 0,
                  memory_budget: int | None = None, batch_size: int | None = None,
                  cache_dir: str | os.PathLike | None = None, executor: Any = None, progress: bool = True,
                  weights: Mapping[tuple[str, str], float] | None = None, autocast: Any = None) -> pd.DataFrame:
    """Run every (method, metric) on every batch of images; the table in method, metric, image order.

    ``jobs`` are ``(metric name, checked parameters)``; ``weights`` the planned cost per image of each
    ``(label, metric)`` (the progress bar advances by it, so its ETA follows the plan, not the unit count);
    ``autocast`` a dtype for :class:`torch.autocast` on the inputs' device (``None``: the model's own precision).
    """
    batches = _batches(inputs, explanations, masks, target, batch_size)
    cache = ScoreCache(Path(cache_dir), model_fingerprint(model)) if cache_dir is not None else None
    if autocast is not None and not isinstance(autocast, torch.dtype):
        raise ArgumentError(f"autocast={autocast!r} must be a torch dtype (torch.float16, torch.bfloat16) or None.")
    opts = {"seed": int(seed), "memory_budget": memory_budget, "autocast": autocast}
    weights = dict(weights or {})
    total = sum(_batch_weight(b, jobs, weights) for b in batches)
    results: dict[int, dict] = {}
    with tqdm(total=total, desc="evaluate", unit="pass", disable=not progress) as bar:
        if executor is not None:
            results = _run_on(executor, model, batches, jobs, cache, opts, bar, weights)
        else:
            for b, batch in enumerate(batches):
                results[b] = score_batch(model, batch, jobs, cache, opts, bar, weights)
    units = [(label, j) for label in explanations for j in range(len(jobs))]
    return _in_order([[results[b][unit] for b in range(len(batches))] for unit in units], batches)


def _in_order(parts: list[list[pd.DataFrame]], batches: list[dict]) -> pd.DataFrame:
    """Every unit's rows (``parts[unit][batch]``) in one table, in the order of an unbatched run: units in order;
    within a unit, as a metric returns its rows in blocks of one row per image (a block per layer and similarity),
    block by block, then image by image. One join and one reordering for the whole table."""
    flat = [t for unit in parts for t in unit]
    if len(batches) == 1:
        return _concat(flat)
    blocks = [np.arange(len(t)) // len(b["positions"]) for unit in parts for t, b in zip(unit, batches)]
    width = 1 + max((int(k.max()) for k in blocks if len(k)), default=0)
    units = np.repeat(np.arange(len(parts)), len(batches))
    return _concat(flat, [u * width + k for u, k in zip(units, blocks)])


def _concat(tables: list[pd.DataFrame], keys: list[np.ndarray] | None = None) -> pd.DataFrame:
    """``pd.concat(tables, ignore_index=True)``, equal to it, in a third of the time (the tables of one metric share
    their columns: they are joined first, on pandas' fast path, then the few metric blocks, where pandas aligns
    columns), rows put back in the order of ``tables``; with ``keys`` (one per table row), stably sorted by them."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tables):
        groups.setdefault(tuple(t.columns), []).append(i)
    if len(groups) == 1 and keys is None:
        return pd.concat(tables, ignore_index=True)
    joined = pd.concat([pd.concat([tables[i] for i in idx], ignore_index=True) for idx in groups.values()],
                       ignore_index=True)
    starts = np.cumsum([0] + [len(t) for t in tables])
    position = np.concatenate([np.arange(starts[i], starts[i + 1]) for idx in groups.values() for i in idx])
    primary = np.zeros(len(position)) if keys is None else np.concatenate(keys)[position]
    return joined.iloc[np.lexsort((position, primary))].reset_index(drop=True)


def score_batch(model: nn.Module, batch: dict, jobs: Sequence[tuple[str, dict]], cache: "ScoreCache | None",
                opts: dict, bar: Any = None, weights: Mapping | None = None) -> dict[tuple[str, int], pd.DataFrame]:
    """Every (method, metric) unit of one batch: read from the cache, or computed (and then written to it)."""

    shared: dict = {}
    out = {}
    for label, exp in batch["explanations"].items():
        ctx = None
        for j, (name, params) in enumerate(jobs):
            key = cache.key(batch, label, exp, name, params, opts) if cache else None
            table = cache.load(key) if cache else None
            if table is None:
                if ctx is None:
                    ctx = make_context(model, batch["inputs"], exp, target=batch["target"], masks=batch["masks"],
                                       seed=opts["seed"], memory_budget=opts["memory_budget"], shared=shared,
                                       label=str(label))
                with _precision(batch["inputs"], opts.get("autocast")):
                    table = run_metric(get_metric(name), ctx, params)
                if cache:
                    cache.save(key, table)
            else:
                _warn_nan(table, name, str(label))  # a rerun says what the first run said about undefined values
            out[(label, j)] = table
            if bar is not None:
                bar.set_postfix_str(f"{label}: {name}")
                bar.update(_unit_weight(batch, label, name, weights))
    return out


def _precision(inputs: torch.Tensor, dtype: torch.dtype | None):
    """``torch.autocast`` on the inputs' device for ``dtype``; a no-op for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(inputs.device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------- batches
def _batches(inputs: torch.Tensor, explanations: Mapping[str, Any], masks: Any, target: Any,
             batch_size: int | None) -> list[dict]:
    n = len(inputs)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ArgumentError(f"batch_size={batch_size!r} must be a positive integer (images per unit of work), or "
                            "None for all images in one unit.")
    size = n if batch_size is None else batch_size
    out = []
    for start in range(0, n, size):
        pos = list(range(start, min(n, start + size)))
        whole = len(pos) == n
        out.append({"inputs": inputs if whole else inputs[pos],
                    "explanations": {k: e if whole else _pick(e, pos, n, 3) for k, e in explanations.items()},
                    "masks": masks if whole else _pick(masks, pos, n, 3),
                    "target": target if whole else _pick(target, pos, n, 1), "positions": pos})
    return out


def _pick(value: Any, pos: list[int], n: int, ndim: int) -> Any:
    """The batch's part of a per-image value (an Explanation, maps, masks N x H x W, targets N); values shared by
    all images (one mask H x W, a scalar or ``"pred"`` target) as they are."""
    if hasattr(value, "select") and hasattr(value, "maps"):
        return value.select(pos)
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and value.ndim == ndim and len(value) == n:
        return value[pos]
    if isinstance(value, torch.Tensor) and value.ndim == ndim and len(value) == n:
        return value[torch.as_tensor(pos, device=value.device)]
    return value


def _batch_weight(batch: dict, jobs, weights: Mapping) -> float:
    return sum(_unit_weight(batch, label, name, weights) for label in batch["explanations"] for name, _ in jobs)


def _unit_weight(batch: dict, label: str, name: str, weights: Mapping | None) -> float:
    per_image = (weights or {}).get((label, name), 1.0)
    return len(batch["positions"]) * max(float(per_image), 0.01)  # model-free metrics still advance the bar


# ---------------------------------------------------------------------------------------- executors
def _task(model, batch, jobs, cache, opts) -> dict:
    """One batch on an executor's worker: the model is guarded there as it is in this process."""

    model = model.model if isinstance(model, _Boxed) else model
    # the user's inputs were checked once by score_many; a worker sees only the batch and the metrics' copies
    with _MODEL_LOCK, guarded(model), domain_check_off():
        return score_batch(model, batch, jobs, cache, opts)


def _run_on(executor, model, batches, jobs, cache, opts, bar, weights) -> dict[int, dict]:
    dask = hasattr(executor, "scatter") and hasattr(executor, "gather")
    # as explain_many: the model goes to every worker once, under a fresh key (hash=False)
    model_ref = executor.scatter(_Boxed(model), broadcast=True, hash=False) if dask else model
    extra = {"pure": False} if dask else {}
    futures = {executor.submit(_task, model_ref, batch, list(jobs), cache, opts, **extra): b
               for b, batch in enumerate(batches)}
    results = {}
    for fut in _as_completed(list(futures), dask):
        b = futures[fut]
        results[b] = fut.result()
        bar.update(_batch_weight(batches[b], jobs, weights))
    return results


# ---------------------------------------------------------------------------------------- the disk cache
class ScoreCache:
    """One JSON file of rows per (method, metric, batch of images), named by a SHA-256 of what the rows depend on."""

    def __init__(self, root: Path, model_fp: str):
        self.root = Path(root) / "scores" / model_fp[:16]
        self.model_fp = model_fp

    def key(self, batch: dict, label: str, explanation: Any, metric: str, params: dict, opts: dict) -> str:
        h = hashlib.sha256()
        head = {"model": self.model_fp, "label": str(label), "metric": metric, "params": plain(params),
                "seed": opts["seed"], "autocast": str(opts.get("autocast")), "format": CACHE_FORMAT}
        h.update(json.dumps(head, sort_keys=True, default=repr).encode())
        # the batch's tensors and each method's maps are hashed once per batch, not once per metric
        memo = batch.setdefault("digests", {})
        for name, part in (("inputs", batch["inputs"]), (("maps", str(label)), explanation),
                           ("masks", batch["masks"]), ("target", batch["target"])):
            if name not in memo:
                memo[name] = _digest(_maps_digest(part) if isinstance(name, tuple) else part)
            h.update(memo[name].encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def load(self, key: str) -> pd.DataFrame | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return table_from_json(path.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"score cache file {path} is damaged and will be recomputed ({exc}).", stacklevel=5)
            path.unlink(missing_ok=True)
            return None

    def save(self, key: str, table: pd.DataFrame) -> None:
        with atomic_write(self.path(key), "w") as fh:
            fh.write(table_to_json(table))


def _maps_digest(explanation: Any) -> str:
    if hasattr(explanation, "to_dict"):
        return explanation.to_dict()["sha256"]  # maps, targets, ids, method parameters, library versions
    return _digest(explanation)


def _digest(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous()
        head = f"{value.dtype}|{tuple(value.shape)}|".encode()
        return hashlib.sha256(head + value.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
    if isinstance(value, np.ndarray):
        value = np.ascontiguousarray(value)
        return hashlib.sha256(f"{value.dtype}|{value.shape}|".encode() + value.tobytes()).hexdigest()
    return hashlib.sha256(repr(value).encode()).hexdigest()


def table_to_json(table: pd.DataFrame) -> str:
    """A tidy table as JSON that :func:`table_from_json` reads back equal (values, dtypes, column order)."""
    values = {c: [_jsonable(v) for v in table[c].tolist()] for c in table.columns}
    body = {"format": CACHE_FORMAT, "columns": [str(c) for c in table.columns],
            "dtypes": {str(c): str(table[c].dtype) for c in table.columns}, "values": values}
    text = json.dumps(body, sort_keys=True, allow_nan=True)
    return json.dumps({"sha256": hashlib.sha256(text.encode()).hexdigest(), "body": text})


def table_from_json(text: str) -> pd.DataFrame:
    """Read :func:`table_to_json`'s text; a damaged or foreign file raises ``ValueError``."""
    outer = json.loads(text)
    if hashlib.sha256(outer["body"].encode()).hexdigest() != outer["sha256"]:
        raise ValueError("its contents do not match the stored checksum")
    body = json.loads(outer["body"])
    if body.get("format") != CACHE_FORMAT:
        raise ValueError(f"format {body.get('format')!r} is not {CACHE_FORMAT!r}")
    return pd.DataFrame({c: pd.Series(body["values"][c], dtype=body["dtypes"][c]) for c in body["columns"]},
                        columns=body["columns"])


def _jsonable(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a score table cell of type {type(value).__name__} cannot be cached ({value!r})")
