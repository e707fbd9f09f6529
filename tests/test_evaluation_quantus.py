"""Every metric Quantus 0.6 also has, on the same tiny model, inputs and maps, with matching settings.

Tolerances: 1e-5 relative where both compute the same float32 model outputs in the same order; 1e-4 where a
noise draw is rounded to float32 on one side only. Where our definition differs on purpose the test shows how.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from xaikit.evaluation import METRICS, score
from xaikit.evaluation.context import make_context
from xaikit.evaluation.faithfulness import road_curve
from xaikit.saliency import explain

from evaluation_helpers import inputs, lesion_masks, tiny_cnn

quantus = pytest.importorskip("quantus")


@pytest.fixture(scope="module")
def setup():
    model, x = tiny_cnn(), inputs()
    exp = explain(model, x, "gradient", target=1)
    return model, x, exp


def _q(metric, model, x, exp, masks=None, seed=0, **kw):
    def explain_func(model, inputs, targets, **_):
        return explain(model, torch.as_tensor(inputs), "gradient",
                       torch.as_tensor(targets).long()).maps[:, None].numpy()

    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(model=model, x_batch=x.numpy(), y_batch=exp.targets.numpy(), a_batch=exp.maps[:, None].numpy(),
                     s_batch=None if masks is None else masks[:, None].numpy().astype(float), device="cpu",
                     explain_func=explain_func, softmax=False, **kw)
    return out


def test_deletion_curve_is_quantus_pixel_flipping(setup):
    model, x, exp = setup
    q = np.asarray(_q(quantus.PixelFlipping(features_in_step=16, perturb_baseline=0.0, disable_warnings=True,
                                            normalise=False, abs=False), model, x, exp))
    ctx = make_context(model, x, exp)
    from xaikit.evaluation.faithfulness import curve

    fractions, values = curve(ctx, "deletion", 1, 16, 0.0, "logit")
    # Quantus records the output after each step, without the unperturbed start: our curve from step 1 on
    np.testing.assert_allclose(values[:, 1:], q, rtol=1e-5, atol=1e-5)
    # our AUC is over the removed fraction in [0, 1] and includes the clean start; Quantus' is trapz(dx=1)
    auc = score("deletion", model, x, exp, steps=16)["value"].to_numpy()
    np.testing.assert_allclose(auc, np.trapezoid(values, fractions, axis=1), rtol=1e-12)
    # (Quantus' own return_auc_per_sample=True calls np.trapz, removed in numpy 2, so it cannot run here)


def test_faithfulness_correlation_matches_quantus(setup):
    model, x, exp = setup
    q = _q(quantus.FaithfulnessCorrelation(nr_runs=20, subset_size=32, perturb_baseline=0.0, disable_warnings=True,
                                           return_aggregate=False), model, x, exp, seed=3)
    ours = score("faithfulness_correlation", model, x, exp, n_runs=20, subset_size=32, seed=3)
    np.testing.assert_allclose(ours["value"], q, rtol=1e-4, atol=1e-6)


def test_road_matches_quantus_without_noise(setup):
    model, x, exp = setup
    pct = [10, 30, 50, 70, 90]
    q = _q(quantus.ROAD(percentages=pct, noise=0.0, disable_warnings=True, normalise=False), model, x, exp)
    ctx = make_context(model, x, exp)
    ours = road_curve(ctx, [p / 100 for p in pct], 0.0, "correct").mean(0)
    np.testing.assert_allclose(ours, [q[p] for p in pct], atol=1e-12)


def test_noisy_linear_imputation_matches_quantus():
    from quantus.functions.perturb_func import noisy_linear_imputation as q_nli

    from xaikit.evaluation import noisy_linear_imputation

    img = inputs(1)[0].double().numpy()
    removed = np.zeros(img.shape[1:], bool)
    removed[3:9, 4:12] = True
    removed[0, :5] = True
    ours = noisy_linear_imputation(img, removed, 0.0, np.random.default_rng(0))
    theirs = q_nli(img.copy(), np.flatnonzero(removed.ravel()), noise=0.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    assert np.array_equal(ours[:, ~removed], img[:, ~removed])


@pytest.mark.parametrize("noise", ["uniform", "gaussian"])
def test_robustness_metrics_match_quantus(setup, noise):
    model, x, exp = setup
    ms = _q(quantus.MaxSensitivity(nr_samples=5, lower_bound=0.05, disable_warnings=True, normalise=False, abs=False)
            if noise == "uniform" else quantus.MaxSensitivity(
                nr_samples=5, perturb_func=quantus.functions.perturb_func.batch_gaussian_noise,
                perturb_func_kwargs={"perturb_mean": 0.0, "perturb_std": 0.05}, disable_warnings=True,
                normalise=False, abs=False), model, x, exp, seed=7)
    ours = score("max_sensitivity", model, x, exp, noise=noise, scale=0.05, n_samples=5, seed=7)
    np.testing.assert_allclose(ours["value"], ms, rtol=1e-4)
    if noise == "gaussian":
        ll = _q(quantus.LocalLipschitzEstimate(nr_samples=5, perturb_std=0.05, disable_warnings=True, normalise=False,
                                               abs=False), model, x, exp, seed=7)
        ours = score("local_lipschitz", model, x, exp, noise="gaussian", scale=0.05, n_samples=5, seed=7)
        np.testing.assert_allclose(ours["value"], ll, rtol=1e-4)


def test_cascading_randomization_matches_quantus_mprt(setup):
    model, x, exp = setup
    q = _q(quantus.MPRT(seed=5, layer_order="top_down", disable_warnings=True), model, x, exp)
    ours = score("cascading_randomization", model, x, exp, similarities=["spearman_abs"], include_original=True,
                 seed=5)
    layers = list(q)
    assert layers[0] == "original" and ours["layer"].unique().tolist() == ["none", *layers[1:]]
    for layer in layers:
        got = ours.loc[ours["layer"] == ("none" if layer == "original" else layer), "value"].to_numpy()
        np.testing.assert_allclose(got, q[layer], rtol=1e-6, atol=1e-9, err_msg=layer)


def test_independent_randomization_matches_quantus(setup):
    model, x, exp = setup
    q = _q(quantus.MPRT(seed=5, layer_order="independent", disable_warnings=True), model, x, exp)
    ours = score("independent_randomization", model, x, exp, similarities=["spearman_abs"], seed=5)
    for layer in list(q)[1:]:
        np.testing.assert_allclose(ours.loc[ours["layer"] == layer, "value"], q[layer], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name, qmetric, params", [
    ("pointing_game", lambda: quantus.PointingGame(disable_warnings=True), {"sign": "positive"}),
    ("relevance_mass", lambda: quantus.RelevanceMassAccuracy(abs=True, disable_warnings=True), {"sign": "absolute"}),
    ("relevance_rank", lambda: quantus.RelevanceRankAccuracy(abs=True, disable_warnings=True), {"sign": "absolute"}),
    ("auroc", lambda: quantus.AUC(disable_warnings=True), {"sign": "signed"}),
    ("sparseness", lambda: quantus.Sparseness(disable_warnings=True), {}),
    ("entropy", lambda: quantus.Complexity(disable_warnings=True), {}),
])
def test_map_only_metrics_match_quantus(setup, name, qmetric, params):
    model, x, exp = setup
    masks = lesion_masks()
    q = np.asarray(_q(qmetric(), model, x, exp, masks=masks), float)
    ours = score(name, model, x, exp, masks=masks, **params)["value"].to_numpy()
    np.testing.assert_allclose(ours, q, rtol=1e-5, atol=1e-7)


def test_topk_iou_from_the_overlap_quantus_reports(setup):
    """Quantus' TopKIntersection is the overlap share o of the top k pixels; we report IoU = ok / (k + |M| - ok)."""
    model, x, exp = setup
    masks = lesion_masks()
    k = 26
    q = np.asarray(_q(quantus.TopKIntersection(k=k, abs=True, disable_warnings=True), model, x, exp, masks=masks))
    iou = score("topk_iou", model, x, exp, masks=masks, topk=k / 256, sign="absolute")["value"].to_numpy()
    area = masks.reshape(4, -1).sum(1).numpy()
    np.testing.assert_allclose(iou, q * k / (k + area - q * k), rtol=1e-6)
    top = np.argsort(-exp.maps.abs().reshape(4, -1).numpy(), axis=1)[:, :k]
    truth = masks.reshape(4, -1).numpy()
    inter = np.take_along_axis(truth, top, 1).sum(1)
    np.testing.assert_allclose(iou, inter / (k + area - inter), rtol=1e-9)


def test_every_metric_with_a_quantus_twin_is_tested():
    """The registry names each metric's Quantus counterpart; this file covers all of them (or says why not)."""
    covered = {"deletion", "faithfulness_correlation", "road", "max_sensitivity", "local_lipschitz",
               "cascading_randomization", "independent_randomization", "pointing_game", "relevance_mass",
               "relevance_rank", "auroc", "sparseness", "entropy", "topk_iou"}
    # infidelity: Quantus' Infidelity perturbs square patches towards a baseline, captum (ours) adds Gaussian
    # noise; sensitivity_max is captum's and draws torch noise. Both are checked by identities in test_evaluation.py.
    different = {"infidelity", "sensitivity_max"}
    assert {n for n, m in METRICS.items() if m.quantus} == covered | different
