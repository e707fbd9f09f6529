"""Image figures and the image browser: windows, masks, volumes, static views."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xaikit.errors import ArgumentError
from xaikit.io import MedicalImage
from xaikit.viz.image import display_stride, image_view, mosaic, slice_view
from xaikit.widgets.browser import ImageBrowser


def test_image_figure_applies_window_and_masks():
    img = MedicalImage(np.arange(64, dtype=np.float32).reshape(8, 8), window=(40.0, 20.0))
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    fig = image_view(img, masks={"lesion": mask})
    base, overlay = fig.data
    assert (base.zmin, base.zmax) == (30.0, 50.0)
    z = np.asarray(overlay.z, dtype=float)
    assert np.isnan(z[~mask]).all() and (z[mask] == 1).all()
    assert overlay.name == "lesion"


def test_large_images_are_subsampled_for_display_only():
    arr = np.random.default_rng(0).random((1500, 1000)).astype(np.float32)
    fig = image_view(arr)
    assert display_stride(arr.shape) == 3
    assert np.asarray(fig.data[0].z).shape == (500, 334)
    assert fig.data[0].dx == 3


def test_volume_figure_picks_slice_and_labels():
    vol = np.zeros((4, 6, 6), np.float32)
    vol[2] = 5
    lab = np.zeros((4, 6, 6), int)
    lab[2, 1:3, 1:3] = 3
    fig = slice_view(vol, 2, labelmap=lab, names={3: "left_lung"})
    assert np.all(np.asarray(fig.data[0].z) == 5)
    assert [t.name for t in fig.data] == ["image", "left_lung"]
    with pytest.raises(ArgumentError, match="outside 0..3"):
        slice_view(vol, 4)


def test_bad_shapes_are_refused():
    with pytest.raises(ArgumentError, match="2D"):
        image_view(np.zeros((2, 3, 4)))
    with pytest.raises(ArgumentError, match="one shape"):
        mosaic([np.zeros((2, 2)), np.zeros((3, 3))])


def test_browser_moves_index_window_and_toggles():
    images = [MedicalImage(np.full((8, 8), float(i)), window=(i, 2.0)) for i in range(3)]
    masks = [{"heart": np.eye(8, dtype=bool)} for _ in range(3)]
    b = ImageBrowser.from_images(images, masks, titles=["a", "b", "c"])
    w = b.widget
    assert w is b.widget
    b.index.value = 2
    assert np.all(np.asarray(b.figure.data[0].z) == 2.0)
    assert b.figure.layout.title.text == "c"
    assert (b.level.value, b.width.value) == (2.0, 2.0)
    b.width.value = 4.0
    assert (b.figure.data[0].zmin, b.figure.data[0].zmax) == (0.0, 4.0)
    b.toggles["heart"].value = False
    assert b.figure.data[1].visible is False
    assert b.show(1).layout.title.text == "b"


def test_browser_over_volume_and_bad_input():
    vol = MedicalImage(np.random.default_rng(1).random((5, 8, 8)).astype(np.float32))
    lab = np.zeros((5, 8, 8), int)
    lab[:, :4] = 1
    b = ImageBrowser.from_volume(vol, lab, {1: "body"})
    assert b.n == 5 and b.label == "slice"
    assert [t.name for t in b.show(3).data] == ["image", "body"]
    with pytest.raises(ArgumentError, match="differs"):
        ImageBrowser.from_volume(vol, lab[:4])
    with pytest.raises(ArgumentError, match="outside"):
        b.show(9)


def test_widget_state_is_strict_json_even_with_transparent_pixels():
    """NaN gaps would make the FigureWidget's comm messages (and saved notebooks) invalid JSON."""
    import json

    import plotly.graph_objects as go

    from xaikit.viz.saliency import overlay
    from xaikit.widgets.browser import ImageBrowser

    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    browser = ImageBrowser.from_images([MedicalImage(np.random.default_rng(0).random((16, 16)))], masks=[{"m": mask}])
    widget = browser.widget
    blended = go.FigureWidget(overlay(np.zeros((16, 16)), np.random.default_rng(1).normal(size=(16, 16)),
                                      threshold_pct=80))
    for state in (browser.figure.get_state(), blended.get_state()):
        json.dumps({k: v for k, v in state.items() if k.startswith("_widget_data")}, allow_nan=False)
    z = np.asarray(browser.figure.data[1].z, dtype=float)
    assert np.isnan(z[~mask]).all() and (z[mask] == 1).all()
    assert widget is browser.widget


def _fake_kaleido(monkeypatch, drop: str, retry_writes: bool):
    """Kaleido's batch call writes every figure but ``drop`` (as it does when one render times out)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    from xaikit.viz import export

    def write_images(figs, paths, **kw):
        for p in paths:
            if f".{drop}.~" not in p:
                Path(p).write_bytes(b"png")

    def write_image(self, path, **kw):
        if not retry_writes:
            raise RuntimeError("render timed out")
        Path(path).write_bytes(b"retried")

    monkeypatch.setattr(export, "png_export_available", lambda: True)
    monkeypatch.setattr(pio, "write_images", write_images)
    monkeypatch.setattr(go.Figure, "write_image", write_image)
    return [go.Figure() for _ in range(3)]


def test_a_figure_the_batch_dropped_is_rendered_again(tmp_path, monkeypatch):
    from xaikit.viz.export import save_figures_png

    figs = _fake_kaleido(monkeypatch, drop="b", retry_writes=True)
    written = save_figures_png(figs, [tmp_path / n for n in "abc"])
    assert [p.read_bytes() for p in written] == [b"png", b"retried", b"png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png"]  # no temporaries left


def test_a_figure_that_cannot_be_rendered_is_a_clear_error_and_nothing_is_left(tmp_path, monkeypatch):
    from xaikit.errors import ImageWriteError
    from xaikit.viz.export import save_figures_png

    figs = _fake_kaleido(monkeypatch, drop="b", retry_writes=False)
    with pytest.raises(ImageWriteError, match=r"b\.png: Kaleido could not render this figure .*render timed out"):
        save_figures_png(figs, [tmp_path / n for n in "abc"])
    assert list(tmp_path.iterdir()) == []
