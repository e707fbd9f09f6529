"""explain_many on a real Dask LocalCluster (2 workers x 1 thread): same maps as the local loop, a shared cache."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

pytest.importorskip("distributed")

from xaikit.checkpoint import load_checkpoint  # noqa: E402
from xaikit.cluster import explain_on_cluster, local_cluster  # noqa: E402
from xaikit.errors import ArgumentError  # noqa: E402
from xaikit.saliency import explain_many  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "data_samples" / "models" / "phantom_small_cnn.pt"
METHODS = {"gradcam": {"method": "gradcam"}, "smoothgrad": {"method": "smoothgrad", "n_samples": 3}}
IDS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(MODEL).model


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 1, 128, 128, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def local(model, images):
    return explain_many(model, images, METHODS, batch_size=3, image_ids=IDS, progress=False)


@pytest.fixture(scope="module")
def client():
    with local_cluster(n_workers=2, threads_per_worker=1) as c:
        yield c


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for label in a:
        # equal up to float32 summation order (other batch sizes and torch thread counts), random method included
        torch.testing.assert_close(a[label].maps, b[label].maps, rtol=1e-5, atol=1e-6, msg=label)
        assert a[label].image_ids == b[label].image_ids and torch.equal(a[label].preds, b[label].preds)


def test_cluster_results_equal_the_local_loop(model, images, local, client):
    assert len(client.scheduler_info()["workers"]) == 2
    got = explain_many(model, images, METHODS, batch_size=1, image_ids=IDS, progress=False, executor=client)
    _same(got, local)


def test_the_shared_cache_keeps_finished_work(model, images, local, client, tmp_path):
    explain_many(model, images[:2], METHODS, batch_size=1, image_ids=IDS[:2], cache_dir=tmp_path, progress=False,
                 executor=client)  # a run that ended half-way
    first = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.pt")}
    assert len(first) == 2 * 2
    got = explain_many(model, images, METHODS, batch_size=1, image_ids=IDS, cache_dir=tmp_path, progress=False,
                       executor=client)
    _same(got, local)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.pt")}
    assert len(after) == 4 * 2 and all(after[p] == t for p, t in first.items())  # finished maps not recomputed
    again = explain_many(model, images, METHODS, batch_size=4, image_ids=IDS, cache_dir=tmp_path, progress=False)
    _same(again, local)  # the local loop reads what the workers wrote
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.pt")} == after


def test_a_scheduler_address_runs_the_same_code(model, images, local, client):
    got = explain_on_cluster(model, images, METHODS, address=client.scheduler.address, batch_size=2,
                             image_ids=IDS, progress=False)
    _same(got, local)
    with pytest.raises(ArgumentError, match="not both"):
        explain_on_cluster(model, images, METHODS, client=client, address=client.scheduler.address)


def test_a_thread_pool_executor_gives_the_same_maps(model, images, local):
    with ThreadPoolExecutor(2) as pool:  # tasks take turns on the one model (it is hooked during explain)
        got = explain_many(model, images, METHODS, batch_size=1, image_ids=IDS, progress=False, executor=pool)
    _same(got, local)
