"""Evaluation benchmark: each metric's time against its compute bound and against Quantus 0.6, interleaved.

On the shipped clean phantom model (8 test images, 128 px, CPU) with the gradient method, for each metric:

* ``bound_s``: the model passes the metric needs, run bare at the engine's batch size (the memory plan's
  ``max_batch``): perturbed forwards for faithfulness metrics, batch explanations for robustness and
  randomization metrics (one per noise sample or randomized layer). Metrics that run no model have no bound.
* ``ratio_bound``: our time / bound_s (goal: <= 1.1).
* ``ratio_quantus``: our time / Quantus' time for the same metric on the same batch with matching settings
  (goal: <= 1, and <= 0.5 for robustness and randomization).

Every round times bound, ours and Quantus for every metric one after the other (A, B, C, A, B, C, ...); the
medians over rounds are printed.

Measured (2 interleaved rounds, 8 images, a shared 2-core CPU under load 6-15; ours / bound, ours / Quantus):
deletion 1.01 / 0.63, faithfulness_correlation 1.14 / 0.54, road 3.38 / 0.30 (scipy's sparse solves of the
imputation, not model passes, dominate), max_sensitivity 1.10 / 0.41, local_lipschitz 1.03 / 0.50,
sensitivity_max (captum) 1.27 / 0.45, cascading_randomization 1.38 / 1.02; map-only metrics take 0.1-0.8 s,
0.55-3.4x Quantus' (building a region_scores table costs more than Quantus' numpy one-liners).

Usage::

    python benchmarks/bench_evaluate.py            # 3 rounds
    python benchmarks/bench_evaluate.py --rounds 5 --images 8
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from xaikit.checkpoint import load_checkpoint
from xaikit.data import ManifestDataset
from xaikit.evaluation import randomizable_layers, score
from xaikit.saliency import explain
from xaikit.saliency.memory import plan
from xaikit.samples import MODELS, sample_dir

METHOD = "gradient"


def data(n: int):
    ckpt = load_checkpoint(sample_dir() / "models" / MODELS["clean"])
    test = ManifestDataset(sample_dir() / "manifest.csv", split="test", preprocess=ckpt.preprocess)
    samples = [test[int(i)] for i in np.flatnonzero(test.labels == 1)[:n]]
    x = torch.stack([s["image"] for s in samples])
    masks = torch.stack([s["masks"]["lesion"] for s in samples])
    model = ckpt.model.eval()
    return model, x, masks, explain(model, x, METHOD, target=1)


def forward_bound(model, x, n_inputs: int, batch: int) -> float:
    reps = x.repeat((n_inputs + len(x) - 1) // len(x), 1, 1, 1)[:n_inputs]
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n_inputs, batch):
            model(reps[i : i + batch])
    return time.perf_counter() - t


def explain_bound(model, x, exp, n_batches: int, fresh_models: bool = False) -> float:
    """Explanations of ``n_batches`` copies of the batch: one engine call over all of them (chunked by the
    memory plan), or one call per copy of the model when each stage has its own weights (randomization)."""
    import copy

    if not fresh_models:
        reps = x.repeat(n_batches, 1, 1, 1)
        t = time.perf_counter()
        explain(model, reps, METHOD, exp.targets.repeat(n_batches), keep_raw=False)
        return time.perf_counter() - t
    copies = [copy.deepcopy(model) for _ in range(n_batches)]  # randomizing a copy is part of the metric's work
    t = time.perf_counter()
    for m in copies:
        explain(m, x, METHOD, exp.targets, keep_raw=False)
    return time.perf_counter() - t


def quantus_call(metric, model, x, exp, masks):
    def explain_func(model, inputs, targets, **_):
        return explain(model, torch.as_tensor(inputs), METHOD, torch.as_tensor(targets).long(),
                       keep_raw=False).maps[:, None].numpy()

    return lambda: metric(model=model, x_batch=x.numpy(), y_batch=exp.targets.numpy(),
                          a_batch=exp.maps[:, None].numpy(), s_batch=masks[:, None].numpy().astype(float),
                          device="cpu", explain_func=explain_func, softmax=False)


def cases(model, x, exp, masks, batch: int):
    import quantus as q

    n, p = len(x), x[0, 0].numel()
    layers = len(randomizable_layers(model))
    common = dict(disable_warnings=True, display_progressbar=False)
    fwd = lambda k: (lambda: forward_bound(model, x, k * n, batch))  # noqa: E731
    expl = lambda k, fresh=False: (lambda: explain_bound(model, x, exp, k, fresh))  # noqa: E731
    steps = p // 128
    return {
        "deletion": ({"steps": steps}, fwd(steps),
                     q.PixelFlipping(features_in_step=128, perturb_baseline=0.0, normalise=False, abs=False, **common)),
        "faithfulness_correlation": ({"n_runs": 100, "subset_size": 224}, fwd(101),
                                     q.FaithfulnessCorrelation(nr_runs=100, subset_size=224, perturb_baseline=0.0,
                                                               **common)),
        "road": ({"fractions": [0.1 * i for i in range(1, 10)], "noise": 0.01}, fwd(9),
                 q.ROAD(percentages=list(range(10, 100, 10)), noise=0.01, **common)),
        "max_sensitivity": ({"n_samples": 10, "scale": 0.05}, expl(10),
                            q.MaxSensitivity(nr_samples=10, lower_bound=0.05, normalise=False, abs=False, **common)),
        "local_lipschitz": ({"n_samples": 10, "noise": "gaussian", "scale": 0.05}, expl(10),
                            q.LocalLipschitzEstimate(nr_samples=10, perturb_std=0.05, normalise=False, abs=False,
                                                     **common)),
        "sensitivity_max": ({"n_samples": 10, "radius": 0.05}, expl(10),
                            q.MaxSensitivity(nr_samples=10, lower_bound=0.05, normalise=False, abs=False, **common)),
        "cascading_randomization": ({"similarities": ["spearman_abs"]}, expl(layers, True),
                                    q.MPRT(layer_order="top_down", **common)),
        "pointing_game": ({}, None, q.PointingGame(**common)),
        "relevance_mass": ({"sign": "absolute"}, None, q.RelevanceMassAccuracy(abs=True, **common)),
        "relevance_rank": ({"sign": "absolute"}, None, q.RelevanceRankAccuracy(abs=True, **common)),
        "auroc": ({}, None, q.AUC(**common)),
        "sparseness": ({}, None, q.Sparseness(**common)),
        "entropy": ({}, None, q.Complexity(**common)),
    }


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, x, masks, exp = data(args.images)
    batch = plan(model, x, None, "bench").max_batch
    table = cases(model, x, exp, masks, batch)
    times = {name: {"ours": [], "bound": [], "quantus": []} for name in table}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.rounds):
            for name, (params, bound, qmetric) in table.items():
                if bound is not None:
                    times[name]["bound"].append(timed(bound))
                times[name]["ours"].append(timed(lambda: score(name, model, x, exp, masks=masks, **params)))
                times[name]["quantus"].append(timed(quantus_call(qmetric, model, x, exp, masks)))
    print(f"{len(x)} images of {tuple(x.shape[1:])}, method {METHOD}, engine batch {batch}, "
          f"{args.rounds} interleaved rounds (medians), torch threads {torch.get_num_threads()}")
    print(f"{'metric':28s} {'ours_s':>8s} {'bound_s':>8s} {'quantus_s':>9s} "
          f"{'ratio_bound':>11s} {'ratio_quantus':>13s}")
    for name, t in times.items():
        ours, quantus = statistics.median(t["ours"]), statistics.median(t["quantus"])
        bound = statistics.median(t["bound"]) if t["bound"] else float("nan")
        print(f"{name:28s} {ours:8.3f} {bound:8.3f} {quantus:9.3f} {ours / bound:11.2f} {ours / quantus:13.2f}")


if __name__ == "__main__":
    main()
