"""The demo's "Which maps to trust" stage (SMOKE mode): verdicts judged against what means something, every
verdict drawn in a figure, and no domain warning on the clean model's own held-out phantoms."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest

from xaikit.demo import STAGES, DemoContext
from xaikit.domain import OutOfDomainWarning
from xaikit.evaluation import CONTROLS
from xaikit.report import Report
from xaikit.samples import MODELS, sample_dir

pytestmark = pytest.mark.skipif(not all((sample_dir() / "models" / f).is_file() for f in MODELS.values()),
                                reason="sample models not built (python -m xaikit samples)")


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    ctx = DemoContext(samples=sample_dir(), smoke=True)
    report = Report(out, title="test")
    with warnings.catch_warnings():
        # the clean model on its own held-out phantoms: the metrics' noisy copies and randomized models must not warn
        warnings.simplefilter("error", OutOfDomainWarning)
        STAGES["evaluation"](ctx, report)
    report.write()
    return out, ctx


def test_evaluation_stage_runs_after_the_shortcut_lab_and_reports(stage):
    out, _ = stage
    assert list(STAGES).index("evaluation") == list(STAGES).index("shortcut") + 1
    assert "7. Which maps to trust" in (out / "index.html").read_text()
    verdicts = pd.read_csv(out / "evaluation_verdicts.csv")
    assert {"gradient", "gradcam", "random", "sobel"} <= set(verdicts["method"])
    rand = verdicts[verdicts["check"] == "cascading_randomization"].set_index("method")
    assert not rand.loc["random", "passed"] and not rand.loc["sobel", "passed"]  # model-independent controls fail
    summary = pd.read_csv(out / "evaluation_summary.csv")
    assert {"deletion", "insertion", "cascading_randomization", "pointing_game", "relevance_mass",
            "sparseness", "max_sensitivity"} <= set(summary["metric"])
    assert (summary["ci_low"].dropna() <= summary.loc[summary["ci_low"].notna(), "mean"] + 1e-12).all()


def test_no_robustness_verdict_compares_with_a_control(stage):
    out, _ = stage
    verdicts = pd.read_csv(out / "evaluation_verdicts.csv")
    rob = verdicts[verdicts["family"] == "robustness"]
    assert set(rob["method"]) == {"gradient", "gradcam"}
    assert not rob["verdict"].str.contains("control|random|sobel|WORSE|beat").any()
    assert rob["judged_against"].str.startswith("stated threshold").all()
    floor = verdicts[verdicts["family"].isin(["faithfulness", "localization"])]
    assert len(floor) and floor["verdict"].str.contains("random control").all()


def test_every_verdict_is_drawn_with_its_controls(stage):
    out, ctx = stage
    figs = ctx.results["evaluation_figures"]
    verdicts = ctx.results["evaluation_verdicts"]
    # deletion / insertion: the random floor (and sobel) drawn in both panels
    names = [t.name for t in figs["evaluation_curves"].data]
    assert names.count("random") == 2 and names.count("sobel") == 2
    # randomization: the model-independent reference and the verdict's threshold
    assert set(CONTROLS) <= {t.name for t in figs["evaluation_cascading_randomization"].data}
    assert 0.5 in [s.y0 for s in figs["evaluation_cascading_randomization"].layout.shapes]
    # every other checked metric has its forest; robustness with the threshold and without controls
    for metric in set(verdicts["check"]) - {"deletion", "insertion", "cascading_randomization"}:
        fig = figs[f"evaluation_{metric}"]
        drawn = set(fig.data[0].y)
        if metric == "max_sensitivity":
            assert drawn == {"gradient", "gradcam"} and [s.x0 for s in fig.layout.shapes] == [0.5]
        else:
            assert "random" in drawn, metric
    # the rank heatmap: no control ranked on robustness or sparseness
    heat = figs["evaluation_ranks"]
    z = pd.DataFrame(heat.data[0].z, index=heat.data[0].y, columns=heat.data[0].x)
    assert z.loc[list(CONTROLS), ["max_sensitivity", "sparseness"]].isna().all().all()
    assert z["max_sensitivity"].min() == 1.0 and z["max_sensitivity"].idxmin() in ("gradient", "gradcam")

