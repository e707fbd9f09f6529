"""Fuzz the entry points with bad arguments: explain() and the statistics functions.

Each case must give a correct result or an XaikitError that names the argument at fault, under the time and
memory cap of fuzz_helpers. For explain() a result must have finite maps of the input's size and leave the
model unchanged; for the statistics, p-values in [0, 1], adjusted >= raw, no infinite effect size.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from xaikit.saliency import explain
from xaikit.stats import compare_groups, compare_paired, correct, region_enrichment, run_protocol
from xaikit.stats.power import detectable_effect, required_n

from fuzz_helpers import Tally, assert_clean, run_case
from saliency_helpers import assert_unchanged, snapshot, tiny_cnn, tiny_inputs

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- explain()
X = tiny_inputs(2)
BAD_EXPLAIN = [
    # (what is wrong, kwargs overriding the good call, text the error must contain)
    ("unknown method", {"method": "gradcam_plus_plus_typo"}, "gradcam_plus_plus_typo"),
    ("method None", {"method": None}, "None"),
    ("method int", {"method": 3}, "3"),
    ("target word", {"target": "bogus"}, "target"),
    ("target negative", {"target": -1}, "target"),
    ("target too big", {"target": 99}, "99"),
    ("target float", {"target": 1.5}, "target"),
    ("targets wrong length", {"target": torch.tensor([0, 1, 2])}, "target"),
    ("target callable bad shape", {"target": lambda logits: logits}, "target"),
    ("label without labels", {"target": "label"}, "label"),
    ("labels wrong length", {"labels": [0, 1, 2]}, "labels"),
    ("labels text", {"labels": ["a", "b"]}, "labels"),
    ("ids wrong length", {"image_ids": ["a"]}, "image_ids"),
    ("inputs list", {"inputs": [1, 2, 3]}, "inputs"),
    ("inputs numpy", {"inputs": np.zeros((2, 2, 8, 8))}, "inputs"),
    ("inputs 3d", {"inputs": X[0]}, "inputs"),
    ("inputs int", {"inputs": X.long()}, "inputs"),
    ("inputs empty", {"inputs": X[:0]}, "inputs"),
    ("inputs nan", {"inputs": X.clone().fill_(float("nan"))}, "inputs"),
    ("inputs float32", {"inputs": X.float()}, "inputs"),
    ("inputs channels", {"inputs": torch.rand(2, 5, 8, 8, dtype=torch.float64)}, "channel"),
    ("inputs volume", {"inputs": torch.rand(2, 2, 3, 8, 8, dtype=torch.float64)}, "inputs"),
    ("inputs dict without image", {"inputs": {"label": [0, 1]}}, "image"),
    ("layer missing", {"method": "gradcam", "layer": "nope"}, "nope"),
    ("layer int", {"method": "gradcam", "layer": 3}, "layer"),
    ("layer linear", {"method": "gradcam", "layer": "fc"}, "fc"),
    ("layer for gradient", {"layer": "features"}, "layer"),
    ("reduction", {"reduction": "median"}, "reduction"),
    ("memory budget zero", {"memory_budget": 0}, "memory"),
    ("memory budget text", {"memory_budget": "1GB"}, "memory_budget"),
    ("seed text", {"seed": "x"}, "seed"),
    ("unknown param", {"n_steps": 3}, "n_steps"),
    ("preprocess garbage", {"preprocess": 42}, "preprocess"),
    ("occlusion on a volume", {"method": "occlusion", "inputs": torch.rand(2, 2, 3, 8, 8, dtype=torch.float64)},
     "2-D model"),   # issue 23: was blamed on the window
]


@pytest.mark.parametrize("what,kwargs,names", BAD_EXPLAIN, ids=[w for w, _, _ in BAD_EXPLAIN])
def test_explain_with_bad_arguments(what, kwargs, names):
    model = tiny_cnn()
    before = snapshot(model)
    call = {"model": model, "inputs": X, "method": "gradient", **kwargs}
    tally = Tally()

    def correct_result(exp) -> None:
        assert exp.maps.shape[0] == len(call["inputs"]) and exp.maps.shape[1:] == call["inputs"].shape[2:]
        assert torch.isfinite(exp.maps).all()

    rest = {k: v for k, v in call.items() if k not in ("model", "inputs", "method")}
    run_case(tally, what, lambda: explain(model, call["inputs"], call["method"], **rest), correct_result, names=names)
    assert_unchanged(model, before)
    assert_clean(tally)


PARAM_GRID = {
    "integrated_gradients": {"n_steps": [0, -1, 1, 2.0, "5", None, 10**12], "baseline": ["zeros", None, [0], 1e300]},
    "smoothgrad": {"n_samples": [0, 1, -5, 1.5], "noise_level": [-1, 0, float("nan"), "0.1"]},
    "occlusion": {"window": [0, 1, 8, 9, -2, 2.5], "stride": [0, 1, 100, -1]},
    "feature_ablation": {"n_segments": [0, 1, 2, -1], "compactness": [0, -1, 1e-9]},
    "lime": {"n_samples": [0, 1, 2], "n_segments": [0, 1, 3]},
    "lrp_epsilon": {"epsilon": ["x", -1, None, float("nan"), 0, 0.25]},   # issue 23: 'x' was float()'s ValueError
    "lrp_epsilon_gamma_box": {"gamma": ["x", -0.5, 0.0], "epsilon": [[1e-6], "1e-6"]},
}


@pytest.mark.parametrize("method", sorted(PARAM_GRID))
def test_method_parameter_grid(method):
    model = tiny_cnn()
    before = snapshot(model)
    tally = Tally()
    names, values = zip(*PARAM_GRID[method].items())
    for combo in itertools.product(*values):
        params = dict(zip(names, combo))
        extra = {"window": 4, "stride": 4} if method == "occlusion" and "window" not in params else {}

        def correct_result(exp) -> None:
            assert exp.maps.shape == (2, 8, 8) and torch.isfinite(exp.maps).all()

        run_case(tally, f"{method}{params}", lambda: explain(model, X, method, **params, **extra), correct_result,
                 names=repr(method))
    assert_unchanged(model, before)
    assert_clean(tally)


# ---------------------------------------------------------------------------------------------- statistics
def _honest(table: pd.DataFrame) -> None:
    p, q = table["p_raw"].to_numpy(float), table["p_adj"].to_numpy(float)
    ok = ~np.isnan(p)
    assert ((p[ok] >= 0) & (p[ok] <= 1)).all() and ((q[ok] >= p[ok] - 1e-12) & (q[ok] <= 1)).all()
    assert np.isnan(q[~ok]).all()
    assert not np.isinf(table["effect_size"].to_numpy(float)).any()


def _random_scores(rng: np.random.Generator) -> pd.DataFrame:
    n = int(rng.integers(0, 14))
    values = rng.choice([0.0, 1.0, 0.5, np.nan, np.inf, -np.inf, 1e300, -1e-300, 0.3], n) if rng.random() < 0.5 \
        else rng.normal(0.5, 0.1, n)
    frame = pd.DataFrame({
        "image_id": [f"i{k}" for k in range(n)], "patient_id": rng.choice(["p1", "p2", "p3", "p4"], n),
        "label": rng.choice([0, 1, 2] if rng.random() < 0.2 else [0, 1], n), "method": rng.choice(["m1", "m2"], n),
        "region": rng.choice(["r1", "r2"], n), "mass_frac": values, "mean": values,
        "density_ratio": np.abs(values),
    })
    if rng.random() < 0.2:
        frame = frame.drop(columns=rng.choice(frame.columns))
    if rng.random() < 0.1:
        frame["mass_frac"] = frame["mass_frac"].astype(str)
    return frame


STATS_CALLS = {
    "compare_groups": lambda d: compare_groups(d, n_boot=20),
    "compare_groups_welch": lambda d: compare_groups(d, test="welch_t", n_boot=0),
    "compare_groups_patient": lambda d: compare_groups(d, bootstrap="patient", n_boot=20),
    "compare_groups_aggregate": lambda d: compare_groups(d, aggregate="patient", n_boot=0),
    "region_enrichment": lambda d: region_enrichment(d, n_boot=0),
    "region_enrichment_t": lambda d: region_enrichment(d, test="t", n_boot=0),
    "compare_methods": lambda d: compare_paired(d, "method", by="region", n_boot=0),
    "sumer2023": lambda d: run_protocol("sumer2023", d),
    "nimanui": lambda d: run_protocol("nimanui", d),
}


@pytest.mark.parametrize("name", sorted(STATS_CALLS))
def test_statistics_on_random_degenerate_tables(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    tally = Tally()
    for k in range(25):
        data = _random_scores(rng)
        run_case(tally, f"{name}#{k}", lambda: STATS_CALLS[name](data), _honest)
    assert_clean(tally)


@pytest.mark.parametrize("p,names", [([0.2, -0.1], "p_raw"), ([0.5, 2.0], "p_raw"), (["a", 0.1], None),
                                     ([np.inf], "p_raw"), ([], "empty")])
def test_correct_with_bad_p_values(p, names):
    tally = Tally()
    run_case(tally, str(p), lambda: correct(pd.DataFrame({"p_raw": p})), _honest, names=names)
    assert_clean(tally)


@pytest.mark.parametrize("call,names", [
    (lambda: required_n(0.0), "effect"), (lambda: required_n(float("nan")), "effect"),
    (lambda: required_n(0.5, alpha=2.0), "alpha"), (lambda: required_n(0.5, power=1.5), "power"),
    (lambda: detectable_effect(1, 1), "n"), (lambda: detectable_effect(-3, 5), "n"),
    (lambda: required_n(0.5, test="bogus"), "bogus"), (lambda: detectable_effect(10, 10, n_tests=0), "n_tests"),
])
def test_power_with_bad_arguments(call, names):
    tally = Tally()
    run_case(tally, names, call, lambda out: None, names=names)
    assert_clean(tally)


_BAD_RESAMPLING = {"ci": [1.5, 0, 1, -0.1, "0.95", None, float("nan"), True], "n_boot": [-5, 2.5, "100", None, True],
                   "alternative": ["bigger", "", None, "two_sided", 1], "seed": ["x", 1.5, None]}


@pytest.mark.parametrize("name", ["compare_groups", "region_enrichment"])
def test_statistics_with_random_bad_resampling_arguments(name):
    """Issue 23: ci=1.5 gave NaN CIs, n_boot=-5 and alternative='bigger' raw scipy errors."""
    rng = np.random.default_rng(23)
    call = {"compare_groups": compare_groups, "region_enrichment": region_enrichment}[name]
    tally = Tally()
    for k in range(30):
        data = _random_scores(np.random.default_rng(k)).assign(area_frac=0.3)
        arg = str(rng.choice(sorted(_BAD_RESAMPLING)))
        bad = _BAD_RESAMPLING[arg][int(rng.integers(len(_BAD_RESAMPLING[arg])))]

        def refused(_table) -> None:
            raise AssertionError(f"{arg}={bad!r} was accepted")

        run_case(tally, f"{name}#{k} {arg}={bad!r}", lambda: call(data, **{arg: bad, "n_boot": 10} if arg != "n_boot"
                                                              else {arg: bad}), refused, names=f"{arg}=")
    assert_clean(tally)
