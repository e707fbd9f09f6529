"""Named sets of methods with their settings: ``PRESETS[name] = {label: {"method": ..., **params}}``."""
from __future__ import annotations

__all__ = ["PRESETS"]

_EPS = {"epsilon": 1e-6}

PRESETS: dict[str, dict[str, dict]] = {
    # Sümer et al. 2023, "Explainable AI for medical imaging ... (the 15 methods compared)": zennit gradient
    # family and LRP composites (epsilon 1e-6, ResNet canonizer chosen automatically), captum DeepLift, guided
    # Grad-CAM on the last block, upsampled layer DeepLift, Grad-CAM and 15x15/stride-8 occlusion.
    "sumer2023": {
        "gradient": {"method": "gradient"},
        "smoothgrad": {"method": "smoothgrad", "noise_level": 0.1, "n_samples": 20},
        "integrated_gradients": {"method": "integrated_gradients", "n_steps": 20},
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
        "gradcam": {"method": "gradcam"},
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
