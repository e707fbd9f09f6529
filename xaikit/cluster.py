"""Cohort-scale explanation on a Dask ``distributed`` cluster: the same :func:`explain_many`, spread over workers.

:func:`explain_on_cluster` runs every (method, batch of images) as one task. With no ``client`` or ``address``
it starts a :class:`distributed.LocalCluster` on this machine; give ``address="tcp://scheduler:8786"`` (a
scheduler started by ``dask-jobqueue`` on SLURM, ``dask-kubernetes``, or ``dask scheduler`` / ``dask worker`` by
hand) and the same code runs on a real cluster. The model is sent once to each worker; the disk cache
(``cache_dir``, a folder every worker can reach — a shared file system on a real cluster) means a rerun, or a
task that Dask retries after a worker died, recomputes nothing that was finished. Each worker runs one task at a
time on its copy of the model, so its peak memory stays within the saliency ``memory_budget`` (plus the model
and one batch of images).

Example
-------
>>> from xaikit.cluster import explain_on_cluster
>>> maps = explain_on_cluster(model, images, ["gradcam", "lrp_epsilon_plus"], cache_dir="cache/")  # doctest: +SKIP
>>> maps = explain_on_cluster(model, images, "quick", address="tcp://10.0.0.5:8786",            # doctest: +SKIP
...                           cache_dir="/shared/cache/")
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from .errors import ArgumentError
from .saliency import Explanation, explain_many

__all__ = ["local_cluster", "explain_on_cluster"]


@contextlib.contextmanager
def local_cluster(n_workers: int = 2, threads_per_worker: int = 1, memory_limit: str | int = "auto",
                  **cluster_kwargs: Any) -> Iterator[Any]:
    """A :class:`distributed.Client` on a fresh ``LocalCluster`` of worker processes; closed on exit.

    Torch in each worker uses ``threads_per_worker`` threads, so workers do not oversubscribe the cores; each worker
    imports the kit before the first task arrives.
    """
    from distributed import Client, LocalCluster

    if n_workers < 1 or threads_per_worker < 1:
        raise ArgumentError(f"local_cluster: n_workers={n_workers} and threads_per_worker={threads_per_worker} "
                            "must both be at least 1.")
    with LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                      memory_limit=memory_limit, dashboard_address=":0", **cluster_kwargs) as cluster, \
            Client(cluster) as client:
        client.run(_prepare_worker, threads_per_worker)
        yield client


def _prepare_worker(threads: int) -> None:
    """Torch threads, and the kit imported on a fresh worker at once (all workers in parallel) rather than inside its
    first task, so that the first task's time is scoring, not imports."""
    import xaikit.evaluation  # noqa: F401  (imports xaikit.saliency and the metric modules)

    torch.set_num_threads(threads)


def explain_on_cluster(
    model: nn.Module,
    data: torch.Tensor | Sequence[Mapping],
    methods: str | Sequence[str] | Mapping[str, Mapping],
    *,
    client: Any = None,
    address: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    cache_dir: str | os.PathLike | None = None,
    **explain_many_kwargs: Any,
) -> dict[str, Explanation]:
    """:func:`xaikit.saliency.explain_many` on a Dask cluster; returns ``{label: Explanation}`` in image order.

    Parameters
    ----------
    model, data, methods
        As for :func:`~xaikit.saliency.explain_many`.
    client : distributed.Client, optional
        Use this client (it is left open).
    address : str, optional
        Connect to this scheduler (``"tcp://host:8786"``) when no ``client`` is given.
    n_workers, threads_per_worker : int
        Size of the ``LocalCluster`` started when neither ``client`` nor ``address`` is given.
    cache_dir : path, optional
        The disk cache; on a real cluster a folder on a shared file system.
    **explain_many_kwargs
        ``target``, ``batch_size``, ``image_ids``, ``labels``, ``progress``, ``memory_budget``, ``seed``, ...
    """
    if client is not None and address is not None:
        raise ArgumentError("explain_on_cluster: give client= or address=, not both.")
    with contextlib.ExitStack() as stack:
        if client is None and address is not None:
            from distributed import Client

            client = stack.enter_context(Client(address))
        elif client is None:
            client = stack.enter_context(local_cluster(n_workers, threads_per_worker))
        return explain_many(model, data, methods, cache_dir=cache_dir, executor=client, **explain_many_kwargs)
