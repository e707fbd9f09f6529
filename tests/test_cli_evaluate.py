"""``xaikit evaluate`` as a user runs it: plan, table with CIs, verdicts, report; a rerun is a cache read."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xaikit.cli import EXIT_CODES, main
from xaikit.evaluation import score_many
from xaikit.inference import load_model, to_batch
from xaikit.io import read_image
from xaikit.saliency import explain_many

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "data_samples" / "models" / "phantom_small_cnn.pt"
IMAGES = [ROOT / "data_samples" / "images" / f"img0000{i}.png" for i in range(3)]
ARGS = ["--method", "gradient", "--method", "gradcam", "--metric", "deletion", "--metric", "cascading_randomization",
        "--metric-param", "deletion:steps=8", "--metric-param", 'cascading_randomization:similarities=["spearman_abs"]',
        "--n-boot", "200", "--no-progress"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("study")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "xaikit", "evaluate", str(MODEL), *map(str, IMAGES), *ARGS,
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return out, proc


def test_evaluate_writes_the_table_verdicts_and_report(study):
    out, proc = study
    assert proc.returncode == 0, proc.stderr
    assert "plan: 3 images" in proc.stderr and "total" in proc.stderr  # the plan is printed before the work
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores["method"]) == {"gradient", "gradcam", "random", "sobel"}  # the controls beside the methods
    assert set(scores["metric"]) == {"deletion", "cascading_randomization"}
    assert scores["image_id"].str.fullmatch(r"\d{5}_[0-9a-f]{16}").all()  # named as `xaikit explain` names them
    summary = pd.read_csv(out / "summary.csv")
    assert {"mean", "ci_low", "ci_high", "rank"} <= set(summary.columns)
    ok = summary.dropna(subset=["ci_low"])
    assert len(ok) and ((ok["ci_low"] <= ok["mean"] + 1e-12) & (ok["mean"] <= ok["ci_high"] + 1e-12)).all()
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert set(verdicts["method"]) >= {"gradient", "gradcam", "random"}
    random_rand = verdicts[(verdicts["method"] == "random") & (verdicts["check"] == "cascading_randomization")]
    assert not random_rand["passed"].astype(bool).any()  # a model-independent map fails the randomization check
    page = (out / "index.html").read_text()
    assert "verdicts.csv" in page and "Plan" in page and "passes" in page
    assert "img0000" not in page and "img0000" not in (out / "scores.csv").read_text()  # no file names


def test_evaluate_scores_equal_the_library(study):
    out, _ = study
    ckpt = load_model(MODEL)
    x = to_batch(ckpt, [read_image(p) for p in IMAGES])
    maps = explain_many(ckpt.model, x, ["gradient"], progress=False)
    ref = score_many(ckpt.model, x, maps, {"deletion": {"steps": 8}}, controls=(), progress=False)
    got = pd.read_csv(out / "scores.csv")
    got = got[(got["method"] == "gradient") & (got["metric"] == "deletion")]
    np.testing.assert_allclose(got["value"].to_numpy(), ref["value"].to_numpy(), rtol=1e-6)


def test_a_rerun_reads_the_cache(study, capsys):
    out, _ = study
    before = {p: p.stat().st_mtime_ns for p in (out / ".cache").rglob("*") if p.is_file()}
    first = (out / "scores.csv").read_text()
    code = main(["evaluate", str(MODEL), *map(str, IMAGES), *ARGS, "--out", str(out)])
    assert code == EXIT_CODES["ok"]
    after = {p: p.stat().st_mtime_ns for p in (out / ".cache").rglob("*") if p.is_file()}
    assert after == before  # nothing recomputed, nothing rewritten
    assert (out / "scores.csv").read_text() == first


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    code = main(["evaluate", str(MODEL), *map(str, IMAGES), "--preset", "quick", "--metric", "max_sensitivity",
                 "--dry-run", "--no-progress", "--out", str(tmp_path / "study")])
    assert code == EXIT_CODES["ok"]
    text = capsys.readouterr().out
    assert text.startswith("plan: 3 images") and "x max_sensitivity" in text and "peak memory" in text
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("args, message", [
    (["--metric", "nonsense"], "not known"),
    (["--metric", "relevance_mass"], "needs ground-truth masks"),
    (["--metric", "deletion", "--metric-param", "deletion=3"], "METRIC:KEY=VALUE"),
    (["--metric", "deletion", "--metric-param", "deletion:nope=3"], "has no parameter"),
    (["--n-boot", "5"], "--n-boot"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, args, message):
    code = main(["evaluate", str(MODEL), str(IMAGES[0]), "--method", "gradient", *args, "--dry-run", "--no-progress",
                 "--out", str(tmp_path)])
    assert code == EXIT_CODES["usage"]
    assert message in capsys.readouterr().err
