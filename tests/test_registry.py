"""One registry helper (xaikit._registry.Registry) behind all six registries: one verb, one lookup error, duplicates
refused everywhere."""
from __future__ import annotations

import pickle

import pytest

from xaikit._registry import Registry
from xaikit.demo import STAGES
from xaikit.errors import ArgumentError, ExplanationError, ModelError, StatsError, XaikitError
from xaikit.evaluation import METRICS
from xaikit.models import ARCHITECTURES
from xaikit.regions.lungs import SEGMENTERS
from xaikit.saliency import METHODS
from xaikit.stats import PROTOCOLS

REGISTRIES = {
    "saliency method": (METHODS, ExplanationError),
    "metric": (METRICS, ArgumentError),
    "architecture": (ARCHITECTURES, ModelError),
    "protocol": (PROTOCOLS, StatsError),
    "lung segmenter": (SEGMENTERS, ArgumentError),
    "demo stage": (STAGES, ArgumentError),
}


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_registry_is_one_helper(kind):
    registry, error = REGISTRIES[kind]
    assert isinstance(registry, Registry) and registry.kind == kind and len(registry) >= 1
    name = next(iter(registry))
    assert registry.lookup(name) is registry[name]
    with pytest.raises(error, match=rf"unknown {kind} 'no-such-thing'\. Known {kind}s: .*{name}") as info:
        registry.lookup("no-such-thing")
    assert isinstance(info.value, XaikitError)
    with pytest.raises(error, match=rf"{kind} '{name}' is registered twice; pick another name"):
        registry.add(name, registry[name])
    assert registry.lookup(name) is registry[name]  # the refused duplicate changed nothing


def test_register_is_the_one_verb_and_entries_come_from_make():
    made = Registry("widget", make=lambda name, fn, **meta: (name, fn, meta))

    @made.register("w", colour="red")
    def widget():
        return 1

    assert widget() == 1 and made.lookup("w") == ("w", widget, {"colour": "red"})
    plain = Registry("gadget")
    with pytest.raises(ArgumentError, match=r"a gadget takes no options \['colour'\]"):
        plain.register("g", colour="red")
    with pytest.raises(ArgumentError, match="non-empty string name"):
        plain.add("", 1)
    with pytest.raises(ArgumentError, match=r"unknown gadget 3\. Known gadgets: \."):
        plain.lookup(3)


def test_a_registry_pickles_with_its_entries_and_its_rules():
    back = pickle.loads(pickle.dumps(PROTOCOLS))
    assert isinstance(back, Registry) and dict(back) == dict(PROTOCOLS) and back.error is StatsError
    with pytest.raises(StatsError, match="registered twice"):
        back.add("nimanui", None)
