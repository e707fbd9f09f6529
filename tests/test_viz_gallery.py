"""Every figure builder, rendered once (PNG through Kaleido where a Chromium exists), plus what a reader sees:
overlay transparency, one-sided scales, row labels, static notebook figures, readable tables, shared plotly.js."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from xaikit.viz.export import png_export_available

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def explanations():
    from xaikit.models import build_model
    from xaikit.saliency import explain

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=2).eval()
    x = torch.rand(4, 1, 32, 32)
    kw = dict(labels=[0, 1, 0, 1], image_ids=[f"img{i}" for i in range(4)])
    return x, {m: explain(model, x, m, **kw) for m in ("gradient", "gradcam")}


def _scores():
    from xaikit.regions import grid, region_scores

    maps = RNG.random((8, 12, 12))
    scores = pd.concat([region_scores(maps ** p, grid(1, 2, (12, 12)), labels=[0, 1] * 4, method=m)
                        for p, m in ((1, "gradient"), (2, "gradcam"))], ignore_index=True)
    return scores


def _builders(explanations):
    from xaikit.regions import grid
    from xaikit.stats import compare_groups, region_enrichment
    from xaikit.train.assessment import assess_predictions
    from xaikit.viz import audit, image, regions, saliency, stats, training

    x, exps = explanations
    y = np.array([0, 1] * 20)
    p1 = np.clip(y * 0.6 + RNG.random(40) * 0.4, 0, 1)
    ev = assess_predictions(y, np.stack([1 - p1, p1], 1), classes=["normal", "pneumonia"], n_boot=20, seed=0)
    history = pd.DataFrame([{"epoch": e, "split": s, "metric": m, "value": v}
                            for e in range(3)
                            for s, m, v in (("train", "loss", 1 / (e + 1)), ("val", "loss", 1.2 / (e + 1)),
                                            ("val", "roc_auc", 0.6 + 0.1 * e))])
    scores = _scores()
    tests = compare_groups(scores, value="mass_frac", n_boot=20, seed=0)
    enrich = region_enrichment(scores, n_boot=20, seed=0)
    feats = pd.DataFrame({"split": ["train"] * 10, "label": ["a", "b"] * 5, "mean": RNG.random(10),
                          "std": RNG.random(10)})
    table = pd.DataFrame({"check": "feature_by_class", "feature": ["mean", "std"], "effect_size": [0.5, -0.1],
                          "effect_name": "rank_biserial", "flag": [True, False], "p_adj": [0.01, 0.8],
                          "group_a": "a", "group_b": "b"})
    zones = grid(1, 2, (12, 12))
    return {
        "image_view": lambda: image.image_view(RNG.random((16, 16)), masks={"lesion": np.eye(16, dtype=bool)}),
        "slice_view": lambda: image.slice_view(RNG.random((4, 16, 16)), labelmap=np.ones((4, 16, 16), int)),
        "overlay": lambda: saliency.overlay(x[0], exps["gradient"].maps[0], title="gradient"),
        "method_grid": lambda: saliency.method_grid(x, exps, class_names=["normal", "pneumonia"]),
        "gallery": lambda: saliency.gallery(x, exps["gradcam"], class_names=["normal", "pneumonia"]),
        "training_curves": lambda: training.training_curves(history),
        "confusion_heatmap": lambda: training.confusion_heatmap(ev.confusion, ["normal", "pneumonia"]),
        "roc_curves": lambda: training.roc_curves(ev.roc, ev.metrics),
        "pr_curves": lambda: training.pr_curves(ev.pr, ev.metrics),
        "reliability_diagram": lambda: training.reliability_diagram(ev.calibration, ev.metrics),
        "region_boxplot": lambda: stats.region_boxplot(scores, tests=tests, method="gradient"),
        "effect_heatmap": lambda: stats.effect_heatmap(enrich),
        "forest_plot": lambda: stats.forest_plot(tests),
        "region_overlay": lambda: regions.region_overlay(RNG.random((12, 12)), zones),
        "region_value_map": lambda: regions.region_value_map(RNG.random((12, 12)), zones, scores, method="gradient"),
        "region_gallery": lambda: regions.region_gallery([RNG.random((12, 12))] * 2, zones, titles=["a", "b"]),
        "static_region_explorer": lambda: regions.static_region_explorer(scores, tests=tests),
        "class_balance_bars": lambda: audit.class_balance_bars(feats),
        "audit_effect_sizes": lambda: audit.audit_effect_sizes(table),
        "feature_boxplots": lambda: audit.feature_boxplots(feats, ["mean", "std"]),
    }


def test_every_builder_renders(explanations, tmp_path):
    """Each builder once: a valid figure, and (with a browser) a PNG of the figure's own size."""
    from PIL import Image

    from xaikit.viz.export import save_figures_png

    builders = _builders(explanations)
    figs = {name: build() for name, build in builders.items()}
    for name, fig in figs.items():
        assert isinstance(fig, go.Figure) and fig.data, name
        fig.to_json()  # valid JSON (no NaN)
    if not png_export_available():
        pytest.skip("no Chrome/Chromium for Kaleido: PNG rendering not checked (see .ci/browser-deps)")
    paths = save_figures_png(list(figs.values()), [tmp_path / n for n in figs])
    for (name, fig), path in zip(figs.items(), paths):
        with Image.open(path) as im:
            assert im.size == (fig.layout.width or 900, fig.layout.height or 500), name
            assert len(np.unique(np.asarray(im.convert("L")))) > 8, f"{name}: the PNG is blank"


def test_overlay_is_transparent_where_the_map_is_zero_and_one_sided_for_gradcam(explanations):
    from xaikit.viz.saliency import alpha_colorscale, overlay

    x, exps = explanations
    signed = alpha_colorscale("signed")
    assert signed[len(signed) // 2][1].endswith(",0.000)") and signed[0][1].endswith(",1.000)")
    assert alpha_colorscale("positive")[0][1].endswith(",0.000)")
    fig = overlay(x[0], exps["gradcam"].maps[0])  # Grad-CAM maps are non-negative: sign="auto" -> one-sided
    sal = fig.data[1]
    assert sal.zmin == 0 and sal.colorbar.title.text == "positive"
    assert not fig.layout.xaxis.showgrid and not fig.layout.yaxis.showgrid
    assert overlay(x[0], exps["gradient"].maps[0]).data[1].zmin == -1  # signed maps keep the diverging scale


def test_method_grid_rows_say_id_true_class_and_probability(explanations):
    from xaikit.viz.saliency import method_grid

    x, exps = explanations
    fig = method_grid(x, exps, class_names=["normal", "pneumonia"])
    p = float(exps["gradient"].probs[1, exps["gradient"].preds[1]])
    assert fig.layout.yaxis3.title.text.startswith("img1<br>true pneumonia<br>pred ")
    assert fig.layout.yaxis3.title.text.endswith(f"{p:.2f}")
    bars = [t.colorbar.title.text for t in fig.data if t.name == "saliency" and t.showscale]
    assert bars == ["relevance", "positive"]  # one colour bar per scale, gradient signed and Grad-CAM one-sided


def test_overlay_on_the_original_image_resolution(explanations):
    from xaikit.data import Preprocess
    from xaikit.viz.saliency import overlay

    _, exps = explanations
    original = RNG.random((65, 103))  # a radiograph's aspect ratio; the model saw a 32 x 32 letterbox
    fig = overlay(original, exps["gradient"].maps[0], preprocess=Preprocess(size=32, mode="letterbox"))
    assert np.shape(fig.data[1].z) == (65, 103)
    with pytest.raises(Exception, match="preprocess=ckpt.preprocess"):
        overlay(original, exps["gradient"].maps[0])


def test_save_figure_writes_plotlyjs_once(tmp_path):
    from xaikit.viz.export import save_figure

    for k in range(2):
        save_figure(go.Figure(go.Scatter(y=[1, 2])), tmp_path / f"f{k}", png=False)
    pages = [(tmp_path / f"f{k}.html").read_text() for k in range(2)]
    assert all('src="plotly.min.js"' in p and len(p) < 100_000 for p in pages)
    assert (tmp_path / "plotly.min.js").stat().st_size > 1e6


def test_static_figures_renderer_and_its_fallback(monkeypatch):
    import plotly.io as pio

    from xaikit.viz import display

    before = pio.renderers.default
    try:
        monkeypatch.setattr(display, "png_export_available", lambda: False)
        with pytest.warns(UserWarning, match="apt-get install chromium"):
            assert display.use_static_figures() == "plotly_mimetype"
        monkeypatch.setattr(display, "png_export_available", lambda: True)
        monkeypatch.setattr(display, "_start_png_server", lambda: None)
        assert display.use_static_figures() == "plotly_mimetype+png"  # tests/test_notebooks.py checks the PNGs
    finally:
        pio.renderers.default = before


def test_readable_tables():
    from xaikit.viz.tables import format_p, readable

    assert ([format_p(p) for p in (0.0, 5e-5, 1e-4, 0.1671, float("nan"))]
            == ["< 1e-4", "< 1e-4", "0.0001", "0.1671", "—"])
    t = readable(pd.DataFrame({"n_a": [3.0, np.nan], "p_raw": [1e-7, 0.5], "significant": [True, False],
                               "converged": [False, True], "effect_size": [0.123456, -1.0]}))
    assert t.to_dict("list") == {"n_a": ["3", "—"], "p_raw": ["< 1e-4", "0.5000"], "significant": ["yes", "no"],
                                 "converged": ["no", "yes"], "effect_size": [0.1235, -1.0]}


def test_readme_explain_my_image_snippet_runs(tmp_path, monkeypatch, capsys):
    """The README's eight lines, as written (one import line), on a shipped phantom: an overlay file titled with the
    prediction and the domain flag, the same line printed, no warning."""
    import re
    from pathlib import Path

    from xaikit.domain import OutOfDomainWarning

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    code = re.search(r"## Explain my image\s+```python\n(.*?)```", readme, re.S).group(1)
    lines = code.strip().splitlines()
    assert len(lines) == 8 and sum(line.startswith(("import ", "from ")) for line in lines) == 1
    monkeypatch.chdir(root)
    code = code.replace('"my_overlay"', repr(str(tmp_path / "my_overlay")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        namespace: dict = {}
        exec(code, namespace)
    assert (tmp_path / "my_overlay.html").stat().st_size > 0
    assert namespace["exp"].maps.shape[-2:] == namespace["ckpt"].prepare(namespace["image"]).shape[-2:]
    title = namespace["title"]
    assert re.fullmatch(r"predicted: (normal|pneumonia) \(p = \d\.\d{3}\) \| in domain \(0\.\d\d\)", title)
    assert capsys.readouterr().out.strip() == title and title in (tmp_path / "my_overlay.html").read_text()
    assert f"# {title}" in code  # the README's comment shows what it prints
