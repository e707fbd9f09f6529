"""The methods added for issue 24 against their references: captum's layer methods, pytorch-grad-cam's CAMs (the
``grad-cam`` package, a test-only dependency), direct implementations of the RISE, GradientSHAP / Expected
Gradients and contrastive-excitation-backprop formulas, and the identities the methods have (completeness,
efficiency, conservation), on a torchvision ResNet-18 (random weights) and a tiny 3-D CNN."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum._utils.models.linear_model import SkLearnLinearRegression
from captum.attr import (
    GradientShap,
    InternalInfluence,
    LayerActivation,
    LayerConductance,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    Lime,
)
from torch import nn

from xaikit.saliency import explain
from xaikit.saliency.captum_methods import superpixels
from xaikit.saliency.sampling import rise_masks, shap_draws

from saliency_helpers import randomize_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")


@functools.lru_cache(maxsize=None)
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=3).eval()


def images(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def cnn3d() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.MaxPool3d(2),
                          nn.Conv3d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                          nn.Linear(6, 3))
    return randomize_batchnorm(model).double().eval()


def volumes(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def up(t: torch.Tensor, size) -> torch.Tensor:
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(t, size=tuple(size), mode=mode, align_corners=False)[:, 0]


# --- captum layer methods -------------------------------------------------------------------------------------
CAPTUM = {
    "layer_activation": lambda m, layer, x, t: LayerActivation(m, layer).attribute(x).mean(1, keepdim=True),
    "layer_conductance": lambda m, layer, x, t:
        LayerConductance(m, layer).attribute(x, 0.0, target=t, n_steps=8).sum(1, True),
    "internal_influence": lambda m, layer, x, t:
        InternalInfluence(m, layer).attribute(x, 0.0, target=t, n_steps=8).sum(1, True),
    "layer_gradient_x_activation": lambda m, layer, x, t:
        LayerGradientXActivation(m, layer).attribute(x, t).sum(1, True),
    "layer_integrated_gradients": lambda m, layer, x, t:
        LayerIntegratedGradients(m, layer).attribute(x, 0.0, target=t, n_steps=8).sum(1, True),
}
STEPS = {"layer_conductance": {"n_steps": 8}, "internal_influence": {"n_steps": 8},
         "layer_integrated_gradients": {"n_steps": 8}}


@pytest.mark.parametrize("name", sorted(CAPTUM))
@pytest.mark.parametrize("dims", [2, 3])
def test_layer_methods_equal_captum(name, dims):
    model, x, layer = (resnet(), images(2, 32), "layer3") if dims == 2 else (cnn3d(), volumes(), "4")
    target = torch.tensor([1, 2])
    exp = explain(model, x, name, target, layer=layer, **STEPS.get(name, {}))
    ref = up(CAPTUM[name](model, model.get_submodule(layer), x, target).detach(), x.shape[2:])
    torch.testing.assert_close(exp.maps.double(), ref.double(), rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_layer_gradient_x_activation_is_hirescam():
    x = images(2, 32)
    a = explain(resnet(), x, "layer_gradient_x_activation", layer="layer2")
    b = explain(resnet(), x, "hirescam", layer="layer2")
    torch.testing.assert_close(a.maps, b.maps)


@pytest.mark.parametrize("name", ["layer_conductance", "layer_integrated_gradients"])
def test_layer_path_methods_are_complete(name):
    """Summed over the layer, conductance and layer IG equal f(x) - f(baseline) (up to the quadrature error)."""
    model, x = cnn3d(), volumes()
    leaf = model[4]
    with torch.no_grad():
        gap = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    attr = CAPTUM[name](model, leaf, x, 1)  # the layer map before upsampling: our method's own reference
    ours = explain(model, x, name, 1, layer="4", n_steps=8).maps
    torch.testing.assert_close(ours.double(), up(attr.detach(), x.shape[2:]).double(), rtol=1e-4, atol=1e-8)
    fine = {"layer_conductance": LayerConductance, "layer_integrated_gradients": LayerIntegratedGradients}[name]
    total = fine(model, leaf).attribute(x, 0.0, target=1, n_steps=200).flatten(1).sum(1)
    torch.testing.assert_close(total, gap, rtol=2e-2, atol=1e-3 * float(gap.abs().max()))


# --- pytorch-grad-cam -----------------------------------------------------------------------------------------
def _minmax(m: torch.Tensor) -> np.ndarray:
    m = m.double().numpy()
    axes = tuple(range(1, m.ndim))
    lo, hi = m.min(axes, keepdims=True), m.max(axes, keepdims=True)
    return (m - lo) / (1e-7 + hi - lo)


def _gradcam_classes() -> dict:
    cam = pytest.importorskip("pytorch_grad_cam")
    return {"xgradcam": cam.XGradCAM, "eigencam": cam.EigenCAM, "eigengradcam": cam.EigenGradCAM,
            "gradcam_elementwise": cam.GradCAMElementWise, "ablationcam": cam.AblationCAM, "fullgrad": cam.FullGrad}


@pytest.mark.parametrize("name", ["xgradcam", "eigencam", "eigengradcam", "gradcam_elementwise", "ablationcam",
                                  "fullgrad"])
def test_cams_equal_pytorch_grad_cam_on_resnet18(name, monkeypatch):
    """The package's full pipeline (its cv2 resizing and min-max scaling) against ours scaled the same way.

    Eigen-CAMs: the package's sign-corrected projection (``get_2d_projection_with_sign_correction``), which ours
    uses; its plain ``get_2d_projection`` leaves the SVD's sign to LAPACK, so its map may be the negative one.
    """
    import pytorch_grad_cam.eigen_cam  # noqa: E401
    import pytorch_grad_cam.eigen_grad_cam
    from pytorch_grad_cam.utils import svd_on_activations
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    fixed = svd_on_activations.get_2d_projection_with_sign_correction
    monkeypatch.setattr(pytorch_grad_cam.eigen_cam, "get_2d_projection", fixed)
    monkeypatch.setattr(pytorch_grad_cam.eigen_grad_cam, "get_2d_projection", fixed)
    model, x = resnet(), images(2, 32 if name == "ablationcam" else 64)
    layer = {} if name == "fullgrad" else {"layer": "layer3"}
    ours = explain(model, x, name, 1, **layer)
    kwargs = {"batch_size": 256} if name == "ablationcam" else {}
    with _gradcam_classes()[name](model=model, target_layers=[] if name == "fullgrad" else [model.layer3],
                                  **kwargs) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(1)] * 2)
    np.testing.assert_allclose(_minmax(ours.maps), theirs, atol=1e-4)


def _layer_acts_grads(model, layer, x, target):
    store = {}
    handle = layer.register_forward_hook(lambda m, a, o: store.setdefault("act", o))
    out = model(x)
    handle.remove()
    (grad,) = torch.autograd.grad(out[:, target].sum(), store["act"])
    return store["act"].detach().numpy(), grad.numpy()


@pytest.mark.parametrize("name", ["xgradcam", "eigencam", "eigengradcam", "gradcam_elementwise"])
def test_cams_equal_pytorch_grad_cam_formulas_on_volumes(name):
    """pytorch-grad-cam's weight/projection formulas are n-D; its pipeline is 2-D: compare at the layer."""
    cams = _gradcam_classes()
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction as project

    model, x = cnn3d(), volumes()
    act, grad = _layer_acts_grads(model, model[4], x, 2)
    if name == "xgradcam":  # the formulas use nothing of the instance (``self`` is None here)
        weights = cams[name].get_cam_weights(None, None, None, None, act, grad)
        ref = (weights[:, :, None, None, None] * act).sum(1)
    elif name == "gradcam_elementwise":
        ref = cams[name].get_cam_image(None, None, None, None, act, grad, False)
    else:
        ref = project(act if name == "eigencam" else grad * act)
    ref = up(torch.from_numpy(np.maximum(ref, 0)).double()[:, None], x.shape[2:])
    ours = explain(model, x, name, 2, layer="4").maps
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))


def test_ablationcam_on_volumes_matches_the_papers_formula():
    """(y - y_k) / y with channel k of the layer set to zero, by hand, one forward per channel."""
    model, x = cnn3d(), volumes(1)
    layer = model[5]  # ReLU output: zero is the paper's ablation value
    with torch.no_grad():
        act = layer(model[:5](x))
        y = model[6:](act)[0, 0]
        weights = []
        for k in range(act.shape[1]):
            ablated = act.clone()
            ablated[:, k] = 0
            weights.append((y - model[6:](ablated)[0, 0]) / y)
    ref = (torch.stack(weights).view(1, -1, 1, 1, 1) * act).sum(1, keepdim=True).clamp_min(0)
    ours = explain(model, x, "ablationcam", 0, layer="5").maps
    torch.testing.assert_close(ours.double(), up(ref, x.shape[2:]), rtol=1e-5, atol=1e-7)


def test_fullgrad_terms_are_complete():
    """Srinivas & Fleuret's decomposition: f(x) = grad_x f . x + sum over bias layers of grad_b f . b (ReLU net)."""
    from xaikit.saliency.engine import MethodContext
    from xaikit.saliency.fullgrad import full_gradients

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 5, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(5, 3, bias=False)).double().eval()
    x = volumes()
    ctx = MethodContext(model=model, head=model, inputs=x, spec=_index_spec([2, 0]), layer=None, memory=None,
                        seed=0, index=torch.tensor([0, 1]))
    grad, pairs = full_gradients(ctx)
    total = (grad * x).flatten(1).sum(1)
    for g, b in pairs:
        total = total + (g * b.view(1, -1, 1, 1, 1)).flatten(1).sum(1)
    with torch.no_grad():
        logits = model(x)[torch.arange(2), torch.tensor([2, 0])]
    torch.testing.assert_close(total, logits)


def _index_spec(idx):
    from xaikit.saliency.targets import TargetSpec

    return TargetSpec("index", torch.tensor(idx))


# --- sampling methods: direct formulas with the same draws ----------------------------------------------------
def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def _stream(image_id: str) -> int:
    import zlib

    return zlib.crc32(image_id.encode())


def test_rise_is_the_papers_formula_with_its_masks():
    """S = sum_k softmax(f(x * M_k))_c M_k / (N p), masks rebuilt from the image's stream, one forward per mask."""
    model, x = resnet(), images(2, 32)
    exp = explain(model, x, "rise", 2, n_masks=12, grid=4, p=0.5, seed=3, image_ids=["a", "b"])
    for i, name in enumerate("ab"):
        masks = rise_masks(_generator(3, _stream(name)), 12, (32, 32), 4, 0.5)
        assert masks.shape == (12, 1, 32, 32) and 0 <= masks.min() and masks.max() <= 1 + 1e-6
        with torch.no_grad():
            ref = sum(torch.softmax(model(x[i : i + 1] * m), 1)[0, 2] * m[0] for m in masks) / (12 * 0.5)
        torch.testing.assert_close(exp.maps[i], ref, rtol=1e-5, atol=1e-6)


def test_rise_masks_keep_the_cell_probability_and_volumes_work():
    masks = rise_masks(torch.Generator().manual_seed(0), 400, (8, 8, 8), 3, 0.3)
    assert masks.shape == (400, 1, 8, 8, 8)
    assert abs(float(masks.mean()) - 0.3) < 0.03
    exp = explain(cnn3d(), volumes(), "rise", 0, n_masks=6, grid=2)
    assert exp.maps.shape == (2, 8, 8, 8) and torch.isfinite(exp.maps).all()


def test_gradient_shap_equals_captum_on_a_linear_model_and_does_not_depend_on_batching():
    """On a linear model the path position does not matter: captum's GradientShap (same references) agrees."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)).double().eval()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    ours = explain(model, x, "gradient_shap", 1, n_samples=64)
    # every sample uses zeros or the shared noise reference: the mean over the drawn references is exact here
    refs = torch.cat([torch.zeros(1, 3, 8, 8, dtype=torch.float64),
                      torch.randn(1, 3, 8, 8, generator=_generator(0, -1), dtype=torch.float64)])
    counts = torch.stack([torch.bincount(shap_draws(_generator(0, _stream(str(i))), 64, 2)[0], minlength=2)
                          for i in range(3)]).double() / 64
    mean_ref = (counts[:, :, None, None, None] * refs[None]).sum(1)
    w = model[1].weight[1].view(3, 8, 8)
    torch.testing.assert_close(ours.raw.double(), ((x - mean_ref) * w).float().double(), rtol=1e-5, atol=1e-6)
    captum = GradientShap(model).attribute(x, baselines=torch.zeros(1, 3, 8, 8, dtype=torch.float64), target=1)
    alone = explain(model, x, "expected_gradients", 1, references=torch.zeros(3, 8, 8, dtype=torch.float64))
    torch.testing.assert_close(alone.raw.double(), captum.float().double(), rtol=1e-5, atol=1e-6)
    one = explain(model, x[1:2], "gradient_shap", 1, n_samples=64, image_ids=["1"])
    torch.testing.assert_close(one.maps, ours.maps[1:2])


def test_expected_gradients_is_the_formula_with_its_draws_on_resnet18():
    """mean_k (x - b_k) * grad f(b_k + alpha_k (x - b_k)), references and alphas from the image's stream."""
    model, x = resnet(), images(1, 32)
    refs = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    exp = explain(model, x, "expected_gradients", 0, n_samples=5, references=refs, image_ids=["img"])
    idx, alpha = shap_draws(_generator(0, _stream("img")), 5, 4)
    total = torch.zeros_like(x)
    for j, a in zip(idx, alpha):
        point = (refs[j] + float(a) * (x[0] - refs[j]))[None].requires_grad_(True)
        (g,) = torch.autograd.grad(model(point)[0, 0], point)
        total += (x - refs[j]) * g
    torch.testing.assert_close(exp.raw, total / 5, rtol=1e-4, atol=1e-6)


def test_layer_gradient_shap_equals_captum_when_the_draws_do_not_matter():
    """One reference (zeros twice) and a layer followed only by linear maps: captum's LayerGradientShap agrees."""
    from captum.attr import LayerGradientShap

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 2)).double().eval()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    ours = explain(model, x, "layer_gradient_shap", 1, layer="2", n_samples=6)
    refs = torch.cat([torch.zeros(1, 3, 8, 8, dtype=torch.float64),
                      torch.randn(1, 3, 8, 8, generator=_generator(0, -1), dtype=torch.float64)])
    parts = []
    for i in range(2):
        counts = torch.bincount(shap_draws(_generator(0, _stream(str(i))), 6, 2)[0], minlength=2).double() / 6
        lgs = [LayerGradientShap(model, model[2]).attribute(x[i : i + 1], refs[k : k + 1], target=1, n_samples=2)
               for k in range(2)]
        parts.append(sum(c * a for c, a in zip(counts, lgs)).sum(1))
    torch.testing.assert_close(ours.maps.double(), torch.cat(parts).float().double(), rtol=1e-5, atol=1e-6)


def test_shapley_value_sampling_is_efficient_and_equals_captum():
    """Each ordering's marginal contributions telescope: superpixel attributions sum to f(x) - f(0)."""
    from captum.attr import ShapleyValueSampling

    model, x = resnet(), images(1, 32)
    exp = explain(model, x, "shapley_value_sampling", 2, n_segments=6, n_samples=2, image_ids=["s"])
    with torch.no_grad():
        gap = model(x)[0, 2] - model(torch.zeros_like(x))[0, 2]
    mask = superpixels(x, 6, 10.0)
    per_segment = torch.stack([exp.raw[0][:, mask[0, 0] == s][:, :1].sum() for s in mask.unique()])
    torch.testing.assert_close(per_segment.sum() / 3, gap, rtol=1e-4, atol=1e-5)  # 3 channels share a value
    torch.manual_seed(1_000_003 * 0 + _stream("s"))
    ref = ShapleyValueSampling(model).attribute(x, 0.0, target=2, feature_mask=mask, n_samples=2)
    torch.testing.assert_close(exp.raw, ref, rtol=1e-5, atol=1e-6)


def test_linear_approximation_is_captum_lime_with_a_linear_surrogate():
    model, x = resnet(), images(1, 32)
    exp = explain(model, x, "linear_approximation", 1, n_segments=8, n_samples=30, seed=4)
    torch.manual_seed(4)
    ref = Lime(model, interpretable_model=SkLearnLinearRegression()).attribute(
        x, target=1, feature_mask=superpixels(x, 8, 10.0), n_samples=30, perturbations_per_eval=64)
    torch.testing.assert_close(exp.raw, ref, rtol=1e-4, atol=1e-6)


# --- contrastive excitation backprop ----------------------------------------------------------------------------
def _mwp(weights: list[torch.Tensor], acts: list[torch.Tensor], top: torch.Tensor) -> torch.Tensor:
    """Zhang et al.'s marginal winning probability, layer by layer: P(a_j) = sum_i a_j w+_ij / (sum_j a_j w+_ij) P(a_i).

    The denominators carry zennit's stabilizer (+1e-6, the sign of z): a unit whose z is tiny (1e-5 here) would
    otherwise differ by a few per cent."""
    p = top
    for w, a in zip(reversed(weights), reversed(acts)):
        z = a @ w.clamp_min(0).T
        p = a * ((p / (z + ((z == 0).double() + z.sign()) * 1e-6)) @ w.clamp_min(0))
    return p


def test_contrastive_excitation_backprop_is_the_papers_formula():
    """c-MWP = MWP(W_top) - MWP(-W_top), from explicit matrices of a ReLU MLP."""
    torch.manual_seed(0)
    l1, l2, l3 = nn.Linear(12, 8, bias=False), nn.Linear(8, 6, bias=False), nn.Linear(6, 3, bias=False)
    model = nn.Sequential(nn.Flatten(), l1, nn.ReLU(), l2, nn.ReLU(), l3).double().eval()
    x = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    flat = x.flatten(1)
    h1 = torch.relu(flat @ l1.weight.double().T)
    h2 = torch.relu(h1 @ l2.weight.double().T)
    top = F.one_hot(torch.tensor([1, 2]), 3).double()
    ws = [l1.weight.double(), l2.weight.double()]
    mwp = _mwp(ws + [l3.weight.double()], [flat, h1, h2], top)
    dual = _mwp(ws + [-l3.weight.double()], [flat, h1, h2], top)
    exp = explain(model, x, "contrastive_excitation_backprop", torch.tensor([1, 2]), reduction="sum")
    torch.testing.assert_close(exp.raw.double().flatten(1), (mwp - dual).float().double(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, params", [
    ("gradient_shap", {"n_samples": 3, "stdevs": 0.1}), ("expected_gradients", {"n_samples": 3}),
    ("layer_gradient_shap", {"n_samples": 3, "stdevs": 0.1}), ("rise", {"n_masks": 6, "grid": 2}),
    ("shapley_value_sampling", {"n_samples": 1, "n_segments": 4}),
])
def test_random_methods_draw_from_per_image_streams(name, params):
    """An image's map does not depend on its batch, the memory budget or the global torch / numpy RNG state."""
    from saliency_helpers import tiny_cnn, tiny_inputs

    model, x = tiny_cnn().float(), tiny_inputs(3).float()
    torch.manual_seed(11)
    np.random.seed(11)
    together = explain(model, x, name, **params)
    torch.manual_seed(99)
    np.random.seed(99)
    alone = explain(model, x[2:], name, image_ids=["2"], memory_budget=8_000, **params)  # one sample per pass
    torch.testing.assert_close(alone.maps, together.maps[2:], rtol=1e-5, atol=1e-7)


def test_explain_many_passes_the_noise_tunnel_on():
    from xaikit.saliency import explain_many

    from saliency_helpers import tiny_cnn, tiny_inputs

    model, x = tiny_cnn().float(), tiny_inputs(2).float()
    tunnel = {"type": "vargrad", "n": 2, "sigma": 0.1}
    many = explain_many(model, x, {"nt": {"method": "gradcam", "noise_tunnel": tunnel}}, progress=False)
    torch.testing.assert_close(many["nt"].maps, explain(model, x, "gradcam", noise_tunnel=tunnel).maps)
