"""The demo's "Which maps to trust" stage (SMOKE mode) writes verdicts and a method x metric table."""
from __future__ import annotations

import pandas as pd
import pytest

from xaikit.demo import STAGES, run_demo
from xaikit.samples import MODELS, sample_dir

pytestmark = pytest.mark.skipif(not all((sample_dir() / "models" / f).is_file() for f in MODELS.values()),
                                reason="sample models not built (python -m xaikit samples)")


@pytest.mark.filterwarnings("error::xaikit.domain.OutOfDomainWarning")  # randomised copies are not the trained model
def test_evaluation_stage_runs_after_the_shortcut_lab_and_reports(tmp_path):
    assert list(STAGES).index("evaluation") == list(STAGES).index("shortcut") + 1
    index = run_demo(tmp_path, smoke=True, stages=["evaluation"])
    page = index.read_text()
    assert "7. Which maps to trust" in page
    verdicts = pd.read_csv(tmp_path / "evaluation_verdicts.csv")
    assert {"gradient", "gradcam", "random", "sobel"} <= set(verdicts["method"])
    rand = verdicts[verdicts["check"] == "cascading_randomisation"].set_index("method")
    assert not rand.loc["random", "passed"] and not rand.loc["sobel", "passed"]  # model-independent controls fail
    summary = pd.read_csv(tmp_path / "evaluation_summary.csv")
    assert {"deletion", "insertion", "cascading_randomisation", "pointing_game", "relevance_mass",
            "sparseness"} <= set(summary["metric"])
    assert (summary["ci_low"].dropna() <= summary.loc[summary["ci_low"].notna(), "mean"] + 1e-12).all()
