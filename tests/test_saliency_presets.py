"""Presets for people arriving from TorchEsegeta, pytorch-grad-cam and iNNvestigate: every entry names a registered
method with parameters it accepts; ``innvestigate(name, **kwargs)`` sets the analyzer's own keyword arguments."""
from __future__ import annotations

import pytest
import torch

from xaikit.errors import ExplanationError
from xaikit.saliency import METHODS, PRESETS, explain, innvestigate

from saliency_helpers import tiny_cnn, tiny_inputs


@pytest.mark.parametrize("preset", ["torchesegeta", "pytorch_grad_cam", "innvestigate"])
def test_every_entry_is_a_method_with_its_parameters(preset):
    for label, spec in PRESETS[preset].items():
        info = METHODS[spec["method"]]
        assert set(spec) - {"method"} <= set(info.defaults), label
    if preset == "pytorch_grad_cam":
        assert {METHODS[s["method"]].family for s in PRESETS[preset].values()} <= {"cam", "gradient"}


def test_innvestigate_keywords_set_the_nested_rules():
    assert innvestigate("lrp.epsilon", epsilon=0.1)["rules"] == {"linear": ("epsilon", {"epsilon": 0.1})}
    assert PRESETS["innvestigate"]["lrp.epsilon"]["rules"]["linear"][1]["epsilon"] == 1e-7  # the table is untouched
    b = innvestigate("lrp.sequential_preset_b", epsilon=0.2, alpha=3, beta=2)
    assert b["rules"] == {"conv": ("alpha_beta", {"alpha": 3.0, "beta": 2.0}), "dense": ("epsilon", {"epsilon": 0.2})}
    assert innvestigate("integrated_gradients", steps=32, reference_inputs=0.5)["n_steps"] == 32
    model, x = tiny_cnn(), tiny_inputs(2)
    spec = innvestigate("lrp.epsilon", epsilon=0.1)
    by_hand = {**PRESETS["innvestigate"]["lrp.epsilon"], "rules": {"linear": ("epsilon", {"epsilon": 0.1})}}
    got = explain(model, x, **spec)
    assert torch.equal(got.raw, explain(model, x, **by_hand).raw)
    assert not torch.equal(got.raw, explain(model, x, **PRESETS["innvestigate"]["lrp.epsilon"]).raw)


@pytest.mark.parametrize("call, match", [
    (lambda: innvestigate("gradient", epsilon=0.1), r"innvestigate\('gradient'\): no keyword 'epsilon'.*no keyword"),
    (lambda: innvestigate("lrp.z", epsilon=0.1), r"no keyword 'epsilon' for this analyzer; it takes \[\]|no keyword"),
    (lambda: innvestigate("lrp.epsilon", steps=3), r"it takes \['epsilon'\]"),
    (lambda: innvestigate("lrp.nope"), "not an iNNvestigate analyzer xaikit has"),
])
def test_innvestigate_refuses_keywords_the_analyzer_lacks(call, match):
    with pytest.raises(ExplanationError, match=match):
        call()
