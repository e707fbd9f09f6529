"""The saliency registry states each method's defaults once (the function's signature) and its metadata matches
every registered function; registration refuses a second source or a parameter without a default."""
from __future__ import annotations

import inspect

import pytest

from xaikit.errors import ExplanationError
from xaikit.saliency import METHODS
from xaikit.saliency.registry import register


def _keyword_defaults(fn) -> dict:
    """Reference: the keyword defaults of the undecorated function, after ``ctx``."""
    params = list(inspect.signature(inspect.unwrap(fn)).parameters.values())[1:]
    return {p.name: p.default for p in params}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_metadata_matches_the_function(name):
    info = METHODS[name]
    assert info.name == name
    assert info.defaults == _keyword_defaults(info.fn)
    assert all(v is not inspect.Parameter.empty for v in info.defaults.values())
    assert list(inspect.signature(inspect.unwrap(info.fn)).parameters)[0] == "ctx"
    assert info.passes() >= 0                                  # the cost formula runs on the defaults alone
    rules = getattr(info.fn, "param_rules", {})
    assert set(rules) - {"_all"} <= set(info.defaults), f"{name}: a rule for a parameter the method lacks"


def test_a_new_keyword_option_is_registered_by_writing_it():
    try:
        @register("_test_registry_probe", family="gradient", library="xaikit")
        def probe(ctx, strength: float = 0.5, mode: str = "plain"):
            """A probe."""

        assert METHODS["_test_registry_probe"].defaults == {"strength": 0.5, "mode": "plain"}
        assert METHODS["_test_registry_probe"].passes({"strength": 2.0}) == 1.0
    finally:
        METHODS.pop("_test_registry_probe", None)


def test_registration_refuses_a_second_source_and_parameters_without_defaults():
    with pytest.raises(ExplanationError, match=r"register\('_x', defaults=...\): the defaults are read from"):
        register("_x", family="gradient", library="xaikit", defaults={"a": 1})
    with pytest.raises(ExplanationError, match=r"'_y': every parameter after ctx needs a keyword default "
                                               r"\(no default: \['a'\]; \*args/\*\*kwargs: \['kw'\]\)"):
        @register("_y", family="gradient", library="xaikit")
        def bad(ctx, a, **kw):
            """Bad."""
    assert "_x" not in METHODS and "_y" not in METHODS


@pytest.mark.parametrize("name", sorted(METHODS))
def test_refusals_are_recorded_with_their_reason(name):
    """A method runs on volumes and on class, mask and box targets, or its MethodInfo says why not."""
    from xaikit.saliency.detection import supports

    info = METHODS[name]
    assert set(info.refuses) <= {"detection"}, f"{name}: unknown refusal keys {set(info.refuses)}"
    assert all(isinstance(why, str) and len(why) > 20 for why in info.refuses.values())
    if "detection" in info.refuses:
        assert supports(info) == info.refuses["detection"]
