"""Which metric to trust: meta-evaluation of the metrics in worlds where the evidence the model uses is known.

In a ground-truth world (:mod:`xaikit.worlds`) the evidence the model uses is known by construction, so each
method's map can be scored against it: the AUROC of |map| as a pixel detector of the evidence mask (and the
share of |map| inside it) is the method's *recovery of the truth*, and its order over methods is the
**ground-truth ranking**. A metric earns trust when it ranks the methods the same way, without seeing the truth:

- *agreement*: Kendall's tau between the metric's method means and the truth's, with a patient-bootstrap CI
  (images resampled together for both, so the CI carries the uncertainty of both rankings);
- *noise resilience* and *adversary reactivity* (MetaQuantus, Hedström et al. TMLR 2023): after a minor
  perturbation (weights multiplied by 1 + N(0, 0.01^2), decisions kept) a metric's scores should not move;
  after a disruptive one (every layer re-initialized) they should. Per method, the separation of the score
  distributions before and after is |2 AUC - 1| (0: same distribution, 1: disjoint); NR = 1 - mean separation
  under the minor perturbation, AR = mean separation under the disruptive one;
- *within-family agreement*: Kendall's W of the method rankings of the metrics of one family;
- *parameter stability*: mean Kendall tau between the method rankings of the metric's parameter settings.

Localization metrics are scored against the **lesion annotation** (what a reader would mark), the truth against
the **evidence** mask: in the marker-only world the two differ, and a localization metric that rewards lesion
maps is then seen to reward maps that do not explain the model.

:func:`score_world` runs one world; :func:`ground_truth_ranking`, :func:`metric_agreement` and
:func:`metric_reliability` turn a list of them into tidy tables.
"""
from __future__ import annotations

import copy
import itertools
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from .._modes import one_thread
from .._resampling import patient_bootstrap, percentile_ci
from ..errors import EvaluationError
from ..saliency import METHODS, explain_many
from ..worlds import get_world, world_data, world_model, world_model_path
from .core import CONTROLS, score_many
from .registry import METRICS, get_metric

__all__ = ["DEFAULT_METHODS", "DEFAULT_WORLDS", "SETTINGS", "WorldScores", "score_world", "ground_truth_ranking",
           "metric_agreement", "metric_reliability", "kendall_w"]

#: Methods ranked in every world by default (the controls ``random`` and ``sobel`` are added to them);
#: integrated gradients with 16 steps keeps the metrics that re-explain affordable.
DEFAULT_METHODS = {"gradient": {"method": "gradient"}, "input_x_gradient": {"method": "input_x_gradient"},
                   "integrated_gradients": {"method": "integrated_gradients", "n_steps": 16},
                   "guided_backprop": {"method": "guided_backprop"}, "gradcam": {"method": "gradcam"}}
#: Worlds with a known truth (``label_random`` is the reference of the data-randomization check, not a world).
DEFAULT_WORLDS = ("lesion_only", "marker_only", "both", "glass_box")
_RAND = {"similarities": ["spearman_abs", "ssim"], "stages": "block"}
#: Parameter settings of every metric, the first one the metric's reliability row is about. Perturbation
#: metrics use coarse patches and few steps so a world scores in seconds on a CPU. The randomization checks are
#: scored once with two similarities, each similarity one setting (same maps, no second re-explanation).
SETTINGS: dict[str, tuple[dict, ...]] = {
    "deletion": ({"patch": 8, "steps": 16}, {"patch": 4, "steps": 16}, {"patch": 1, "steps": 16}),
    "insertion": ({"patch": 8, "steps": 16}, {"patch": 4, "steps": 16}, {"patch": 1, "steps": 16}),
    "deletion_lerf": ({"patch": 8, "steps": 16}, {"patch": 4, "steps": 16}),
    "road": ({"fractions": (0.1, 0.3, 0.5, 0.7)}, {"fractions": (0.1, 0.3, 0.5, 0.7), "noise": 0.05}),
    "faithfulness_correlation": ({"n_runs": 30, "subset_size": 128}, {"n_runs": 30, "subset_size": 512}),
    "infidelity": ({"n_samples": 8}, {"n_samples": 8, "noise_std": 0.3}),
    "max_sensitivity": ({"n_samples": 4}, {"n_samples": 4, "scale": 0.15}),
    "local_lipschitz": ({"n_samples": 4}, {"n_samples": 4, "scale": 0.15}),
    "sensitivity_max": ({"n_samples": 4}, {"n_samples": 4, "radius": 0.1}),
    "sparseness": ({},),
    "entropy": ({},),
    "pointing_game": ({"sign": "positive"}, {"sign": "absolute"}),
    "relevance_mass": ({"sign": "positive"}, {"sign": "absolute"}),
    "relevance_rank": ({"sign": "positive"}, {"sign": "absolute"}),
    "topk_iou": ({"topk": 0.05}, {"topk": 0.15}),
    "auroc": ({"sign": "signed"}, {"sign": "absolute"}),
    "cascading_randomization": (dict(_RAND),),
    "independent_randomization": (dict(_RAND),),
    "data_randomization": ({"similarities": ["spearman_abs", "ssim"]},),
}


@dataclass
class WorldScores:
    """Everything measured in one world (the input of the tables below).

    Attributes
    ----------
    world : str
    scores : DataFrame
        ``image_id, patient_id, method, metric, family, setting, value, higher_is_better`` (one value per image:
        rows of a metric's layers are averaged).
    truth : DataFrame
        ``image_id, patient_id, method, truth_auroc, truth_mass``.
    perturbed : DataFrame
        ``perturbation`` (``minor``/``disruptive``) and the columns of ``scores`` (first settings only).
    """

    world: str
    scores: pd.DataFrame
    truth: pd.DataFrame
    perturbed: pd.DataFrame


def _setting(params: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if k != "reference") or "defaults"


def _check_world(world: str):
    w = get_world(world)
    if not w.evidence:
        raise EvaluationError(f"world {world!r} has no known evidence (its model was trained on permuted labels and "
                              "uses nothing): it is the reference of the data_randomization check, not a world to "
                              f"rank methods in; choose from {list(DEFAULT_WORLDS)}.")
    return w


def _world_settings(world, settings: Mapping[str, Sequence[dict]] | Sequence[str] | None, folder=None) -> dict:
    if settings is None:
        chosen = {m: SETTINGS[m] for m in SETTINGS if world.model == "trained" or m != "data_randomization"}
    elif isinstance(settings, Mapping):
        chosen = {m: tuple(v) for m, v in settings.items()}
    else:
        chosen = {m: SETTINGS.get(m, ({},)) for m in settings}
    for name in chosen:
        get_metric(name)
    if "data_randomization" in chosen:
        if world.model != "trained":
            raise EvaluationError(f"metric 'data_randomization' has no known truth in world {world.name!r}: its model "
                                  "is built in closed form, so no model of its kind was trained on permuted labels. "
                                  "Score it in a world with a trained model (lesion_only, marker_only, both).")
        ref = str(world_model_path("label_random", folder))
        chosen["data_randomization"] = tuple({**p, "reference": ref} for p in chosen["data_randomization"])
    return chosen


def _methods(world, methods, controls: Sequence[str]) -> dict[str, dict]:
    spec = {m: {"method": m} for m in methods} if not isinstance(methods, Mapping) else {
        k: dict(v) for k, v in methods.items()}
    if world.model == "closed_form":
        dropped = [k for k, v in spec.items() if METHODS[v["method"]].needs_layer]
        if dropped:
            warnings.warn(f"world {world.name!r}: its glass-box model has no convolution, so {dropped} cannot run "
                          "there; they are left out of that world's rankings.", stacklevel=3)
        spec = {k: v for k, v in spec.items() if k not in dropped}
    spec.update({c: {"method": c} for c in controls if c not in spec})
    _check_methods(list(spec), f"world {world.name!r}")
    return spec


def score_world(world: str, methods: Sequence[str] | Mapping[str, Mapping] = DEFAULT_METHODS,
                settings: Mapping[str, Sequence[dict]] | Sequence[str] | None = None, *, n: int = 16, seed: int = 0,
                perturb: bool = True, controls: Sequence[str] = CONTROLS, folder=None) -> WorldScores:
    """Explain and score the test phantoms of one world that carry a lesion and the evidence (target: class 1).

    Parameters
    ----------
    world : str
        A world with known evidence (:data:`DEFAULT_WORLDS`).
    methods : sequence of str or dict
        Saliency methods (names, or ``{label: {"method": name, **params}}`` as in
        :func:`~xaikit.saliency.explain_many`); the controls are added.
    settings : dict or list, optional
        ``{metric: [params, ...]}`` or metric names (their :data:`SETTINGS`); default every metric with a truth
        in this world.
    n : int
        At most this many images (those with a lesion annotation and non-empty evidence).
    perturb : bool
        Also score the minor and disruptive perturbations (noise resilience, adversary reactivity).
    controls : sequence of str
        Control maps ranked with the methods (default ``random`` and ``sobel``).
    folder : path, optional
        Sample data folder holding ``models/world_*.pt`` (default the shipped one).

    Returns
    -------
    WorldScores
    """

    with one_thread():  # 64 px models: intra-op threads cost more than they save (4x slower on a busy 2-core box)
        return _score_world(world, methods, settings, n, seed, perturb, controls, folder)


def _score_world(world, methods, settings, n, seed, perturb, controls, folder) -> WorldScores:
    w = _check_world(world)
    chosen = _world_settings(w, settings, folder)
    model = world_model(world, folder)
    data = world_data(world, "test")
    keep = (data["masks"]["lesion"].flatten(1).any(1) & data["masks"]["evidence"].flatten(1).any(1)).nonzero()[:, 0]
    keep = keep[:n]
    if len(keep) < 3:
        raise EvaluationError(f"world {world!r}: only {len(keep)} test images carry the evidence; need >= 3.")
    x = data["images"][keep]
    ids = [data["image_ids"][i] for i in keep]
    masks = {k: m[keep] for k, m in data["masks"].items()}
    names = _methods(w, methods, controls)
    target = torch.ones(len(x), dtype=torch.long)
    exps = explain_many(model, x, names, target=target, image_ids=ids, progress=False)
    scores = _score_settings(model, x, exps, chosen, masks["lesion"], seed)
    truth = _truth(exps, masks["evidence"])
    perturbed = pd.DataFrame()
    if perturb:
        first = {m: (p[0],) for m, p in chosen.items()}
        frames = []
        for kind, copy_ in _perturbed_models(model, seed).items():
            maps = explain_many(copy_, x, names, target=target, image_ids=ids, progress=False)
            frames.append(_score_settings(copy_, x, maps, first, masks["lesion"], seed).assign(perturbation=kind))
        perturbed = pd.concat(frames, ignore_index=True)
    return WorldScores(world, scores, truth, perturbed)


def _score_settings(model: nn.Module, x: torch.Tensor, exps: Mapping, chosen: Mapping, lesion: torch.Tensor,
                    seed: int) -> pd.DataFrame:
    frames = []
    for k in range(max(len(p) for p in chosen.values())):
        jobs = {m: p[k] for m, p in chosen.items() if len(p) > k}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*undefined \\(NaN\\)")  # an image without a lesion: NaN
            table = score_many(model, x, exps, jobs, masks=lesion, controls=(), seed=seed, progress=False)
        table["setting"] = table["metric"].map({m: _setting(p) for m, p in jobs.items()})
        if "similarity" in table:  # one setting per similarity (its own ranking of the methods)
            sim = table["similarity"].notna()
            rest = table.loc[sim, "setting"].str.replace(r"similarities=\[[^]]*\](, )?", "", regex=True)
            table.loc[sim, "setting"] = ("similarity=" + table.loc[sim, "similarity"].astype(str)
                                         + rest.where(rest.str.len() == 0, ", " + rest).str.rstrip(", "))
        frames.append(table)
    table = pd.concat(frames, ignore_index=True)
    keys = ["image_id", "method", "metric", "family", "setting", "higher_is_better"]
    return table.groupby(keys, sort=False, as_index=False)["value"].mean()


def _truth(exps: Mapping, evidence: torch.Tensor) -> pd.DataFrame:
    from sklearn.metrics import roc_auc_score

    ev = evidence.flatten(1).numpy()
    rows = []
    for method, exp in exps.items():
        mag = exp.maps.abs().flatten(1).double().numpy()
        for i, image_id in enumerate(exp.image_ids):
            total = mag[i].sum()
            rows.append({"image_id": image_id, "method": method, "truth_auroc": roc_auc_score(ev[i], mag[i]),
                         "truth_mass": mag[i][ev[i]].sum() / total if total > 0 else np.nan})
    return pd.DataFrame(rows)


def _perturbed_models(model: nn.Module, seed: int) -> dict[str, nn.Module]:
    """Copies of ``model``: weights times 1 + N(0, 0.01^2) (minor), every layer re-initialized (disruptive)."""
    gen = torch.Generator().manual_seed(seed + 11)
    minor, disruptive = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in minor.parameters():
            p.mul_(1 + 0.01 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 12)
        for m in disruptive.modules():
            if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False)):
                m.reset_parameters()
    for copied in (minor, disruptive):
        if hasattr(copied, "xaikit_domain"):
            del copied.xaikit_domain
    return {"minor": minor, "disruptive": disruptive}


# ------------------------------------------------------------------------------------------------ tables
def _check_methods(methods: Sequence[str], who: str) -> None:
    if len(methods) < 3:
        raise EvaluationError(f"{who}: a ranking needs at least 3 methods; got {len(methods)} ({list(methods)}). "
                              "Score more methods (the controls random and sobel count).")


def _matrix(table: pd.DataFrame, value: str, methods: Sequence[str], images: Sequence[str]) -> np.ndarray:
    wide = table.pivot_table(index="method", columns="image_id", values=value, aggfunc="mean", dropna=False)
    return wide.reindex(index=list(methods), columns=list(images)).to_numpy(dtype=float)


def _means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    ok = np.isfinite(values)
    w = np.where(ok, weights[None, :], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(ok, values, 0.0) * w).sum(1) / w.sum(1)


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return np.nan
    return float(stats.kendalltau(a[ok], b[ok]).statistic)


def _frame(run: WorldScores):
    methods = list(dict.fromkeys(run.truth["method"]))
    images = list(dict.fromkeys(run.truth["image_id"]))
    _check_methods(methods, f"world {run.world!r}")
    return methods, images, _matrix(run.truth, "truth_auroc", methods, images)


def ground_truth_ranking(runs: Sequence[WorldScores], *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each method's recovery of the known evidence per world, with patient-bootstrap 95% CIs, ranked.

    Returns ``world, method, truth_auroc, ci_low, ci_high, truth_mass, rank`` (rank 1: best recovery).
    """
    rows = []
    for run in runs:
        methods, images, truth = _frame(run)
        mass = _matrix(run.truth, "truth_mass", methods, images)
        reps = np.array([_means(truth, w) for w in patient_bootstrap(images, n_boot, seed)])
        means = _means(truth, np.ones(len(images)))
        ranks = stats.rankdata(-means)
        for j, method in enumerate(methods):
            lo, hi = percentile_ci(reps[:, j])
            rows.append({"world": run.world, "method": method, "truth_auroc": means[j], "ci_low": lo, "ci_high": hi,
                         "truth_mass": float(np.nanmean(mass[j])), "rank": ranks[j]})
    return pd.DataFrame(rows)


def _oriented(run: WorldScores, metric: str, setting: str, methods, images) -> np.ndarray:
    sub = run.scores[(run.scores["metric"] == metric) & (run.scores["setting"] == setting)]
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0
    return sign * _matrix(sub, "value", methods, images)


def _agreement_reps(run: WorldScores, metric: str, setting: str, n_boot: int, seed: int) -> tuple[float, np.ndarray]:
    methods, images, truth = _frame(run)
    values = _oriented(run, metric, setting, methods, images)
    ones = np.ones(len(images))
    reps = np.array([_tau(_means(values, w), _means(truth, w)) for w in patient_bootstrap(images, n_boot, seed)])
    return _tau(_means(values, ones), _means(truth, ones)), reps


def metric_agreement(runs: Sequence[WorldScores], *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Kendall's tau between each metric's method ranking and the ground-truth ranking, per world and setting.

    Returns ``world, metric, family, setting, tau, ci_low, ci_high, n_methods, n_images`` (patient-bootstrap
    95% CIs: images resampled together for the metric and the truth).
    """
    rows = []
    for run in runs:
        methods, images, _ = _frame(run)
        for (metric, setting), _sub in run.scores.groupby(["metric", "setting"], sort=False):
            tau, reps = _agreement_reps(run, metric, setting, n_boot, seed)
            lo, hi = percentile_ci(reps)
            rows.append({"world": run.world, "metric": metric, "family": METRICS[metric].family, "setting": setting,
                         "tau": tau, "ci_low": lo, "ci_high": hi, "n_methods": len(methods), "n_images": len(images)})
    return pd.DataFrame(rows)


def kendall_w(ranks: np.ndarray) -> float:
    """Kendall's coefficient of concordance W of ``m`` rankings (rows) of ``n`` items (columns), in [0, 1].

    Written here because neither scipy nor statsmodels has it: W = 12 S / (m^2 (n^3 - n)), S the sum of squared
    deviations of the items' rank sums from their mean (no tie correction).

    Examples
    --------
    >>> kendall_w(np.array([[1, 2, 3], [1, 2, 3]]))
    1.0
    """
    ranks = np.asarray(ranks, dtype=float)
    m, n = ranks.shape
    if m < 2 or n < 3:
        raise EvaluationError(f"kendall_w: needs >= 2 rankings of >= 3 items; got {m} of {n}.")
    sums = ranks.sum(0)
    return float(12 * ((sums - sums.mean()) ** 2).sum() / (m**2 * (n**3 - n)))


def _first_settings(run: WorldScores) -> dict[str, str]:
    return run.scores.drop_duplicates("metric").set_index("metric")["setting"].to_dict()


def _family_w(run: WorldScores) -> dict[str, float]:
    methods, images, _ = _frame(run)
    first = _first_settings(run)
    out = {}
    for family in {METRICS[m].family for m in first}:
        members = [m for m in first if METRICS[m].family == family]
        means = [_means(_oriented(run, m, first[m], methods, images), np.ones(len(images))) for m in members]
        means = [v for v in means if np.isfinite(v).all()]
        out[family] = kendall_w(np.array([stats.rankdata(-v) for v in means])) if len(means) >= 2 else np.nan
    return out


def _stability(run: WorldScores, metric: str) -> float:
    methods, images, _ = _frame(run)
    settings = list(dict.fromkeys(run.scores.loc[run.scores["metric"] == metric, "setting"]))
    means = [_means(_oriented(run, metric, s, methods, images), np.ones(len(images))) for s in settings]
    return _nanmean([_tau(a, b) for a, b in itertools.combinations(means, 2)])


def _separation(run: WorldScores, metric: str, kind: str) -> float:
    """Mean over methods of |2 AUC - 1| between the clean and the perturbed per-image scores (0: no change)."""
    if run.perturbed.empty:
        return np.nan
    setting = _first_settings(run)[metric]
    clean = run.scores[(run.scores["metric"] == metric) & (run.scores["setting"] == setting)]
    pert = run.perturbed[(run.perturbed["metric"] == metric) & (run.perturbed["perturbation"] == kind)]
    seps = []
    for method, part in clean.groupby("method"):
        a = part["value"].dropna().to_numpy()
        b = pert.loc[pert["method"] == method, "value"].dropna().to_numpy()
        if len(a) and len(b):
            auc = stats.mannwhitneyu(a, b).statistic / (len(a) * len(b))
            seps.append(abs(2 * auc - 1))
    return float(np.mean(seps)) if seps else np.nan


def metric_reliability(runs: Sequence[WorldScores], *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per metric: how far to trust it, measured over the worlds in ``runs``, with a verdict in words.

    Columns ``metric, family, setting, n_worlds, worlds, tau, ci_low, ci_high, noise_resilience,
    adversary_reactivity, family_w, param_stability, verdict``. ``tau`` is the mean over worlds of the agreement
    with the ground-truth ranking (its CI from the same patient-bootstrap replicates in every world; worlds where
    the metric ties every method do not count), the rest as in the module docstring (means over worlds).
    Verdicts: *trust* (CI above 0 and tau >= 0.5), *partly* (CI above 0, tau < 0.5), *misleading* (CI below 0),
    *do not trust* (CI includes 0), followed by what the other columns warn about.

    Examples
    --------
    >>> runs = [score_world(w, n=6) for w in ("lesion_only", "marker_only")]  # doctest: +SKIP
    >>> metric_reliability(runs)[["metric", "tau", "verdict"]]  # doctest: +SKIP
    """
    if not runs:
        raise EvaluationError("metric_reliability: give at least one WorldScores from score_world().")
    family_w = {run.world: _family_w(run) for run in runs}
    rows = []
    for metric in dict.fromkeys(m for run in runs for m in run.scores["metric"]):
        scored = [run for run in runs if metric in set(run.scores["metric"])]
        setting = _first_settings(scored[0])[metric]
        parts = {run.world: _agreement_reps(run, metric, _first_settings(run)[metric], n_boot, seed)
                 for run in scored}
        # a world where the metric ties every method (tau undefined, e.g. the pointing game on a fixed mask)
        # does not count as a world it was measured on
        have = [run for run in scored if np.isfinite(parts[run.world][0])] or scored
        tau = _nanmean([parts[run.world][0] for run in have])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # replicates where every world's tau is undefined
            lo, hi = percentile_ci(np.nanmean(np.array([parts[run.world][1] for run in have]), axis=0))
        row = {"metric": metric, "family": METRICS[metric].family, "setting": setting, "n_worlds": len(have),
               "worlds": ", ".join(run.world for run in have), "tau": tau, "ci_low": lo, "ci_high": hi,
               "noise_resilience": 1 - _nanmean([_separation(r, metric, "minor") for r in have]),
               "adversary_reactivity": _nanmean([_separation(r, metric, "disruptive") for r in have]),
               "family_w": _nanmean([family_w[r.world][METRICS[metric].family] for r in have]),
               "param_stability": _nanmean([_stability(r, metric) for r in have])}
        rows.append({**row, "verdict": _verdict(row)})
    return pd.DataFrame(rows)


def _nanmean(values: Sequence[float]) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else np.nan


def _verdict(row: Mapping) -> str:
    """Plain words for one reliability row."""
    where = f"{row['n_worlds']} world{'s' if row['n_worlds'] != 1 else ''}"
    tau = f"tau = {row['tau']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}] on {where}"
    name = f"{row['metric']} ({row['setting']})"
    if row["ci_low"] > 0 and row["tau"] >= 0.5:
        head = f"trust: {name} ranks methods as the ground truth does, {tau}"
    elif row["ci_low"] > 0:
        head = f"partly: {name} ranks methods only loosely as the ground truth does, {tau}"
    elif row["ci_high"] < 0:
        head = f"misleading: {name} ranks methods against the ground truth, {tau}"
    else:
        head = f"do not trust: {name} shows no agreement with the ground-truth ranking, {tau}"
    notes = []
    if row["noise_resilience"] < 0.5:
        notes.append(f"a 1% weight noise moves its scores (noise resilience {row['noise_resilience']:.2f})")
    if row["adversary_reactivity"] < 0.5:
        notes.append(f"it hardly reacts to a randomized model (reactivity {row['adversary_reactivity']:.2f})")
    if row["param_stability"] < 0.5:
        notes.append(f"its ranking changes with its parameters (tau between settings {row['param_stability']:.2f})")
    if row["n_worlds"] < 2:
        notes.append("measured on one world only")
    return head + ("; " + "; ".join(notes) if notes else "")
