"""A study at cohort size: the plan (passes equal what the metrics run), the resumable score cache, Dask, devices."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import xaikit.evaluation.many as many
from xaikit.errors import ArgumentError
from xaikit.evaluation import METRICS, autocast_parity, plan, score, score_many
from xaikit.evaluation.context import make_context
from xaikit.evaluation.cost import metric_passes
from xaikit.evaluation.many import table_from_json, table_to_json
from xaikit.evaluation.runner import check_params, run_metric
from xaikit.saliency import explain, explain_many
from xaikit.saliency.registry import get_method

from evaluation_helpers import inputs, lesion_masks, tiny_cnn

pytestmark = pytest.mark.usefixtures("one_thread")

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() "
                                                                "is False here); runs wherever one is present")
METRICS_SMALL = {"deletion": {"steps": 6}, "insertion": {"steps": 6}, "deletion_lerf": {"steps": 6},
                 "max_sensitivity": {"n_samples": 2}, "local_lipschitz": {"n_samples": 2},
                 "cascading_randomization": {"similarities": ("spearman_abs", "ssim")}, "relevance_mass": {},
                 "sparseness": {}}
RANDOM_DRAWS = {"max_sensitivity", "local_lipschitz"}  # noise drawn per batch: differs between batch sizes


@pytest.fixture(scope="module")
def case():
    model, x = tiny_cnn(), inputs(5)
    exps = explain_many(model, x, ["gradient", "gradcam"], image_ids=list("abcde"), progress=False)
    return model, x, exps, lesion_masks(5)


@pytest.fixture(scope="module")
def whole(case):
    model, x, exps, masks = case
    return score_many(model, x, exps, METRICS_SMALL, masks=masks, batch_size=2, progress=False)


class Counting:
    """run_metric that counts its calls and can fail on the k-th (an interrupted run)."""

    def __init__(self, fail_at: int | None = None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, info, ctx, params):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("interrupted")
        return run_metric(info, ctx, params)


# ------------------------------------------------------------------------------------------------ the cache
def test_an_interrupted_run_recomputes_only_what_was_unfinished(case, whole, tmp_path, monkeypatch):
    model, x, exps, masks = case
    units = (len(exps) + 2) * len(METRICS_SMALL) * 3  # (methods + 2 controls) x metrics x 3 batches of 2, 2, 1
    first = Counting(fail_at=20)
    monkeypatch.setattr(many, "run_metric", first)
    with pytest.raises(KeyboardInterrupt):
        score_many(model, x, exps, METRICS_SMALL, masks=masks, batch_size=2, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 19  # every finished unit is on disk, the interrupted one is not
    second = Counting()
    monkeypatch.setattr(many, "run_metric", second)
    resumed = score_many(model, x, exps, METRICS_SMALL, masks=masks, batch_size=2, cache_dir=tmp_path, progress=False)
    assert second.calls == units - 19  # at most the interrupted unit is computed twice
    pd.testing.assert_frame_equal(resumed, whole, check_exact=False, rtol=1e-9, atol=1e-12)
    third = Counting()
    monkeypatch.setattr(many, "run_metric", third)
    again = score_many(model, x, exps, METRICS_SMALL, masks=masks, batch_size=2, cache_dir=tmp_path, progress=False)
    assert third.calls == 0  # a rerun is a cache read
    pd.testing.assert_frame_equal(again, resumed, check_exact=True)


def test_batches_give_the_unbatched_table_for_deterministic_metrics(case, whole):
    model, x, exps, masks = case
    one = score_many(model, x, exps, METRICS_SMALL, masks=masks, progress=False)
    keep = ~one["metric"].isin(RANDOM_DRAWS)
    assert list(one.columns) == list(whole.columns) and len(one) == len(whole)
    # same rows in the same order (blocks per layer and similarity, then images); float32 sums differ per batch
    pd.testing.assert_frame_equal(one[keep].reset_index(drop=True), whole[keep].reset_index(drop=True),
                                  check_exact=False, rtol=1e-4, atol=1e-6)
    assert one.loc[~keep, "image_id"].tolist() == whole.loc[~keep, "image_id"].tolist()


def test_a_cache_key_changes_with_what_the_scores_depend_on(case, tmp_path):
    model, x, exps, _ = case
    args = dict(controls=(), batch_size=5, cache_dir=tmp_path, progress=False)
    score_many(model, x, {"gradient": exps["gradient"]}, {"deletion": {"steps": 6}}, **args)
    score_many(model, x, {"gradient": exps["gradient"]}, {"deletion": {"steps": 7}}, **args)    # parameters
    score_many(model, x, {"gradient": exps["gradient"]}, {"deletion": {"steps": 6}}, seed=1, **args)  # seed
    score_many(model, x + 0.01, {"gradient": exps["gradient"]}, {"deletion": {"steps": 6}}, **args)  # inputs
    score_many(tiny_cnn(seed=1), x, {"gradient": exps["gradient"]}, {"deletion": {"steps": 6}}, **args)  # model
    assert len(list(tmp_path.rglob("*.json"))) == 5


def test_a_damaged_cache_file_is_recomputed_with_a_warning(case, tmp_path, monkeypatch):
    model, x, exps, _ = case
    args = dict(controls=(), batch_size=5, cache_dir=tmp_path, progress=False)
    good = score_many(model, x, exps, {"deletion": {"steps": 6}}, **args)
    victim = sorted(tmp_path.rglob("*.json"))[0]
    victim.write_text(victim.read_text().replace("0", "1", 3))
    counting = Counting()
    monkeypatch.setattr(many, "run_metric", counting)
    with pytest.warns(UserWarning, match="damaged and will be recomputed"):
        again = score_many(model, x, exps, {"deletion": {"steps": 6}}, **args)
    assert counting.calls == 1
    pd.testing.assert_frame_equal(again, good, check_exact=True)


def test_tables_survive_the_json_cache_exactly():
    table = pd.DataFrame({"image_id": ["a", "b", "c"], "label": pd.array([1, pd.NA, 0], dtype="Int64"),
                          "value": [0.1 + 0.2, float("nan"), -1e-310], "flag": [True, False, True],
                          "layers": [None, None, None], "n": np.array([1, 2, 3]), "steps": [np.int64(3)] * 3,
                          "similarity": ["x", None, "z"]})
    back = table_from_json(table_to_json(table))
    pd.testing.assert_frame_equal(back, table, check_exact=True)
    text = json.loads(table_to_json(table))
    text["body"] = text["body"].replace("0.30000000000000004", "0.3")
    with pytest.raises(ValueError, match="checksum"):
        table_from_json(json.dumps(text))


def test_bad_batch_sizes_are_refused(case):
    model, x, exps, _ = case
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ArgumentError, match="batch_size"):
            score_many(model, x, exps, ["sparseness"], batch_size=bad, progress=False)


# ------------------------------------------------------------------------------------------------ executors
def test_a_dask_cluster_gives_the_local_table(case, whole, tmp_path):
    distributed = pytest.importorskip("distributed")
    model, x, exps, masks = case
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as lc, \
            distributed.Client(lc) as client:
        got = score_many(model, x, exps, METRICS_SMALL, masks=masks, batch_size=2, progress=False, executor=client,
                         cache_dir=tmp_path)
    pd.testing.assert_frame_equal(got, whole, check_exact=False, rtol=1e-9, atol=1e-12)
    assert len(list(tmp_path.rglob("*.json"))) == (len(exps) + 2) * len(METRICS_SMALL) * 3
    local = score_many(model, x, exps, METRICS_SMALL, masks=masks, batch_size=2, progress=False, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(local, got, check_exact=True)  # the local loop reads what the workers wrote


def test_a_thread_pool_gives_the_local_table(case, whole):
    from concurrent.futures import ThreadPoolExecutor

    model, x, exps, masks = case
    with ThreadPoolExecutor(2) as pool:
        got = score_many(model, x, exps, METRICS_SMALL, masks=masks, batch_size=2, progress=False, executor=pool)
    pd.testing.assert_frame_equal(got, whole, check_exact=False, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------------ the plan
@pytest.mark.parametrize("metric", ["deletion", "insertion", "road", "faithfulness_correlation", "infidelity",
                                    "max_sensitivity", "sensitivity_max", "cascading_randomization",
                                    "independent_randomization", "sparseness", "relevance_mass"])
@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_planned_passes_are_the_passes_the_metric_runs(metric, method):
    model, x = tiny_cnn(), inputs(3)
    params = {"deletion": {"steps": 6}, "insertion": {"steps": 6}, "road": {"fractions": (0.3, 0.6)},
              "faithfulness_correlation": {"n_runs": 4, "subset_size": 8}, "infidelity": {"n_samples": 3},
              "max_sensitivity": {"n_samples": 2}, "sensitivity_max": {"n_samples": 2},
              "cascading_randomization": {"similarities": ("spearman",)},
              "independent_randomization": {"similarities": ("spearman",), "layers": ["2"]}}.get(metric, {})
    method_params = {"n_steps": 4} if method == "integrated_gradients" else {}
    exp = explain(model, x, method, **method_params)
    ctx = make_context(model, x, exp, masks=lesion_masks(3))
    ctx.clean_outputs()  # shared by every method and metric of a call: planned in a row of its own
    before = ctx.counts["forward_inputs"]
    run_metric(METRICS[metric], ctx, check_params(METRICS[metric], dict(params)))
    cost = get_method(method).passes(method_params)
    measured = (ctx.counts["forward_inputs"] - before) / 3 + ctx.counts["explain_inputs"] * cost
    if metric in ("deletion", "insertion"):
        measured -= len(x) / 3  # the all-baseline end, shared by every method (in the shared row too)
    planned = metric_passes(metric, params, cost, model) * len(x)
    assert planned == pytest.approx(measured)


def test_the_plan_counts_shared_sweeps_once_and_reads_like_a_table():
    model, x = tiny_cnn(), inputs(4)
    metrics = {"insertion": {"steps": 6}, "deletion_lerf": {"steps": 6}, "max_sensitivity": {"n_samples": 3},
               "local_lipschitz": {"n_samples": 3}, "sparseness": {}}
    p = plan(model, x, {"ig": {"method": "integrated_gradients", "n_steps": 8}, "gradient": {"method": "gradient"}},
             metrics)
    t = p.table.set_index(["method", "metric"])["passes"]
    assert t["ig", "explain"] == 4 * 8 and t["gradient", "explain"] == 4
    assert t["ig", "insertion"] == pytest.approx(4 * 5 / 3) and t["ig", "deletion_lerf"] == 0  # one sweep
    assert t["ig", "max_sensitivity"] == 4 * 3 * 8 and t["ig", "local_lipschitz"] == 0
    assert t["random", "max_sensitivity"] == 0 and ("random", "explain") in t.index  # the controls are planned
    assert p.seconds_per_pass > 0 and math.isclose(p.seconds, p.passes * p.seconds_per_pass)
    assert p.peak_memory > sum(q.numel() * 4 for q in model.parameters())
    text = str(p)
    assert text.splitlines()[1].lstrip().startswith("ig x max_sensitivity")  # the largest first
    assert "total" in text and "passes" in text and "MiB" in text


def test_a_plan_of_computed_explanations_plans_scoring_only(case):
    model, x, exps, _ = case
    p = plan(model, x, exps, ["deletion"], probe=False, controls=())
    assert set(p.table["metric"]) == {"deletion", "clean and baseline outputs"}
    assert math.isnan(p.seconds_per_pass) and "not probed" in p.summary()
    assert math.isnan(p.seconds) and "~0 ms" not in p.summary()  # unknown time is never shown as zero
    total = p.summary().splitlines()[-2]
    assert "total" in total and "not probed" in total


# ------------------------------------------------------------------------------------------------ devices
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, CUDA])])
def test_the_table_is_the_same_on_every_device(device, whole, case):
    """Model and inputs on the device; the table (on the host) equals the CPU one up to float32 kernels."""
    model, x, exps, masks = case
    dev = torch.device(device)
    net = tiny_cnn().to(dev)
    maps = explain_many(net, x.to(dev), ["gradient", "gradcam"], image_ids=list("abcde"), progress=False)
    assert all(e.maps.device.type == "cpu" for e in maps.values())
    got = score_many(net, x.to(dev), maps, METRICS_SMALL, masks=masks.to(dev), batch_size=2, progress=False)
    keep = ~got["metric"].isin(RANDOM_DRAWS) if device == "cuda" else slice(None)
    pd.testing.assert_frame_equal(got[keep].reset_index(drop=True), whole[keep].reset_index(drop=True),
                                  check_exact=False, rtol=1e-3, atol=1e-4)
    assert next(net.parameters()).device.type == dev.type  # the model stays where the user put it
    p = plan(net, x.to(dev), maps, METRICS_SMALL, masks=True)
    assert p.device.startswith(device) and p.seconds_per_pass > 0


def test_autocast_parity_measures_what_reduced_precision_changes():
    model, x = tiny_cnn(), inputs(4)
    metrics = {"deletion": {"steps": 6}, "sparseness": {}}
    check = autocast_parity(model, x, ["gradient", "gradcam", "input_x_gradient"], metrics, dtype=torch.bfloat16)
    maps = check[check["metric"] == "maps"].set_index("method")
    assert (maps["rel_diff"] > 0).all() and (maps["rel_diff"] < 0.5).all()  # bfloat16 keeps ~3 significant digits
    # the autocast column is the score of the autocast maps, with the metric's passes under autocast too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = explain(model, x, "gradient")
        want = score("deletion", model, x, low, steps=6)["value"].mean()
    got = check[(check["method"] == "gradient") & (check["metric"] == "deletion")]
    assert float(got["autocast"].iloc[0]) == pytest.approx(want, rel=1e-6)
    ref = score("deletion", model, x, explain(model, x, "gradient"), steps=6)["value"].mean()
    assert float(got["float32"].iloc[0]) == pytest.approx(ref, rel=1e-9)
    assert check.loc[check["metric"] != "maps", "rank_spearman"].between(-1, 1).all()


@pytest.mark.gpu
@CUDA
def test_float16_autocast_on_cuda_keeps_maps_and_ranks():
    model, x = tiny_cnn().cuda(), inputs(6).cuda()
    check = autocast_parity(model, x, ["gradient", "gradcam", "integrated_gradients"], {"deletion": {"steps": 6}})
    assert (check.loc[check["metric"] == "maps", "rel_diff"] < 0.05).all()
    assert (check.loc[check["metric"] == "deletion", "rel_diff"] < 0.05).all()


def test_autocast_must_be_a_dtype(case):
    model, x, exps, _ = case
    with pytest.raises(ArgumentError, match="autocast"):
        score_many(model, x, exps, ["sparseness"], autocast="half", progress=False)


def test_score_many_over_a_dict_of_models_tags_each_table_with_its_model():
    from xaikit.evaluation import score_many, summarize
    from xaikit.models import build_model
    from xaikit.saliency import explain

    torch.manual_seed(0)
    models = {"a": build_model("small_cnn", num_classes=2, widths=(4, 8)).eval(),
              "b": build_model("small_cnn", num_classes=2, widths=(4, 8)).eval()}
    x = torch.rand(3, 1, 32, 32)
    maps = {name: {"gradient": explain(m, x, "gradient")} for name, m in models.items()}
    metrics = {"deletion": {"patch": 8, "steps": 4}, "sparseness": {}}
    both = score_many(models, x, maps, metrics, controls=(), progress=False)
    for name, m in models.items():
        alone = score_many(m, x, maps[name], metrics, controls=(), progress=False)
        pd.testing.assert_frame_equal(both[both["model"] == name].drop(columns="model").reset_index(drop=True), alone)
    summary = summarize(both, n_boot=50)
    assert sorted(summary.groupby(["model", "metric"]).size().to_dict().values()) == [1, 1, 1, 1]
    with pytest.raises(ArgumentError, match=r"no explanations for \['b'\]"):
        score_many(models, x, {"a": maps["a"]}, metrics, progress=False)


# ------------------------------------------------------------------------------------------------ cost not inherent
def test_the_table_join_equals_pandas_concat(whole):
    # whole's (method, metric) parts have different parameter columns: the grouped join must give pandas' result
    parts = [g.dropna(axis=1, how="all").reset_index(drop=True)
             for _, g in whole.groupby(["method", "metric"], sort=False)]
    parts = parts[1::2] + parts[::2]  # interleave the column sets
    pd.testing.assert_frame_equal(many._concat(parts), pd.concat(parts, ignore_index=True), check_exact=True)


def test_randomized_copies_are_made_once_per_stage_for_every_method(case, monkeypatch):
    import xaikit.evaluation.randomization as randomization

    model, x, exps, _ = case
    made = []
    copy_model = randomization._randomized_copy
    monkeypatch.setattr(randomization, "_randomized_copy", lambda *a: made.append(a[1]) or copy_model(*a))
    metrics = {"cascading_randomization": {"similarities": ("spearman",)}}
    table = score_many(model, x, exps, metrics, progress=False)
    stages = randomization.randomizable_layers(model)
    assert len(made) == len(stages)  # 2 methods + 2 controls, one copy per stage
    for label, exp in exps.items():  # the shared copies give what one method alone gets
        alone = score("cascading_randomization", model, x, exp, similarities=("spearman",))
        np.testing.assert_array_equal(table.loc[table["method"] == label, "value"].to_numpy(), alone["value"])


def test_cpu_forward_chunks_keep_every_activation_below_the_mmap_threshold():
    from xaikit.evaluation.context import CPU_TENSOR_BYTES

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(64, 2)).eval()
    x = torch.rand(6, 1, 96, 96)  # 2.25 MiB of first activation per image: 14 images per chunk, 90 inputs to run
    largest = []
    hook = model[0].register_forward_hook(lambda m, a, out: largest.append(out.numel() * out.element_size()))
    try:
        ctx = make_context(model, x, explain(model, x, "gradient"))
        ctx.outputs(ctx.chunked(90, lambda p: (x[p % 6], p % 6)))
    finally:
        hook.remove()
    assert ctx.batch == CPU_TENSOR_BYTES // (64 * 96 * 96 * 4) == 14
    assert max(largest[1:]) < CPU_TENSOR_BYTES and ctx.counts["forward_batches"] == 7  # [0]: explain's own pass
