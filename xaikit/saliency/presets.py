"""Named sets of methods with their settings: ``PRESETS[name] = {label: {"method": ..., **params}}``.

``PRESETS["torchesegeta"]`` and ``PRESETS["pytorch_grad_cam"]`` map the names users of TorchEsegeta (Chatterjee et
al. 2022) and pytorch-grad-cam know to xaikit's methods; :func:`innvestigate` gives one iNNvestigate analyzer's
spec with that analyzer's own keyword arguments (``epsilon=0.1``, ``steps=32``).
"""
from __future__ import annotations

import copy
from typing import Any

from ..errors import ExplanationError

__all__ = ["PRESETS", "innvestigate"]

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
    # TorchEsegeta's interpretability methods (its captum, pytorch-cnn-visualizations, TorchRay and LIME wrappers),
    # by the names its configuration uses, each on xaikit's nearest method with that method's defaults. Layer
    # methods take layer=... at explain(); "Linear Approximation" is TorchRay's linear surrogate (LIME, linear).
    "torchesegeta": {
        "Saliency": {"method": "gradient"},
        "Vanilla Backprop": {"method": "gradient"},
        "Input X Gradient": {"method": "input_x_gradient"},
        "Integrated Gradients": {"method": "integrated_gradients"},
        "Smooth Grad": {"method": "smoothgrad"},
        "Gradient SHAP": {"method": "gradient_shap"},
        "DeepLift": {"method": "deeplift"},
        "DeepLift SHAP": {"method": "deeplift_shap"},
        "Guided Backprop": {"method": "guided_backprop"},
        "Deconvolution": {"method": "deconvnet"},
        "Guided GradCAM": {"method": "guided_gradcam"},
        "GradCAM": {"method": "gradcam"},
        "Score-CAM": {"method": "scorecam"},
        "Occlusion": {"method": "occlusion"},
        "Feature Ablation": {"method": "feature_ablation"},
        "Shapley Value Sampling": {"method": "shapley_value_sampling"},
        "Lime": {"method": "lime"},
        "Kernel SHAP": {"method": "kernel_shap"},
        "Layer Activation": {"method": "layer_activation"},
        "Layer Conductance": {"method": "layer_conductance"},
        "Internal Influence": {"method": "internal_influence"},
        "Layer Gradient X Activation": {"method": "layer_gradient_x_activation"},
        "Layer GradientSHAP": {"method": "layer_gradient_shap"},
        "Layer DeepLift": {"method": "layer_deeplift"},
        "Layer Integrated Gradients": {"method": "layer_integrated_gradients"},
        "Excitation Backprop": {"method": "excitation_backprop", "relevance_init": "one_hot"},
        "Contrastive Excitation Backprop": {"method": "contrastive_excitation_backprop"},
        "RISE": {"method": "rise"},
        "Linear Approximation": {"method": "linear_approximation"},
    },
    # pytorch-grad-cam 1.5's CAM classes by class name. Its maps are ReLU'd and min-max scaled for display; xaikit
    # keeps them unscaled (tests scale ours the same way and match the package to 1e-4). FullGrad ignores the layer.
    "pytorch_grad_cam": {
        "GradCAM": {"method": "gradcam"},
        "HiResCAM": {"method": "hirescam"},
        "GradCAMPlusPlus": {"method": "gradcam_pp"},
        "XGradCAM": {"method": "xgradcam"},
        "LayerCAM": {"method": "layercam"},
        "ScoreCAM": {"method": "scorecam"},
        "AblationCAM": {"method": "ablationcam"},
        "EigenCAM": {"method": "eigencam"},
        "EigenGradCAM": {"method": "eigengradcam"},
        "GradCAMElementWise": {"method": "gradcam_elementwise"},
        "FullGrad": {"method": "fullgrad"},
        "GuidedBackpropReLUModel": {"method": "guided_backprop"},
    },
}

#: iNNvestigate keyword arguments accepted by :func:`innvestigate`, per kind of analyzer.
_INN_KWARGS = {
    "epsilon": "the epsilon rule's epsilon (lrp.epsilon*, the dense layers of lrp.sequential_preset_*)",
    "alpha": "alpha of the alpha-beta rule (lrp.alpha_*_beta_*, lrp.sequential_preset_*)",
    "beta": "beta of the alpha-beta rule",
    "steps": "integrated_gradients: number of steps",
    "reference_inputs": "integrated_gradients: the constant baseline (a number)",
}


def innvestigate(name: str, **kwargs: Any) -> dict:
    """The spec of iNNvestigate 2.1.2 analyzer ``name`` with that analyzer's own keyword arguments applied.

    ``PRESETS["innvestigate"][name]`` holds the analyzer with its defaults, its LRP rules nested per layer kind;
    this sets ``epsilon``, ``alpha``/``beta``, ``steps`` or ``reference_inputs`` where the analyzer has them, so a
    call reads like iNNvestigate's ``create_analyzer(name, model, epsilon=0.1)``.

    Examples
    --------
    >>> from xaikit.saliency import innvestigate
    >>> innvestigate("lrp.epsilon", epsilon=0.1)["rules"]
    {'linear': ('epsilon', {'epsilon': 0.1})}
    >>> innvestigate("integrated_gradients", steps=32)["n_steps"]
    32
    """
    table = PRESETS["innvestigate"]
    if name not in table:
        raise ExplanationError(f"innvestigate: {name!r} is not an iNNvestigate analyzer xaikit has; known: "
                               f"{sorted(table)}.")
    spec = copy.deepcopy(table[name])
    for key, value in kwargs.items():
        if not _apply(spec, key, value):
            usable = [k for k in _INN_KWARGS if _apply(copy.deepcopy(table[name]), k, 1.0)]
            raise ExplanationError(f"innvestigate({name!r}): no keyword {key!r} for this analyzer; it takes "
                                   f"{usable or 'no keyword arguments'}.")
    return spec


def _apply(spec: dict, key: str, value: Any) -> bool:
    """Set iNNvestigate keyword ``key`` in ``spec``; False when the analyzer has no such parameter."""
    if key == "steps" and spec["method"] == "integrated_gradients":
        spec["n_steps"] = int(value)
        return True
    if key == "reference_inputs" and spec["method"] == "integrated_gradients":
        spec["baseline"] = float(value)
        return True
    rule = {"epsilon": "epsilon", "alpha": "alpha_beta", "beta": "alpha_beta"}.get(key)
    hits = [sel for sel, r in spec.get("rules", {}).items() if isinstance(r, tuple) and r[0] == rule]
    for sel in hits:
        spec["rules"][sel] = (rule, {**spec["rules"][sel][1], key: float(value)})
    return bool(hits)
