"""Evaluation metrics: identities, model safety over the whole registry, sharing of model passes, bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from xaikit.errors import ArgumentError, EvaluationError, ModelError, XaikitError
from xaikit.evaluation import METRICS, rank_methods, sanity_verdicts, score, score_many, summarize
from xaikit.evaluation.context import make_context
from xaikit.evaluation.faithfulness import curve
from xaikit.saliency import explain
from xaikit.saliency.safety import hook_count

from evaluation_helpers import Linear, inputs, lesion_masks, tiny_cnn

FAST = {"max_sensitivity": {"n_samples": 2}, "local_lipschitz": {"n_samples": 2}, "sensitivity_max": {"n_samples": 2},
        "infidelity": {"n_samples": 4}, "faithfulness_correlation": {"n_runs": 5, "subset_size": 16},
        "deletion": {"steps": 8}, "insertion": {"steps": 8}, "deletion_lerf": {"steps": 8},
        "road": {"fractions": (0.2, 0.6)}, "cascading_randomization": {"similarities": ("spearman_abs", "ssim", "hog")},
        "independent_randomization": {"similarities": ("spearman",)},
        "data_randomization": {"reference": tiny_cnn(seed=1, bn=True), "similarities": ("spearman_abs",)}}


@pytest.fixture(scope="module")
def linear_case():
    model, x = Linear().eval(), inputs(3, side=8)
    exp = explain(model, x, "gradient", target=1)
    occlusion = (model.fc.weight[1].detach().view(8, 8) * x[:, 0]).detach()  # exact effect of zeroing each pixel
    return model, x, exp, occlusion


# ------------------------------------------------------------------------------------------------ identities
def test_deletion_auc_of_the_exact_occlusion_map_is_optimal(linear_case):
    model, x, exp, occlusion = linear_case
    best_del = score("deletion", model, x, occlusion, target=1, steps=16)["value"].to_numpy()
    best_ins = score("insertion", model, x, occlusion, target=1, steps=16)["value"].to_numpy()
    g = torch.Generator().manual_seed(0)
    others = [torch.randn(3, 8, 8, generator=g) for _ in range(6)] + [exp.maps, occlusion.abs(), -occlusion]
    for other in others:
        assert (score("deletion", model, x, other, target=1, steps=16)["value"].to_numpy() >= best_del - 1e-9).all()
        assert (score("insertion", model, x, other, target=1, steps=16)["value"].to_numpy() <= best_ins + 1e-9).all()
    assert (score("deletion", model, x, -occlusion, target=1, steps=16)["value"].to_numpy() > best_del + 1e-3).all()
    # and the curve itself is the clean logit minus the cumulative top effects
    ctx = make_context(model, x, occlusion, target=1)
    fractions, values = curve(ctx, "deletion", 1, 64, 0.0, "logit")
    clean = model(x)[:, 1].detach().double().numpy()
    top = np.sort(occlusion.reshape(3, -1).double().numpy(), axis=1)[:, ::-1].cumsum(1)
    np.testing.assert_allclose(values[:, 1:], clean[:, None] - top, rtol=1e-5, atol=1e-5)


def test_insertion_and_lerf_deletion_are_one_sweep(linear_case):
    model, x, exp, _ = linear_case
    ctx = make_context(model, x, exp)
    fi, ins = curve(ctx, "insertion", 2, 8, 0.0, "logit")
    passes = ctx.counts["forward_batches"]
    fl, lerf = curve(ctx, "deletion_lerf", 2, 8, 0.0, "logit")
    assert ctx.counts["forward_batches"] == passes  # read from the cached sweep
    np.testing.assert_array_equal(lerf, ins[:, ::-1])
    np.testing.assert_allclose(fl, 1 - fi[::-1])


def test_randomizing_no_layer_gives_similarity_one():
    model, x = tiny_cnn(), inputs()
    exp = explain(model, x, "gradient")
    table = score("cascading_randomization", model, x, exp, layers=[], include_original=True)
    assert set(table["layer"]) == {"none"} and len(table) == 4 * 4
    np.testing.assert_allclose(table["value"], 1.0, atol=1e-9)


def test_randomization_changes_gradient_maps_but_not_the_controls():
    model, x = tiny_cnn(), inputs()
    table = score_many(model, x, {"gradient": explain(model, x, "gradient")}, ["cascading_randomization"],
                       progress=False)
    last = table[(table["layer_index"] == table["layer_index"].max()) & (table["similarity"] == "spearman_abs")]
    means = last.groupby("method")["value"].mean()
    assert means["gradient"] < 0.5
    np.testing.assert_allclose(means[["random", "sobel"]], 1.0)  # model-independent maps never change
    verdicts = sanity_verdicts(table).set_index("method")
    assert bool(verdicts.loc["gradient", "passed"]) and not verdicts.loc["sobel", "passed"]
    assert "FAILS" in verdicts.loc["random", "verdict"]


def test_gradient_of_a_linear_model_is_perfectly_robust_and_faithful(linear_case):
    model, x, exp, occlusion = linear_case
    for name in ("max_sensitivity", "local_lipschitz", "sensitivity_max"):
        np.testing.assert_allclose(score(name, model, x, exp, n_samples=3)["value"], 0.0, atol=1e-6)
    # infidelity (captum, normalize=True) under input noise I: f(x) - f(x - I) = w.I, so the gradient w is exact
    np.testing.assert_allclose(score("infidelity", model, x, exp)["value"], 0.0, atol=1e-8)
    assert (score("infidelity", model, x, occlusion, target=1)["value"] > 1e-5).all()
    assert (score("infidelity", model, x, torch.randn(3, 8, 8), target=1)["value"] > 1e-4).all()


def test_localization_of_a_map_equal_to_the_mask_is_perfect():
    model, x, masks = tiny_cnn(), inputs(), lesion_masks()
    perfect = masks.float() + 0.01 * torch.rand(4, 16, 16)  # strictly ordered inside and outside
    for name in ("pointing_game", "relevance_rank", "auroc"):
        np.testing.assert_allclose(score(name, model, x, perfect, masks=masks)["value"], 1.0)
    mass = score("relevance_mass", model, x, masks.float(), masks=masks)["value"]
    np.testing.assert_allclose(mass, 1.0)


def test_sparseness_extremes():
    model, x = tiny_cnn(), inputs(2)
    one = torch.zeros(2, 16, 16)
    one[:, 3, 4] = 1.0
    assert (score("sparseness", model, x, one)["value"] > 0.99).all()
    assert (score("sparseness", model, x, torch.ones(2, 16, 16))["value"].abs() < 1e-6).all()
    np.testing.assert_allclose(score("entropy", model, x, torch.ones(2, 16, 16))["value"], np.log(256), rtol=1e-9)


# ------------------------------------------------------------------------------------------------ safety
def _state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()], hook_count(model))


@pytest.mark.parametrize("name", sorted(METRICS))
def test_the_model_is_unchanged_by_every_metric(name):
    model = tiny_cnn(bn=True).train()  # training mode and trainable weights: both must come back
    x = inputs()
    with torch.no_grad():
        exp = explain(model, x, "gradient")
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = score(name, model, x, exp, masks=lesion_masks(), **FAST.get(name, {}))
    after = _state(model)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:]
    assert len(table) >= 4 and {"image_id", "method", "metric", "value"} <= set(table.columns)
    assert table["metric"].eq(name).all() and table["value"].notna().any()


# ------------------------------------------------------------------------------------------------ score_many
def test_score_many_shares_passes_and_ranks_with_one_family():
    model, x = tiny_cnn(), inputs(6)
    exps = {"gradient": explain(model, x, "gradient"), "saliency_ig": explain(model, x, "integrated_gradients",
                                                                               n_steps=4)}
    table = score_many(model, x, exps, {"deletion": {"steps": 8}, "insertion": {"steps": 8},
                                        "deletion_lerf": {"steps": 8}, "max_sensitivity": {"n_samples": 1}},
                       masks=lesion_masks(6), progress=False)
    assert set(table["method"]) == {"gradient", "saliency_ig", "random", "sobel"}
    assert len(table) == 4 * 4 * 6 and table["steps"].dropna().eq(8).all()
    # the labels name the rows; the method behind each label is what gets re-explained
    assert table.loc[(table["method"] == "saliency_ig") & (table["metric"] == "max_sensitivity"), "value"].gt(0).all()
    summary = summarize(table, n_boot=200)
    assert {"mean", "ci_low", "ci_high", "rank"} <= set(summary.columns)
    assert ((summary["ci_low"] <= summary["mean"] + 1e-12).all()
            and (summary["mean"] <= summary["ci_high"] + 1e-12).all())
    tests = rank_methods(table, n_boot=100)
    assert tests["family_size"].nunique() == 1 and tests["family_size"].iloc[0] == tests["p_raw"].notna().sum()
    verdicts = sanity_verdicts(table, tests)
    assert set(verdicts["method"]) == {"gradient", "saliency_ig"}
    floor = verdicts["family"] == "faithfulness"
    assert verdicts.loc[floor, "verdict"].str.contains("random control").all()
    assert not verdicts.loc[~floor, "verdict"].str.contains("control").any()  # robustness: a stated threshold


def test_one_sweep_serves_every_method_end_points():
    """Clean and all-baseline outputs are computed once for all methods: passes = inner steps per method + 2."""
    model, x = tiny_cnn(), inputs(4)
    exps = {"a": explain(model, x, "gradient"), "b": explain(model, x, "random")}
    shared: dict = {}
    counts = []
    for exp in exps.values():
        ctx = make_context(model, x, exp, shared=shared, memory_budget=None)
        curve(ctx, "deletion", 1, 8, 0.0, "logit")
        curve(ctx, "insertion", 1, 8, 0.0, "logit")
        counts.append(ctx.counts["forward_inputs"])
    assert counts == [2 * 4 * 7 + 2 * 4, 2 * 4 * 7]


# ------------------------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def case():
    model, x = tiny_cnn(), inputs()
    return model, x, explain(model, x, "gradient")


def test_wrong_mask_shape(case):
    with pytest.raises(ArgumentError, match=r"masks have shape \(4, 8, 8\)"):
        score("pointing_game", *case, masks=torch.ones(4, 8, 8, dtype=torch.bool))


def test_mask_metric_without_masks(case):
    with pytest.raises(ArgumentError, match="'relevance_mass' needs masks="):
        score("relevance_mass", *case)


def test_model_without_parameters():
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.rand(2, 2, 8, 8)
    exp = explain(model, x, "gradient")
    with pytest.raises(ModelError, match="no layer with parameters to randomize"):
        score("cascading_randomization", model, x, exp)


@pytest.mark.parametrize("params, message", [({"patch": 17}, "patch=17"), ({"steps": 0}, "steps=0"),
                                             ({"steps": 300}, "steps=300"), ({"baseline": "zeros"}, "baseline")])
def test_perturbation_settings_larger_than_the_image(case, params, message):
    with pytest.raises(ArgumentError, match=message):
        score("deletion", *case, **params)


def test_subset_larger_than_the_image(case):
    with pytest.raises(ArgumentError, match="subset_size=300"):
        score("faithfulness_correlation", *case, subset_size=300)


class _Log(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 2)

    def forward(self, x):
        return self.fc(torch.log(x).mean((1, 2, 3))[:, None])


def test_non_finite_scores_are_an_error():
    model, x = _Log().eval(), inputs(2) + 0.5
    with pytest.raises(EvaluationError, match="non-finite outputs"):
        score("deletion", model, x, torch.rand(2, 16, 16), steps=4)  # baseline 0 -> log(0) = -inf


def test_non_finite_maps_and_unknown_names(case):
    model, x, exp = case
    bad = exp.maps.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ArgumentError, match="explanation maps contain NaN"):
        score("sparseness", model, x, bad)
    with pytest.raises(ArgumentError, match="unknown metric .*Known metrics: "):
        score("nope", model, x, exp)
    with pytest.raises(ArgumentError, match="has no parameter"):
        score("deletion", model, x, exp, window=3)
    with pytest.raises(ArgumentError, match="must be an xaikit Explanation"):
        score("max_sensitivity", model, x, exp.maps)
    assert issubclass(EvaluationError, XaikitError)


def test_nan_values_stay_in_the_table_with_a_warning(case):
    model, x, _ = case
    with pytest.warns(UserWarning, match="undefined"):
        table = score("pointing_game", model, x, -torch.rand(4, 16, 16), masks=lesion_masks())
    assert len(table) == 4 and table["value"].isna().all()
