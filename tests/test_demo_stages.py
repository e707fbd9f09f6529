"""The demo's region, statistics and shortcut stages (SMOKE mode) write their sections and tables."""
from __future__ import annotations

import pandas as pd
import pytest

from xaikit.demo import STAGES, run_demo
from xaikit.samples import MODELS, sample_dir

OURS = ["regions", "statistics", "shortcut"]
pytestmark = pytest.mark.skipif(not all((sample_dir() / "models" / f).is_file() for f in MODELS.values()),
                                reason="sample models not built (python -m xaikit samples)")


def test_stages_registered_after_saliency():
    names = list(STAGES)
    assert names[names.index("saliency") + 1 : names.index("saliency") + 4] == OURS


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, smoke=True, stages=OURS)


def test_report_has_the_sections_and_tables(report):
    out, index = report
    page = index.read_text()
    for title in ("4. Regions", "5. Statistics", "6. The shortcut lab"):
        assert title in page
    for name in ("region_density", "statistics_tests", "shortcut_summary"):
        assert (out / f"{name}.csv").is_file() and f"{name}.csv" in page
    for csv in out.glob("*.csv"):  # no patient identifiers in any table
        table = pd.read_csv(csv)
        assert "patient_id" not in table.columns
        assert not table.astype(str).stack().str.fullmatch(r"P\d{4}").any(), csv.name


def test_tables_hold_real_results(report):
    out, _ = report
    density = pd.read_csv(out / "region_density.csv")
    assert {"method", "region", "mean", "ci_low", "ci_high"} <= set(density.columns)
    assert set(density["method"]) == {"gradient", "gradcam"}
    tests = pd.read_csv(out / "statistics_tests.csv")
    assert set(tests["family"]) == {"compare_groups", "region_enrichment"}
    assert tests["p_adj"].between(0, 1).all() and (tests["p_adj"] >= tests["p_raw"] - 1e-12).all()
    lab = pd.read_csv(out / "shortcut_summary.csv").set_index(["model", "region"])
    assert lab.loc[("shortcut", "marker"), "p_adj"] < 0.01
    clean = lab.loc[("clean", "marker")]
    assert not (clean["significant"] and clean["effect_size"] > 0)  # never enriched (it may be depleted)


def test_heatmap_marks_agree_with_the_family_table(report):
    """One significance truth: the heatmap's marks are those of the one Holm family in the table above it."""
    import re

    from xaikit.viz.stats import significance_mark

    out, index = report
    page = index.read_text()
    body = page.split("</nav>", 1)[1]
    heatmap = body[body.index("5. Statistics"):]
    shown = re.findall(r'"(-?\d\.\d\d) (\*{1,3}|ns)"', heatmap.split("6. The shortcut lab")[0])
    tests = pd.read_csv(out / "statistics_tests.csv")
    enrichment = tests[tests["family"] == "region_enrichment"]
    expected = sorted((f"{e:.2f}", significance_mark(p))
                      for e, p in zip(enrichment["effect_size"], enrichment["p_adj"]))
    assert sorted(shown) == expected
