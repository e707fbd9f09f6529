"""Which map can I trust? Explanation-quality metrics, scored randomization sanity checks and method rankings.

One call shape for every metric in :data:`METRICS` (faithfulness, robustness, randomization, localization,
complexity)::

    score(metric, model, inputs, explanation, *, target=None, masks=None, **params) -> tidy DataFrame

one row per image x method x metric (per layer and similarity for the randomization checks), parameters
recorded as columns. :func:`score_many` scores many methods (plus the ``random`` and ``sobel`` controls) on
many metrics with model passes shared; :func:`summarize` and :func:`rank_methods` turn the table into means
with bootstrap CIs and paired tests in one multiplicity family (:mod:`xaikit.stats`). :func:`sanity_verdicts`
judges each family against what means something for it (:data:`CONTROL_ROLES`): the random map is the floor of
faithfulness and localization, the model-independent maps the reference of randomization, and robustness a stated
threshold (:data:`ROBUSTNESS_THRESHOLDS`), never a control. The inputs are checked against the model's training
domain once per call (:func:`xaikit.domain.checked_once`), never the copies a metric perturbs.

Examples
--------
>>> import torch
>>> from xaikit.models import build_model
>>> from xaikit.saliency import explain
>>> from xaikit.evaluation import score
>>> net = build_model("small_cnn", num_classes=2).eval()
>>> x = torch.rand(2, 1, 32, 32)
>>> bool(score("sparseness", net, x, explain(net, x, "gradient"))["value"].between(0, 1).all())
True
"""
from . import complexity, faithfulness, localization, randomization, robustness  # noqa: F401  (fill the registry)
from .context import EvalContext, make_context
from .core import CONTROLS, METRIC_COLUMNS, curves, randomized_maps, score, score_many
from .cost import Plan, plan
from .faithfulness import noisy_linear_imputation, patch_ranks
from .many import ScoreCache
from .meta import (
                   DEFAULT_METHODS,
                   DEFAULT_WORLDS,
                   SETTINGS,
                   WorldScores,
                   ground_truth_ranking,
                   kendall_w,
                   metric_agreement,
                   metric_reliability,
                   score_world,
)
from .precision import autocast_parity
from .randomization import SIMILARITIES, STAGES, randomizable_layers, randomization_stages, similarity
from .ranking import CONTROL_ROLES, ROBUSTNESS_THRESHOLDS, controls_compare, rank_methods, sanity_verdicts, summarize
from .registry import FAMILIES, METRICS, MetricInfo, get_metric, register_metric

__all__ = [
    "score", "score_many", "METRICS", "MetricInfo", "FAMILIES", "register_metric", "get_metric", "CONTROLS",
    "METRIC_COLUMNS", "EvalContext", "make_context", "summarize", "rank_methods", "sanity_verdicts", "curves",
    "randomized_maps", "SIMILARITIES", "similarity", "randomizable_layers", "randomization_stages", "STAGES",
    "patch_ranks", "noisy_linear_imputation", "CONTROL_ROLES", "ROBUSTNESS_THRESHOLDS", "controls_compare",
    "plan", "Plan", "ScoreCache", "autocast_parity",
    "score_world", "WorldScores", "ground_truth_ranking", "metric_agreement", "metric_reliability", "kendall_w",
    "SETTINGS", "DEFAULT_METHODS", "DEFAULT_WORLDS",
]
