"""Output weight: the demo report within 5 MB (plus one shared plotly.js), one plotly.js per output tree,
report figures as float32 typed arrays, overlays at display resolution, table texts kept short."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from xaikit.report import CELL_CHARS, PAGE_WIDTH, Report
from xaikit.viz.export import compact_figure, save_figure, save_png
from xaikit.viz.image import plotly_z

MB = 1024 * 1024


def _tree_size(root: Path, skip: str = "plotly.min.js") -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != skip)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from xaikit.demo import run_demo
    from xaikit.samples import sample_dir

    if not (sample_dir() / "manifest.csv").is_file():
        pytest.skip(f"no sample data at {sample_dir()}: run `python -m xaikit samples`")
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, smoke=True)
    return out


def test_demo_report_is_within_5_mb_with_one_plotlyjs(demo):
    scripts = list(demo.rglob("plotly.min.js"))
    assert len(scripts) == 1 and scripts[0].parent == demo and scripts[0].stat().st_size > 3 * MB
    size = _tree_size(demo)
    assert size <= 5 * MB, f"the demo report weighs {size / MB:.1f} MB besides plotly.js (limit 5 MB)"
    page = (demo / "index.html").read_text()
    assert page.count("<script src='plotly.min.js'>") == 1 and '"dtype":"f4"' in page


def test_report_figures_are_float32_with_gaps_kept():
    z = np.random.default_rng(0).random((256, 256))
    z[:, :50] = np.nan
    fig = go.Figure(go.Heatmap(z=plotly_z(z)))  # JSON lists with None, as the figure builders make them
    small = compact_figure(fig)
    assert small.data[0].z.dtype == np.float32 and np.isnan(small.data[0].z[:, :50]).all()
    np.testing.assert_allclose(small.data[0].z[:, 50:], z[:, 50:], rtol=1e-6)
    before = len(fig.to_html(include_plotlyjs=False, full_html=False))
    after = len(small.to_html(include_plotlyjs=False, full_html=False))
    assert after < 0.6 * before, (before, after)
    assert isinstance(fig.data[0].z, tuple)  # the caller's figure is left alone


def test_wide_figures_are_scaled_to_the_page_and_the_toolbar_leaves_titles_free():
    fig = go.Figure(go.Scatter(y=[1, 2]), layout={"width": 2 * PAGE_WIDTH, "height": 600, "title": "t"})
    small = compact_figure(fig, max_width=PAGE_WIDTH)
    assert (small.layout.width, small.layout.height) == (PAGE_WIDTH, 300)
    assert compact_figure(fig).layout.width == 2 * PAGE_WIDTH  # no limit: size kept
    assert small.layout.modebar.orientation == "v"


def test_long_table_texts_are_shortened_in_the_page_only(tmp_path):
    long = "a detail " * 40
    rep = Report(tmp_path, title="t")
    rep.table(pd.DataFrame({"check": ["x"], "detail": [long]}), "audit", caption="Audit.")
    page = rep.write().read_text()
    assert long.strip() not in page and "the CSV has them in full" in page
    cell = page.split("<td>")[2].split("</td>")[0]
    assert cell.endswith("…") and len(cell) <= CELL_CHARS + 2
    assert pd.read_csv(tmp_path / "audit.csv")["detail"][0] == long  # the CSV keeps it


def test_figures_of_one_output_tree_share_one_plotlyjs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig = go.Figure(go.Scatter(y=[1, 2]))
    save_figure(fig, tmp_path / "out" / "a", png=False)
    save_figure(fig, tmp_path / "out" / "sub" / "deeper" / "b", png=False)
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("plotly.min.js")] == [Path("out/plotly.min.js")]
    assert 'src="../../plotly.min.js"' in (tmp_path / "out" / "sub" / "deeper" / "b.html").read_text()
    shared = tmp_path / "shared" / "plotly.min.js"
    save_figure(fig, tmp_path / "elsewhere" / "c", png=False, plotlyjs=shared)
    assert shared.stat().st_size > 1e6
    assert 'src="../shared/plotly.min.js"' in (tmp_path / "elsewhere" / "c.html").read_text()


def test_overlays_are_written_at_display_resolution(tmp_path):
    from xaikit.cli.outputs import OVERLAY_SIDE

    yy, xx = np.mgrid[:2000, :1600] / 2000.0
    rgb = (np.stack([yy, xx, 0.5 * (yy + xx)], axis=2) * 255).astype(np.uint8)  # a smooth full-size picture
    path = save_png(rgb, tmp_path / "o.png", max_side=OVERLAY_SIDE)
    with Image.open(path) as im:
        assert im.size == (round(1600 * OVERLAY_SIDE / 2000), OVERLAY_SIDE)
    assert path.stat().st_size <= 300_000
    small = save_png(rgb[:100, :80], tmp_path / "s.png", max_side=OVERLAY_SIDE)
    with Image.open(small) as im:
        assert im.size == (80, 100)  # never enlarged
