"""Named sets of methods with their settings: ``PRESETS[name] = {label: {"method": ..., **params}}``."""
from __future__ import annotations

__all__ = ["PRESETS"]

_EPS = {"epsilon": 1e-6}

# iNNvestigate 2.1.2 (Alber et al. 2019): relevance starts at one-hot x logit, every division but epsilon's is
# its safe_divide (exact zeros -> Keras epsilon 1e-7), sums/average pooling use the z-rule, ReLUs pass,
# max pooling routes to the arg-max, conv/dense layers get the analyzer's rule (see xaikit.saliency.rules).
_INN = {"method": "lrp", "stabilizer": 1e-7, "stabilizer_kind": "zero", "relevance_init": "logit"}


def _inn(rules: dict, bias: bool = True) -> dict:
    return {**_INN, "rules": rules, "bias": bias}


_A1B0, _A2B1 = ("alpha_beta", {"alpha": 1, "beta": 0}), ("alpha_beta", {"alpha": 2, "beta": 1})
_DENSE_EPS = ("epsilon", {"epsilon": 0.1})

PRESETS: dict[str, dict[str, dict]] = {
    # Sümer et al. 2023, "Explainable AI for medical imaging ... (the 15 methods compared)": zennit gradient
    # family and LRP composites (epsilon 1e-6, ResNet canonizer chosen automatically), captum DeepLift, guided
    # Grad-CAM on the last block, upsampled layer DeepLift, Grad-CAM and 15x15/stride-8 occlusion. The paper's
    # definitions where they differ from the methods' defaults: zennit's SmoothGrad (the last of the 20 samples
    # noise-free) and IntegratedGradients (right Riemann sum, 20 steps, zero baseline); Grad-CAM as |CAM| with
    # each map scaled to total mass 1 (the sum of |A_c| over pixels).
    "sumer2023": {
        "gradient": {"method": "gradient"},
        "smoothgrad": {"method": "smoothgrad", "noise_level": 0.1, "n_samples": 20, "clean_sample": True},
        "integrated_gradients": {"method": "integrated_gradients", "n_steps": 20, "integration": "riemann_right",
                                 "baseline": 0.0},
        "guided_backprop": {"method": "guided_backprop"},
        "excitation_backprop": {"method": "excitation_backprop"},
        "deconvnet": {"method": "deconvnet"},
        "lrp_epsilon_plus": {"method": "lrp_epsilon_plus", **_EPS},
        "lrp_epsilon_plus_flat": {"method": "lrp_epsilon_plus_flat", **_EPS},
        "lrp_epsilon_alpha2_beta1": {"method": "lrp_epsilon_alpha2_beta1", **_EPS},
        "lrp_epsilon_alpha2_beta1_flat": {"method": "lrp_epsilon_alpha2_beta1_flat", **_EPS},
        "deeplift": {"method": "deeplift"},
        "guided_gradcam": {"method": "guided_gradcam"},
        "layer_deeplift": {"method": "layer_deeplift"},
        "gradcam": {"method": "gradcam", "rectify": "abs", "normalize": "sum"},
        "occlusion": {"method": "occlusion", "window": 15, "stride": 8, "baseline": 0.0},
    },
    # A fast first look: two gradient maps, a short path integral, a CAM, one LRP composite and a control.
    "quick": {
        "gradient": {"method": "gradient"},
        "integrated_gradients": {"method": "integrated_gradients", "n_steps": 16},
        "smoothgrad": {"method": "smoothgrad", "n_samples": 8, "noise_level": 0.1},
        "gradcam": {"method": "gradcam"},
        "lrp_epsilon_plus": {"method": "lrp_epsilon_plus", **_EPS},
        "sobel": {"method": "sobel"},
    },
    # iNNvestigate 2.1.2's analyzers with their default parameters, keyed by its names (docs/coming_from.md).
    # "lrp.epsilon_IB" is 2.1.2's lrp.epsilon with bias=False (1.x's LRPEpsilonIgnoreBias). BatchNorm: xaikit
    # merges it into the preceding conv (canonizer) where iNNvestigate has its own BatchNorm rules.
    "innvestigate": {
        "gradient": {"method": "gradient"},
        "input_t_gradient": {"method": "input_x_gradient"},
        "deconvnet": {"method": "deconvnet", "relevance_init": "logit"},
        "guided_backprop": {"method": "guided_backprop", "relevance_init": "logit"},
        "integrated_gradients": {"method": "integrated_gradients", "n_steps": 64, "integration": "riemann_left",
                                 "baseline": 0.0},
        "lrp.z": _inn({"linear": "z"}),
        "lrp.epsilon": _inn({"linear": ("epsilon", {"epsilon": 1e-7})}),
        "lrp.epsilon_IB": _inn({"linear": ("epsilon", {"epsilon": 1e-7})}, bias=False),
        "lrp.w_square": _inn({"linear": "wsquare"}),
        "lrp.flat": _inn({"linear": "flat"}),
        "lrp.alpha_1_beta_0": _inn({"linear": _A1B0}),
        "lrp.alpha_1_beta_0_IB": _inn({"linear": _A1B0}, bias=False),
        "lrp.alpha_2_beta_1": _inn({"linear": _A2B1}),
        "lrp.alpha_2_beta_1_IB": _inn({"linear": _A2B1}, bias=False),
        "lrp.z_plus": _inn({"linear": "zplus"}),
        "lrp.z_plus_fast": _inn({"linear": "zplus_fast"}),
        "lrp.sequential_preset_a": _inn({"conv": _A1B0, "dense": _DENSE_EPS}),
        "lrp.sequential_preset_b": _inn({"conv": _A2B1, "dense": _DENSE_EPS}),
        "lrp.sequential_preset_a_flat": _inn({"first": "flat", "conv": _A1B0, "dense": _DENSE_EPS}),
        "lrp.sequential_preset_b_flat": _inn({"first": "flat", "conv": _A2B1, "dense": _DENSE_EPS}),
    },
    # Volumes (N x C x D x H x W): gradient, a short path integral, Grad-CAM (trilinear), one LRP composite and
    # occlusion with 8^3 cubes (stride 4: 343 windows on a 32^3 input), for notebook 07 and the demo.
    "volume": {
        "gradient": {"method": "gradient"},
        "integrated_gradients": {"method": "integrated_gradients", "n_steps": 16},
        "gradcam": {"method": "gradcam"},
        "lrp_epsilon_plus": {"method": "lrp_epsilon_plus", **_EPS},
        "occlusion": {"method": "occlusion", "window": 8, "stride": 4, "baseline": 0.0},
    },
}
