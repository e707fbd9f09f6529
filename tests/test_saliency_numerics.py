"""Numerical identities and parity with captum/zennit called directly (float64 tiny networks)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, Occlusion
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlus

from xaikit.saliency import explain

from saliency_helpers import small_densenet, tiny_cnn, tiny_inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def _logit(model, x, idx):
    with torch.no_grad():
        return model(x).gather(1, idx[:, None])[:, 0]


def test_integrated_gradients_completeness():
    model, x = tiny_cnn(), tiny_inputs(3)
    exp = explain(model, x, "integrated_gradients", n_steps=64, keep_raw=True)
    gap = _logit(model, x, exp.targets) - _logit(model, torch.zeros_like(x), exp.targets)
    total = exp.raw.double().sum((1, 2, 3))
    assert torch.allclose(total, gap.float().double(), rtol=1e-2, atol=1e-4)
    assert torch.allclose(exp.maps.double().sum((1, 2)), total, rtol=1e-4)  # "sum" reduction keeps the total


def test_integrated_gradients_on_linear_model_is_gradient_times_input():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(128, 3, bias=False)).double().eval()
    x = tiny_inputs(2)
    ig = explain(model, x, "integrated_gradients", n_steps=3)
    ixg = explain(model, x, "input_x_gradient")
    assert torch.allclose(ig.raw, ixg.raw, atol=1e-6)


def test_lrp_zero_equals_input_times_gradient_on_bias_free_relu_net():
    model, x = tiny_cnn(bias=False), 30 * tiny_inputs(2)  # logits of order 1: stabilizers (1e-6) negligible
    lrp = explain(model, x, "lrp_epsilon", epsilon=1e-12, stabilizer=1e-12)  # epsilon no longer stabilizes the pool
    ixg = explain(model, x, "input_x_gradient")
    assert torch.allclose(lrp.raw, ixg.raw, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["lrp_epsilon", "lrp_zplus"])
def test_lrp_conserves_relevance_on_bias_free_net(method):
    model, x = tiny_cnn(bias=False), 30 * tiny_inputs(3)
    exp = explain(model, x, method, target=0)
    logit = _logit(model, x, exp.targets)
    if method == "lrp_zplus":  # z+ spreads the target score over positive contributions: one sign per image
        assert torch.all(exp.raw * logit.view(-1, 1, 1, 1) >= 0)
    assert torch.allclose(exp.raw.double().sum((1, 2, 3)), logit, rtol=1e-4)


def test_lrp_epsilon_absorbs_relevance_for_large_epsilon():
    model, x = tiny_cnn(bias=False), 30 * tiny_inputs(2)
    small = explain(model, x, "lrp_epsilon", epsilon=1e-9).raw.sum((1, 2, 3)).abs()
    large = explain(model, x, "lrp_epsilon", epsilon=10.0).raw.sum((1, 2, 3)).abs()
    assert torch.all(large < small)


def _gradcam_reference(model, x, idx):
    """Slow Grad-CAM: full Jacobian of the head w.r.t. the feature map, channel weights by spatial mean."""
    maps = []
    for i in range(len(x)):
        act = model.features(x[i : i + 1]).detach()

        def head(a):
            return model.fc(model.flatten(model.pool(a)))[0, idx[i]]

        jac = torch.autograd.functional.jacobian(head, act)
        weights = jac.mean((2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(1, keepdim=True))
        maps.append(F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(maps)


def test_gradcam_matches_slow_reference():
    model, x = tiny_cnn(), tiny_inputs(3)
    exp = explain(model, x, "gradcam", layer="features")
    ref = _gradcam_reference(model, x, exp.targets)
    assert torch.allclose(exp.maps.double(), ref, atol=1e-6)
    assert exp.raw.shape == (3, 1, 8, 8) and exp.reduction == "none"
    assert torch.allclose(exp.raw.clamp_min(0)[:, 0].double(), ref, atol=1e-6)  # raw keeps the signed map


def test_gradcam_auto_layer_and_layer_errors():
    model, x = tiny_cnn(), tiny_inputs(1)
    assert explain(model, x, "gradcam").params["layer"] == "pool"  # last output with a spatial extent
    from xaikit.errors import ModelError

    with pytest.raises(ModelError, match="does not exist"):
        explain(model, x, "gradcam", layer="features.9")


def test_parity_with_captum_integrated_gradients():
    model, x = tiny_cnn(), tiny_inputs(2)
    target = torch.tensor([0, 2])
    exp = explain(model, x, "integrated_gradients", target=target, n_steps=10)
    direct = IntegratedGradients(model).attribute(x, baselines=0.0, target=target, n_steps=10)
    assert torch.allclose(exp.raw.double(), direct, atol=1e-6)


def test_parity_with_captum_occlusion_under_tiny_memory_budget():
    model, x = tiny_cnn(), tiny_inputs(2)
    exp = explain(model, x, "occlusion", target=1, window=3, stride=2, memory_budget=40_000)
    direct = Occlusion(model).attribute(x, sliding_window_shapes=(2, 3, 3), strides=(2, 2, 2), baselines=0.0,
                                        target=1)
    assert exp.params["max_batch"] < 16  # 16 windows: several evaluations
    assert torch.allclose(exp.raw.double(), direct.double(), atol=1e-6)  # captum's occlusion returns float32


def test_parity_with_zennit_epsilon_plus():
    model, x = tiny_cnn(), tiny_inputs(2)
    exp = explain(model, x, "lrp_epsilon_plus", target=1)
    with Gradient(model, EpsilonPlus(epsilon=1e-6)) as attributor:
        out, rel = attributor(x.clone(), attr_output=lambda y: F.one_hot(torch.tensor([1, 1]), 3) * y)
    assert torch.allclose(exp.raw.double(), rel, atol=1e-6)


def test_determinism_and_budget_independence():
    model, x = tiny_cnn(), tiny_inputs(3)
    state = torch.random.get_rng_state()
    a = explain(model, x, "smoothgrad", n_samples=6, seed=3)
    b = explain(model, x, "smoothgrad", n_samples=6, seed=3, memory_budget=60_000)
    c = explain(model, x, "smoothgrad", n_samples=6, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG must be left untouched"
    assert b.params["max_batch"] < a.params["max_batch"]
    assert torch.allclose(a.maps, b.maps, atol=1e-6)
    assert not torch.allclose(a.maps, c.maps)
    zero = explain(model, x, "smoothgrad", n_samples=2, noise_level=0.0)
    assert torch.allclose(zero.raw, explain(model, x, "gradient").raw, atol=1e-6)


def test_random_control_is_seeded_per_image():
    model, x = tiny_cnn(), tiny_inputs(3)
    whole = explain(model, x, "random", image_ids=["a", "b", "c"])
    part = explain(model, x[1:], "random", image_ids=["b", "c"])
    assert torch.equal(whole.maps[1:], part.maps)


def test_densenet_canonizer_keeps_outputs_and_reports_merges():
    from zennit.core import RemovableHandleList

    from xaikit.saliency import DenseNetCanonizer

    model = small_densenet().double()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        handles = RemovableHandleList(DenseNetCanonizer().apply(model))
        try:
            got = model(x)
            merged = [h for h in handles if hasattr(h, "batch_norm")]
        finally:
            handles.remove()
        assert torch.allclose(model(x), ref, atol=0)  # removal restores exactly
    assert torch.allclose(got, ref, atol=1e-10)
    assert len(merged) == 1 + 4  # norm0 + one norm2 per dense layer
    model.float()
    exp = explain(model, x.float(), "lrp_epsilon")
    report = exp.params["canonization"]
    assert report["canonizers"] == ["DenseNetCanonizer"]
    assert "features.norm5" in report["unmerged_batchnorm"] and "features.norm0" in report["merged_batchnorm"]


def test_speed_chunk_stays_within_the_memory_plan():
    from xaikit.saliency import memory

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for largest in (1, 1000, 2**20, 8 * 2**20, 35 * 2**20, 2**31):
        for max_batch in (1, 2, 7, 8, 61, 256, 10_000):
            chunk = memory.speed_chunk(largest, max_batch, cpu)
            assert 1 <= chunk <= max_batch
            assert chunk == min(max_batch, max(memory.CPU_MIN_CHUNK, memory.CPU_TENSOR_BYTES // largest))
            assert memory.speed_chunk(largest, max_batch, cuda) == max_batch  # GPUs: the memory bound
    # the phantom CNN at 128 px (largest activation 16 x 128 x 128 floats, 256 fit 2 GiB): fastest at 8-16 per
    # pass; ResNet-18 at 64 px (64 x 32 x 32 floats): fastest at 32-128
    assert 8 <= memory.speed_chunk(16 * 128 * 128 * 4, 256, cpu) <= 16
    assert 32 <= memory.speed_chunk(64 * 32 * 32 * 4, 750, cpu) <= 128
    model, x = tiny_cnn(), tiny_inputs(3)
    for budget in (None, 60_000, 20_000):
        p = memory.plan(model, x, budget, "test")
        assert 1 <= p.chunk <= p.max_batch
        assert p.copies(3) * 3 <= max(p.chunk, 3)
    assert memory.MemoryPlan(1, 1, 5, 2).chunk == 5 and memory.MemoryPlan(1, 1, 5, 2, chunk=9).chunk == 5


class _BatchSizes:
    """Forward pre-hook recording the batch size of every pass of the model."""

    def __init__(self, model):
        self.sizes: list[int] = []
        self.handle = model.register_forward_pre_hook(lambda m, args: self.sizes.append(len(args[0])))


@pytest.mark.parametrize("name, params", [
    ("integrated_gradients", {"n_steps": 10}), ("smoothgrad", {"n_samples": 7}), ("vargrad", {"n_samples": 5}),
    ("occlusion", {"window": 3, "stride": 2}), ("gradient_shap", {"n_samples": 5, "stdevs": 0.1}),
    ("layer_integrated_gradients", {"n_steps": 6}), ("deeplift_shap", {}),
])
def test_maps_do_not_depend_on_the_speed_chunk(monkeypatch, name, params):
    """Chunks of 1, 2, 3 and the memory bound: the same maps, and no pass holds more than the chunk (or the
    inputs, the least a pass can take) nor more than the memory plan allows."""
    from xaikit.saliency import memory

    model, x = tiny_cnn(), tiny_inputs(3)
    target = torch.tensor([0, 2, 1])
    monkeypatch.setattr(memory, "CPU_TENSOR_BYTES", 1)
    maps = {}
    for floor in (1, 2, 3, 10**9):
        monkeypatch.setattr(memory, "CPU_MIN_CHUNK", floor)
        seen = _BatchSizes(model)
        try:
            exp = explain(model, x, name, target=target, **params)
        finally:
            seen.handle.remove()
        plan = memory.plan(model, x, None, name)
        assert plan.chunk == min(plan.max_batch, floor)
        largest = max(seen.sizes)
        assert largest <= plan.max_batch
        assert largest <= max(plan.chunk, len(x)) * (2 if name == "deeplift_shap" else 1)  # DeepLIFT: x and ref
        maps[floor] = exp.maps
    for floor in (1, 2, 3):
        torch.testing.assert_close(maps[floor], maps[10**9], rtol=1e-6, atol=1e-8)
    if name == "integrated_gradients":  # chunk 1 vs the memory bound: more passes of fewer samples
        direct = IntegratedGradients(model).attribute(x, baselines=0.0, target=target, n_steps=10,
                                                      internal_batch_size=3)
        torch.testing.assert_close(maps[1].double(), direct.sum(1), rtol=1e-6, atol=1e-8)
