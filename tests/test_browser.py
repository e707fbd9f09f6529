"""Widgets and the demo report, verified in a real browser (headless system Chromium driven by Playwright).

A JupyterLab server runs headless on 127.0.0.1; Chromium opens a notebook, runs all cells from the Run menu,
moves an ``alpha`` slider with the keyboard and checks that the Plotly overlay next to it changed: the trace
opacity equals the slider's new value and the rendered pixels differ. Screenshots go to
``test-artifacts/browser/`` (git-ignored). Skipped, with the way to enable it, where Chromium or Playwright
is missing: run ``.ci/browser-deps``.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from browser_util import (
    ARTIFACTS,
    REPO,
    chromium,
    float_slider,
    jupyter_lab,
    missing_requirements,
    nearest_plot,
    open_notebook,
    run_all_cells,
    slider_value,
    smoke_copy,
    trace_opacities,
    write_notebook,
)

MISSING = missing_requirements()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(MISSING is not None, reason=f"browser test: {MISSING}")]

SALIENCY_NOTEBOOK = REPO / "notebooks" / "03_saliency.ipynb"

# Test B's notebook: the mechanism the saliency explorer uses, in miniature (a FloatSlider "alpha" observed
# by a callback that sets the opacity of the overlay heatmap of a plotly FigureWidget).
MECHANISM_CELLS = [
    "import numpy as np\nimport ipywidgets as widgets\nimport plotly.graph_objects as go",
    "rng = np.random.default_rng(0)\n"
    "fig = go.FigureWidget([\n"
    "    go.Heatmap(z=rng.random((32, 32)), colorscale='gray', showscale=False),\n"
    "    go.Heatmap(z=rng.standard_normal((32, 32)), colorscale='RdBu', zmid=0, opacity=0.5),\n"
    "])\n"
    "fig.update_layout(width=420, height=380, margin=dict(l=10, r=10, t=40, b=10), title='alpha mechanism')\n"
    "alpha = widgets.FloatSlider(value=0.5, min=0, max=1, step=0.05, description='alpha')\n"
    "alpha.observe(lambda change: setattr(fig.data[1], 'opacity', change['new']), names='value')\n"
    "widgets.VBox([alpha, fig])",
]


@pytest.fixture(scope="session")
def lab():
    with jupyter_lab(REPO, ARTIFACTS / "jupyterlab.log") as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, chromium(pw) as context:
        yield context


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.errors = []  # uncaught exceptions and console errors, collected for the tests that assert on them
    page.on("pageerror", lambda exc: page.errors.append(f"page error: {exc}"))
    page.on("console",
            lambda msg: page.errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    yield page
    page.close()


def _move_alpha_and_check_overlay(page, screenshot_name: str) -> tuple[float, float]:
    """Move the first "alpha" slider with the keyboard; assert the Plotly overlay beside it changed."""
    slider = float_slider(page, "alpha")
    slider.wait_for(state="visible", timeout=60_000)
    slider.scroll_into_view_if_needed()
    plot = nearest_plot(slider)
    assert plot is not None, "no Plotly graph (.js-plotly-plot) is rendered next to the alpha slider"
    page.wait_for_function("gd => gd._fullData && gd._fullData.length > 0 && gd.querySelector('.main-svg')",
                           arg=plot, timeout=60_000)
    before, before_png, value0 = trace_opacities(plot), plot.screenshot(), slider_value(slider)
    assert any(abs(o - value0) < 1e-6 for o in before), f"no trace has the slider's opacity {value0}: {before}"

    slider.locator(".noUi-handle").focus()
    key = "ArrowRight" if value0 <= 0.5 else "ArrowLeft"
    for _ in range(4):
        page.keyboard.press(key)
    value1 = slider_value(slider)
    assert value1 != value0, f"the alpha slider did not move with {key} (still {value0})"
    # each key press is one round trip through the kernel: wait for the overlay to reach the final value
    deadline, after = time.monotonic() + 30, trace_opacities(plot)
    while not any(abs(o - value1) < 1e-6 for o in after) and time.monotonic() < deadline:
        time.sleep(0.25)
        after = trace_opacities(plot)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed and all(abs(after[i] - value1) < 1e-6 for i in changed), (
        f"after moving alpha {value0} -> {value1}, trace opacities went {before} -> {after}"
    )
    deadline = time.monotonic() + 10  # Plotly redraws on the next animation frame
    while plot.screenshot() == before_png and time.monotonic() < deadline:
        time.sleep(0.2)
    assert plot.screenshot() != before_png, "trace opacity changed but the rendered overlay looks the same"
    plot.evaluate("gd => gd.scrollIntoView({block: 'end'})")  # the figure and the controls above it
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / screenshot_name))
    return value0, value1


def test_alpha_slider_drives_plotly_overlay_in_jupyterlab(lab, page):
    """Test B: the slider -> FigureWidget mechanism, on a notebook generated here (always runs)."""
    nb = write_notebook(ARTIFACTS / "mechanism" / "alpha_mechanism.ipynb", MECHANISM_CELLS, "alpha mechanism")
    rel = nb.relative_to(REPO).as_posix()
    open_notebook(page, lab, rel)
    run_all_cells(page, rel, timeout=90)
    value0, value1 = _move_alpha_and_check_overlay(page, "alpha_mechanism.png")
    assert (value0, value1) == (0.5, 0.7)  # four steps of 0.05 to the right


@pytest.mark.skipif(not SALIENCY_NOTEBOOK.exists(), reason=f"{SALIENCY_NOTEBOOK.relative_to(REPO)} does not exist yet")
def test_saliency_explorer_alpha_changes_overlay(lab, page):
    """Test A: notebook 03 (SMOKE) in JupyterLab; its explorer's alpha slider changes the overlay."""
    nb = smoke_copy(SALIENCY_NOTEBOOK, ARTIFACTS / "03_saliency_smoke.ipynb", ARTIFACTS / "03_outputs")
    rel = nb.relative_to(REPO).as_posix()
    open_notebook(page, lab, rel)
    try:
        run_all_cells(page, rel, timeout=150)
    except AssertionError as err:
        pytest.fail(f"{SALIENCY_NOTEBOOK.name} (SMOKE) in JupyterLab: {err}", pytrace=False)
    _move_alpha_and_check_overlay(page, "saliency_explorer.png")


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory):
    """``xaikit-demo/index.html`` if built, else a SMOKE demo report built into a temporary folder."""
    index = REPO / "xaikit-demo" / "index.html"
    if index.is_file():
        return index
    try:
        import xaikit.demo  # noqa: F401
        from xaikit.samples import sample_dir
    except ImportError as err:
        pytest.skip(f"xaikit.demo cannot be imported ({err}); no demo report to check")
    if not (sample_dir() / "manifest.csv").is_file():
        pytest.skip(f"no sample data at {sample_dir()}: run `python -m xaikit samples` to build it")
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run([sys.executable, "-m", "xaikit", "demo", "--smoke", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, f"`python -m xaikit demo --smoke` failed:\n{done.stderr[-3000:]}"
    return out / "index.html"


# How many Plotly figures of the page were drawn (plotly.js marks the div and adds its SVG layers).
RENDERED_JS = ("() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
               ".filter(d => d.classList.contains('js-plotly-plot') && d.querySelector('.main-svg')).length")


def _check_report_page(page, index) -> None:
    """Open a report offline; every Plotly figure renders and Chromium logs no error; screenshot it."""
    page.goto(index.as_uri(), wait_until="load")
    figures = page.locator(".plotly-graph-div")
    assert figures.count() >= 1, f"{index}: no Plotly figure in the report"
    deadline = time.monotonic() + 60
    while (rendered := page.evaluate(RENDERED_JS)) < figures.count() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert rendered == figures.count(), f"{index}: {rendered} of {figures.count()} Plotly figures rendered"
    assert not page.errors, f"{index}: errors in Chromium:\n" + "\n".join(page.errors)


def test_report_renders_offline(tmp_path, page):
    """The mechanism of the demo report (always runs): a Report's figures render from its local plotly.js."""
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

    from xaikit.report import Report

    report = Report(tmp_path / "report", title="browser check")
    report.section("Figures", "Two figures and a table.")
    report.figure(go.Figure(go.Heatmap(z=np.eye(8))), "heatmap", caption="a heatmap")
    report.figure(go.Figure(go.Scatter(y=[1, 3, 2])), "line", caption="a line")
    report.table(pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25]}), "table", caption="a table")
    index = report.write()
    _check_report_page(page, index)
    assert page.evaluate(RENDERED_JS) == 2
    assert page.locator("table").count() == 1


def test_demo_report_opens_without_errors(demo_index, page):
    """Test C: the demo report renders every Plotly figure in Chromium, offline, without console errors."""
    _check_report_page(page, demo_index)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo_report.png"))


# The 3-D viewer's notebook: a phantom-like volume (a bright ball), a positive map on one side of it and two region
# labels, shown by VolumeExplorer (NiiVue above the Plotly planes); its opacity slider drives both.
VIEWER_CELLS = [
    "import numpy as np\nfrom xaikit.regions import RegionSet\nfrom xaikit.widgets.volume import VolumeExplorer",
    "d, h, w = np.mgrid[:24, :24, :24]\n"
    "ball = ((d - 12) ** 2 + (h - 12) ** 2 + (w - 12) ** 2 < 81).astype(float)\n"
    "blob = np.exp(-((d - 12) ** 2 + (h - 12) ** 2 + (w - 16) ** 2) / 8.0)\n"
    "regions = RegionSet(['left', 'right'], np.stack([ball * (w < 12) > 0, ball * (w >= 12) > 0]), ndim=3)\n"
    "explorer = VolumeExplorer(ball, {'blob': blob}, regions=regions, sign='positive', alpha=1.0)\n"
    "explorer.viewer",
    "explorer",
]


def _niivue_canvas(page):
    """The NiiVue canvas of the page, once it drew something (WebGL2; Chromium renders it in software here)."""
    canvas = page.locator(".jp-OutputArea-output canvas").first
    canvas.wait_for(state="visible", timeout=60_000)
    canvas.scroll_into_view_if_needed()
    return canvas


def _warm_pixels(png: bytes) -> int:
    """How many pixels of the planes (the canvas less its bottom fifth, where the colour bars are) are in NiiVue's
    "warm" colour map (red/orange/yellow; not grey, not the green crosshair, not the pale region labels)."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    rgb = rgb[: int(0.8 * rgb.shape[0])]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > 150) & (r - b > 100) & (g - b > 20)).sum())


def _label_blue_pixels(png: bytes) -> int:
    """Pixels of the second region label's light blue (86, 180, 233) blended over the scan."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((b > 200) & (b - r > 20) & (g > r) & (b > g)).sum())


def test_niivue_viewer_shows_the_map_and_follows_opacity(lab, page):
    """The 3-D viewer (NiiVue via ipyniivue) draws the map over the scan; the opacity slider hides it."""
    nb = write_notebook(ARTIFACTS / "viewer" / "niivue_viewer.ipynb", VIEWER_CELLS, "NiiVue viewer")
    rel = nb.relative_to(REPO).as_posix()
    page.set_viewport_size({"width": 1000, "height": 1600})  # the whole viewer on screen (software WebGL2)
    open_notebook(page, lab, rel)
    run_all_cells(page, rel, timeout=120)
    canvas = _niivue_canvas(page)
    deadline, warm = time.monotonic() + 60, 0
    while warm < 50 and time.monotonic() < deadline:  # the volumes load asynchronously
        time.sleep(0.5)
        warm = _warm_pixels(canvas.screenshot())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "niivue_viewer.png"))
    assert warm >= 50, f"the NiiVue canvas shows no map overlay ({warm} warm pixels); page errors: {page.errors}"

    slider = float_slider(page, "opacity")
    slider.locator(".noUi-handle").focus()
    for _ in range(20):  # 1.0 -> 0.0 in steps of 0.05
        page.keyboard.press("ArrowLeft")
    assert slider_value(slider) == 0.0
    deadline, hidden = time.monotonic() + 30, warm
    while hidden > warm // 20 and time.monotonic() < deadline:
        time.sleep(0.5)
        png = canvas.screenshot()
        hidden = _warm_pixels(png)
    page.screenshot(path=str(ARTIFACTS / "niivue_viewer_opacity0.png"))
    assert hidden <= warm // 20, f"opacity 0 left {hidden} of {warm} warm pixels: the slider does not reach NiiVue"
    assert _label_blue_pixels(png) > 100, "the region labels are not drawn under the map"
