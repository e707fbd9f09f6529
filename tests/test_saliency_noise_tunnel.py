"""NoiseTunnel over any method (``explain(..., noise_tunnel=...)``): the mean / mean square / variance of the
method's maps on noisy copies drawn from each image's stream, the target fixed on the clean input."""
from __future__ import annotations

import zlib

import pytest
import torch

from xaikit.errors import ExplanationError
from xaikit.saliency import explain

from saliency_helpers import assert_unchanged, snapshot, tiny_cnn, tiny_inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def _noisy_copies(x: torch.Tensor, ids: list[str], n: int, sigma: float, seed: int = 0) -> list[torch.Tensor]:
    """The tunnel's noise, rebuilt: image i's stream is seed * 1000003 + crc32(id) + 7919, one draw per copy."""
    gens = [torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(i.encode()) + 7_919) for i in ids]
    flat = x.reshape(len(x), -1)
    sd = (sigma * (flat.amax(1) - flat.amin(1))).view(-1, 1, 1, 1)
    return [x + sd * torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype) for g in gens])
            for _ in range(n)]


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("method", ["input_x_gradient", "gradcam", "lrp_epsilon"])
def test_tunnel_is_the_combination_of_the_method_on_noisy_copies(kind, method):
    model, x = tiny_cnn(), tiny_inputs(3)
    ids = ["a", "b", "c"]
    before = snapshot(model)
    with torch.no_grad():
        target = model(x).argmax(1)  # fixed on the clean input
    got = explain(model, x, method, noise_tunnel={"type": kind, "n": 3, "sigma": 0.2}, image_ids=ids)
    maps = torch.stack([explain(model, xn, method, target).maps for xn in _noisy_copies(x, ids, 3, 0.2)])
    ref = {"smoothgrad": maps.mean(0), "smoothgrad_sq": maps.pow(2).mean(0),
           "vargrad": (maps.pow(2).mean(0) - maps.mean(0).pow(2)).clamp_min(0)}[kind]
    if method != "gradcam":  # input-channel maps: the tunnel combines per channel, the channel sum comes after
        raws = torch.stack([explain(model, xn, method, target).raw for xn in _noisy_copies(x, ids, 3, 0.2)])
        ref = {"smoothgrad": raws.mean(0), "smoothgrad_sq": raws.pow(2).mean(0),
               "vargrad": (raws.pow(2).mean(0) - raws.mean(0).pow(2)).clamp_min(0)}[kind].sum(1)
    torch.testing.assert_close(got.maps, ref, rtol=1e-5, atol=1e-6)
    assert got.params["noise_tunnel"] == {"type": kind, "n": 3, "sigma": 0.2}
    assert torch.equal(got.targets, target)
    assert_unchanged(model, before)


def test_zero_noise_gives_the_method_and_batching_does_not_matter():
    model, x = tiny_cnn(), tiny_inputs(3)
    plain = explain(model, x, "integrated_gradients", n_steps=4)
    same = explain(model, x, "integrated_gradients", n_steps=4, noise_tunnel={"n": 2, "sigma": 0.0})
    torch.testing.assert_close(same.maps, plain.maps)
    var = explain(model, x, "gradient", noise_tunnel={"type": "vargrad", "n": 2, "sigma": 0.0})
    assert float(var.maps.abs().max()) == 0
    tunnel = {"n": 2, "sigma": 0.1}
    both = explain(model, x, "rise", noise_tunnel=tunnel, n_masks=4, grid=2, seed=5)
    alone = explain(model, x[1:2], "rise", noise_tunnel=tunnel, n_masks=4, grid=2, seed=5, image_ids=["1"])
    torch.testing.assert_close(both.maps[1:2], alone.maps)


@pytest.mark.parametrize("tunnel, match", [
    ({"type": "smooth"}, r"type='smooth' is not known; use one of \['smoothgrad', 'smoothgrad_sq', 'vargrad'\]"),
    ({"n": 0}, "n=0 must be an integer from 1 to 10000"),
    ({"sigma": -1}, "sigma=-1 must be a finite number >= 0"),
    ({"nt_samples": 4}, "must be a dict with keys among"),
    ("smoothgrad", "must be a dict with keys among"),
])
def test_bad_tunnels_are_refused(tunnel, match):
    with pytest.raises(ExplanationError, match=match):
        explain(tiny_cnn(), tiny_inputs(1), "gradient", noise_tunnel=tunnel)


def test_controls_refuse_the_tunnel():
    with pytest.raises(ExplanationError, match="not defined for the control 'sobel'"):
        explain(tiny_cnn(), tiny_inputs(1), "sobel", noise_tunnel={"n": 2})
