"""Ground-truth worlds: the glass box's closed forms (captum as reference), the shipped models use what their
world says, block-level randomization stages, the data-randomization check, and bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from captum.attr import ShapleyValueSampling
from scipy import stats

from xaikit.errors import ArgumentError, CheckpointError, EvaluationError, XaikitError
from xaikit.evaluation import randomization_stages, score
from xaikit.evaluation.meta import kendall_w, score_world
from xaikit.models import build_model
from xaikit.saliency import explain
from xaikit.worlds import (
    WORLDS,
    evidence_check,
    glass_box_attribution,
    glass_box_blocks,
    glass_box_model,
    glass_box_weights,
    world_data,
    world_model,
    world_model_path,
)


@pytest.fixture(scope="module")
def glass():
    data = world_data("glass_box", "test", n=6)
    return glass_box_model(), data["images"], torch.ones(6, dtype=torch.long), data["masks"]["evidence"]


# ------------------------------------------------------------------------------------------------ glass box
@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients", "deeplift", "lrp_epsilon"])
def test_glass_box_attributions_equal_w_times_x(glass, method):
    model, x, target, _ = glass
    maps = explain(model, x, method, target).maps.double()
    np.testing.assert_allclose(maps, glass_box_attribution(x.double()), atol=1e-6)


def test_glass_box_block_shapley_values_and_occlusion(glass):
    model, x, target, _ = glass
    blocks = glass_box_blocks(x.double())
    # captum's Shapley value sampling over the 64 blocks: exact for an additive model with any permutation
    mask = torch.arange(64).view(8, 8).repeat_interleave(8, 0).repeat_interleave(8, 1)[None, None]
    shapley = ShapleyValueSampling(model).attribute(x, target=1, feature_mask=mask, n_samples=2)[:, 0]
    np.testing.assert_allclose(shapley[:, ::8, ::8].double(), blocks, atol=1e-5)
    occlusion = explain(model, x, "occlusion", target, window=8, stride=8).maps.double()
    np.testing.assert_allclose(occlusion, blocks.repeat_interleave(8, 1).repeat_interleave(8, 2), atol=1e-5)
    logit = model(x)[:, 1].detach().double() - model[1].bias[1].detach().double()  # sum_i w_i x_i
    np.testing.assert_allclose(blocks.sum((1, 2)), logit, atol=1e-5)


def test_metric_identities_on_the_glass_box(glass):
    model, x, target, evidence = glass
    exact = explain(model, x, "input_x_gradient", target)
    grad = explain(model, x, "gradient", target)
    np.testing.assert_allclose(score("faithfulness_correlation", model, x, exact, n_runs=20, subset_size=128)["value"],
                               1.0, atol=1e-6)  # the drop of a linear model is the sum of w x over the subset
    np.testing.assert_allclose(score("infidelity", model, x, grad, n_samples=4)["value"], 0.0, atol=1e-8)
    for name in ("max_sensitivity", "local_lipschitz"):  # the gradient of a linear model does not move
        np.testing.assert_allclose(score(name, model, x, grad, n_samples=3)["value"], 0.0, atol=1e-12)
    np.testing.assert_allclose(score("relevance_mass", model, x, exact, masks=evidence)["value"], 1.0)
    best = score("deletion", model, x, exact, steps=16)["value"].to_numpy()
    for other in (grad, explain(model, x, "random", target), explain(model, x, "sobel", target)):
        assert (score("deletion", model, x, other, steps=16)["value"].to_numpy() >= best - 1e-9).all()
    assert glass_box_weights().ne(0).float().mean() == 8 / 64


# ---------------------------------------------------------------------------------------- shipped world models
def test_the_marker_world_reads_the_marker_not_the_lesion():
    check = evidence_check(world_model("marker_only"), "marker_only", n=30)
    assert check["flips_without_marker"] >= 0.9 and check["flips_without_lesion"] <= 0.1
    assert check["n_marker"] >= 5 and check["n_lesion"] >= 5


def test_the_lesion_and_both_worlds_use_their_evidence():
    assert evidence_check(world_model("lesion_only"), "lesion_only", n=30)["flips_without_lesion"] >= 0.5
    both = evidence_check(world_model("both"), "both", n=40)
    assert both["flips_without_lesion"] > 0.05 and both["flips_without_marker"] > 0.05
    assert both["margin_drop_without_lesion"] > 0.5 and both["margin_drop_without_marker"] > 0.5


def test_world_data_is_deterministic_and_counterfactuals_keep_the_rest():
    a, b = world_data("marker_only", "test", n=4), world_data("marker_only", "test", n=4)
    assert torch.equal(a["images"], b["images"]) and a["image_ids"] == b["image_ids"]
    assert torch.equal(a["labels"], a["masks"]["marker"].flatten(1).any(1).long())
    removed = world_data("marker_only", "test", n=4, remove="marker")
    outside = ~a["masks"]["marker"]
    assert not removed["masks"]["marker"].any()
    assert torch.equal(removed["images"][:, 0][outside], a["images"][:, 0][outside])  # only the tag changed


def test_cards_of_the_shipped_world_models():
    from xaikit.checkpoint import load_checkpoint

    for name, world in WORLDS.items():
        if world.model != "trained":
            continue
        ckpt = load_checkpoint(world_model_path(name))
        assert {"data", "evidence", "intended_use", "evidence_check"} <= set(ckpt.card)
    random_card = load_checkpoint(world_model_path("label_random")).summary
    assert random_card["train_accuracy"] >= 0.9  # it memorised the permuted labels


# ------------------------------------------------------------------------------------------------ stages
def test_block_stages_join_each_convolution_with_its_batchnorm():
    net = build_model("small_cnn", num_classes=2, widths=(8, 16, 32)).eval()
    stages = randomization_stages(net, "block")
    assert [n for n, _ in stages] == ["classifier", "features.2.0+features.2.1", "features.1.0+features.1.1",
                                      "features.0.0+features.0.1"]
    assert len(randomization_stages(net, "layer")) == 7
    x = torch.rand(2, 1, 32, 32)
    exp = explain(net, x, "gradient")
    blocks = score("cascading_randomization", net, x, exp, stages="block", similarities=["spearman"])
    layers = score("cascading_randomization", net, x, exp, stages="layer", similarities=["spearman"])
    assert blocks["stages"].eq("block").all() and blocks["layer"].nunique() == 4
    # the last stage randomizes every layer either way: the same maps, the same similarity
    np.testing.assert_allclose(blocks[blocks["layer_index"] == 4]["value"], layers[layers["layer_index"] == 7]["value"])
    with pytest.raises(ArgumentError, match="stages"):
        randomization_stages(net, "blocks")


def test_data_randomization_against_itself_is_one_and_needs_a_reference():
    net = build_model("small_cnn", num_classes=2, widths=(8, 16)).eval()
    x = torch.rand(3, 1, 32, 32)
    exp = explain(net, x, "gradient")
    same = score("data_randomization", net, x, exp, reference=net, similarities=["spearman"])
    np.testing.assert_allclose(same["value"], 1.0)
    other = build_model("small_cnn", num_classes=2, widths=(8, 16)).eval()
    assert (score("data_randomization", net, x, exp, reference=other, similarities=["spearman"])["value"] < 0.99).all()
    with pytest.raises(ArgumentError, match="reference"):
        score("data_randomization", net, x, exp)


# ------------------------------------------------------------------------------------------------ meta
def test_kendall_w_matches_the_mean_spearman_identity():
    ranks = np.array([stats.rankdata(r) for r in np.random.default_rng(0).random((4, 6))])
    rho = np.mean([stats.spearmanr(a, b).statistic for i, a in enumerate(ranks) for b in ranks[i + 1:]])
    m = len(ranks)
    assert kendall_w(ranks) == pytest.approx((rho * (m - 1) + 1) / m)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ArgumentError, match="not a known world"):
        world_model("nope")
    with pytest.raises(ArgumentError, match="no model file"):
        world_model_path("glass_box")
    with pytest.raises(CheckpointError, match="missing"):
        world_model("marker_only", folder="/nonexistent")
    with pytest.raises(EvaluationError, match="no known evidence"):
        score_world("label_random")
    with pytest.raises(EvaluationError, match="no known truth in world 'glass_box'"):
        score_world("glass_box", settings=["data_randomization"])
    with pytest.raises(XaikitError, match="at least 3 methods"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score_world("glass_box", methods=["gradient"], settings={"sparseness": [{}]}, n=3, perturb=False,
                        controls=())


def test_samples_worlds_rebuilds_only_the_world_models(monkeypatch, tmp_path, capsys):
    import xaikit.samples
    from xaikit.cli import main

    calls = []
    monkeypatch.setattr(xaikit.samples, "build_world_models",
                        lambda out: calls.append(out) or {"marker_only": out / "models" / "world_marker_only.pt"})
    assert main(["samples", "--worlds", "--out", str(tmp_path)]) == 0
    assert calls == [tmp_path] and "world_marker_only.pt" in capsys.readouterr().out


def _synthetic_run(world: str, n_methods: int = 4, n_images: int = 12):
    """A WorldScores whose truth is known: deletion (lower is better) = -truth, insertion (higher) = -truth."""
    import pandas as pd

    from xaikit.evaluation.meta import WorldScores

    rng = np.random.default_rng(0)
    rows = [{"image_id": f"i{i}", "method": f"m{j}", "truth_auroc": 0.5 + 0.1 * j + 0.01 * rng.random(),
             "truth_mass": 0.1 * j} for j in range(n_methods) for i in range(n_images)]
    truth = pd.DataFrame(rows)
    scores = pd.concat([truth.assign(metric=m, family="faithfulness", setting="patch=8", higher_is_better=h,
                                     value=-truth["truth_auroc"]) for m, h in (("deletion", False),
                                                                              ("insertion", True))])
    perturbed = pd.concat([scores.assign(perturbation="minor"),
                           scores.assign(perturbation="disruptive", value=scores["value"] + 10)])
    return WorldScores(world, scores.drop(columns=["truth_auroc", "truth_mass"]), truth,
                       perturbed.drop(columns=["truth_auroc", "truth_mass"]))


def test_metric_reliability_on_a_known_answer():
    from xaikit.evaluation import ground_truth_ranking, metric_agreement, metric_reliability

    runs = [_synthetic_run("lesion_only"), _synthetic_run("marker_only")]
    truth = ground_truth_ranking(runs, n_boot=50)
    assert truth.groupby("world")["rank"].apply(list).map(lambda r: r == [4.0, 3.0, 2.0, 1.0]).all()
    agreement = metric_agreement(runs, n_boot=50).set_index(["world", "metric"])["tau"]
    assert (agreement.xs("deletion", level="metric") == 1).all()
    assert (agreement.xs("insertion", level="metric") == -1).all()
    table = metric_reliability(runs, n_boot=50).set_index("metric")
    assert table.loc["deletion", "verdict"].startswith("trust: deletion (patch=8)")
    assert table.loc["insertion", "verdict"].startswith("misleading")
    np.testing.assert_allclose(table["noise_resilience"], 1.0)
    np.testing.assert_allclose(table["adversary_reactivity"], 1.0)
    np.testing.assert_allclose(table["family_w"], 0.0, atol=1e-12)  # a ranking and its reverse: equal rank sums
    assert (table["n_worlds"] == 2).all()
    with pytest.raises(EvaluationError, match="at least 3 methods"):
        ground_truth_ranking([_synthetic_run("both", n_methods=2)])
