"""Many images x many methods in one call, with a progress bar and an optional disk cache.

The cache holds one file per (model weights, method, parameters, target, image id), named by a SHA-256 of
that key (image ids never appear in file names). A rerun loads what is done and computes the rest. Each
file carries a checksum of its maps (see :class:`Explanation`); an unreadable or damaged file is reported
with a warning, deleted and recomputed, never trusted.

With ``executor=`` the (method, batch) tasks run elsewhere: a Dask ``distributed.Client`` (see
:mod:`xaikit.cluster`; the model is scattered once to every worker) or any ``concurrent.futures`` executor.
Results are the same as the local loop's (per-image random streams do not depend on where a batch runs), and
a cache folder that every worker can reach makes a rerun, or a task retried after a worker died, reuse all
finished maps.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..domain import OutOfDomainWarning, check_domain_many, domain_check_off
from ..errors import ExplanationError
from .engine import explain
from .explanation import Explanation, plain
from .presets import PRESETS
from .registry import METHODS

__all__ = ["explain_many", "model_fingerprint"]


def explain_many(
    model: nn.Module,
    data: torch.Tensor | Sequence[Mapping],
    methods: str | Sequence[str] | Mapping[str, Mapping],
    *,
    target: Any = "pred",
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None = None,
    image_ids: Sequence[str] | None = None,
    labels: torch.Tensor | Sequence[int] | None = None,
    progress: bool = True,
    executor: Any = None,
    **explain_kwargs: Any,
) -> dict[str, Explanation]:
    """Explain every image with every method; returns ``{label: Explanation}`` in image order.

    Parameters
    ----------
    model : torch.nn.Module
    data : torch.Tensor or sequence of sample dicts
        ``N x C x H x W`` tensor, or a dataset whose items are ``{"image", "label", "id", ...}``.
    methods : str, list of str, preset name or dict
        A method name, a list of names, a key of :data:`PRESETS`, or ``{label: {"method": name, **params}}``.
    target : see :func:`explain`
    batch_size : int
        Images per :func:`explain` call.
    cache_dir : path, optional
        Directory of the disk cache; ``None`` disables caching.
    progress : bool
        Show a ``tqdm.auto`` bar (notebook or terminal).
    executor : distributed.Client or concurrent.futures.Executor, optional
        Run the (method, batch) tasks there instead of in this process. A Dask client gets the model once per
        worker (``scatter(broadcast=True)``); tasks in one process take turns on the model (a lock), so use
        one thread per worker and more workers. ``None`` (default): the local loop.
    **explain_kwargs
        Passed to :func:`explain` (``layer``, ``memory_budget``, ``seed``, ``reduction``, ...).

    Examples
    --------
    >>> results = explain_many(net, images, "quick", cache_dir="cache/")  # doctest: +SKIP
    >>> results["gradcam"].maps.shape  # doctest: +SKIP
    """
    jobs = _jobs(methods)
    stateful = callable(target) or hasattr(target, "select")  # callables, mask/box targets: no stable key
    if cache_dir is not None and stateful and not isinstance(target, (str, torch.Tensor)):
        warnings.warn("explain_many does not cache results for a callable, mask or box target (it has no stable key).",
                      stacklevel=2)
        cache_dir = None
    batches = list(_batches(data, batch_size, image_ids, labels))
    n_images = sum(len(b[2]) for b in batches)
    cache = _Cache(Path(cache_dir), model_fingerprint(model)) if cache_dir is not None else None
    results = {}
    with tqdm(total=len(jobs) * n_images, desc="explain", unit="map", disable=not progress) as bar:
        if executor is not None:
            return _run_on(executor, model, jobs, batches, target, cache, explain_kwargs, bar)

        # one domain warning for the whole call (not one per method and batch), cached batches included
        check_domain_many(model, (batch[0] for batch in batches), where="explain_many")
        # checked above: explain() must not rerun it (a forward over the batch per method, about half a pass)
        with warnings.catch_warnings(), domain_check_off():
            warnings.simplefilter("ignore", OutOfDomainWarning)
            for label, (method, params) in jobs.items():
                bar.set_postfix_str(label)
                parts = [_run_batch(model, batch, method, params, target, cache, explain_kwargs, bar)
                         for batch in batches]
                results[label] = Explanation.concat(parts)
    return results


_MODEL_LOCK = threading.Lock()  # explain scopes hooks on the model: one task at a time per process


def _task(model, batch, method, params, target, cache, kwargs) -> Explanation:
    """One (method, batch) task, run by an executor's worker."""
    model = model.model if isinstance(model, _Boxed) else model
    with _MODEL_LOCK:
        return _run_batch(model, batch, method, params, target, cache, kwargs, None)


class _Boxed:
    """The model in a plain box, so Dask ships it with pickle: its own torch serializer rebuilds a module's
    hook dicts as plain dicts, on which the next ``register_forward_hook`` fails (weak references)."""

    def __init__(self, model: nn.Module):
        self.model = model


def _run_on(executor, model, jobs, batches, target, cache, kwargs, bar) -> dict[str, Explanation]:
    dask = hasattr(executor, "scatter") and hasattr(executor, "gather")
    # hash=False: a fresh key per call; with content keys, a previous call's release of the same key could
    # delete the model from the workers while this call's tasks still need it ("computation on lost data")
    model_ref = executor.scatter(_Boxed(model), broadcast=True, hash=False) if dask else model
    extra = {"pure": False} if dask else {}
    futures = {}
    for label, (method, params) in jobs.items():
        for b, batch in enumerate(batches):
            fut = executor.submit(_task, model_ref, batch, method, params, target, cache, kwargs, **extra)
            futures[fut] = (label, b, len(batch[2]))
    parts: dict[str, list] = {label: [None] * len(batches) for label in jobs}
    for fut in _as_completed(list(futures), dask):
        label, b, n = futures[fut]
        parts[label][b] = fut.result()
        bar.set_postfix_str(label)
        bar.update(n)
    return {label: Explanation.concat(p) for label, p in parts.items()}


def _as_completed(futures: list, dask: bool):
    if dask:
        from distributed import as_completed

        return as_completed(futures)
    from concurrent.futures import as_completed

    return as_completed(futures)


def _run_batch(model, batch, method, params, target, cache, kwargs, bar) -> Explanation:
    x, labels, ids, positions = batch
    tgt = target[positions] if isinstance(target, torch.Tensor) and target.ndim else target
    tgt = tgt.select(positions) if hasattr(tgt, "select") and not isinstance(tgt, torch.Tensor) else tgt
    keys = [cache.key(method, params, tgt if not isinstance(tgt, torch.Tensor) else tgt[i], i_id, kwargs)
            for i, i_id in enumerate(ids)] if cache else [None] * len(ids)
    found = [cache.load(k) if cache else None for k in keys]
    todo = [i for i, f in enumerate(found) if f is None]
    if todo:
        sub_target = tgt[todo] if isinstance(tgt, torch.Tensor) and tgt.ndim else tgt
        sub_target = sub_target.select(todo) if hasattr(sub_target, "select") and not isinstance(
            sub_target, torch.Tensor) else sub_target
        exp = explain(model, x[todo], method, sub_target, labels=None if labels is None else labels[todo],
                      image_ids=[ids[i] for i in todo], **kwargs, **params)
        for j, i in enumerate(todo):
            found[i] = exp.select([j])
            if cache:
                cache.save(keys[i], found[i])
    if bar is not None:
        bar.update(len(ids))
    return Explanation.concat(found)


def _jobs(methods) -> dict[str, tuple[str, dict]]:
    if isinstance(methods, str):
        if methods in PRESETS and methods not in METHODS:
            methods = PRESETS[methods]
        else:
            methods = [methods]
    if isinstance(methods, Mapping):
        out = {}
        for label, spec in methods.items():
            spec = dict(spec)
            if "method" not in spec:
                raise ExplanationError(f"methods[{label!r}] needs a 'method' entry naming a METHODS key.")
            out[str(label)] = (spec.pop("method"), spec)
        return out
    return {str(m): (str(m), {}) for m in methods}


def _batches(data, batch_size: int, image_ids, labels) -> Iterator[tuple]:
    if batch_size < 1:
        raise ExplanationError(f"batch_size must be >= 1; got {batch_size}.")
    if isinstance(data, torch.Tensor):
        n = len(data)
        ids = [str(i) for i in range(n)] if image_ids is None else [str(i) for i in image_ids]
        labs = None if labels is None else torch.as_tensor(labels).long()
        if len(ids) != n:
            raise ExplanationError(f"image_ids has {len(ids)} entries but data has {n} images.")
        for s in range(0, n, batch_size):
            pos = torch.arange(s, min(n, s + batch_size))
            yield data[pos], None if labs is None else labs[pos], ids[s : s + batch_size], pos
        return
    n = len(data)
    for s in range(0, n, batch_size):
        samples = [data[i] for i in range(s, min(n, s + batch_size))]
        x = torch.stack([torch.as_tensor(d["image"]) for d in samples])
        labs = torch.tensor([int(d["label"]) for d in samples]) if all("label" in d for d in samples) else None
        ids = [str(d.get("id", s + k)) for k, d in enumerate(samples)]
        yield x, labs, ids, torch.arange(s, s + len(samples))


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model class and every parameter and buffer (names, shapes, dtypes, values)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in model.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _Cache:
    def __init__(self, root: Path, model_fp: str):
        self.root = root / model_fp[:16]
        self.model_fp = model_fp

    def key(self, method, params, target, image_id, kwargs) -> str:
        target = target.tolist() if isinstance(target, torch.Tensor) else target
        blob = json.dumps({"model": self.model_fp, "method": method, "params": plain(params), "target": target,
                           "image": image_id, "kwargs": plain(kwargs)}, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def load(self, key: str) -> Explanation | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return Explanation.load(path)
        except ExplanationError as exc:
            warnings.warn(f"cache file {path} is damaged and will be recomputed ({exc}).", stacklevel=4)
            path.unlink()
            return None

    def save(self, key: str, exp: Explanation) -> None:
        exp.save(self.path(key))
