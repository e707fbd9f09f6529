"""Layer views: a layer's activations per filter (equal to the layer's output), pages of filter maps, the widget
paging through them, volumes; bad layers and pages raise."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xaikit.errors import XaikitError
from xaikit.saliency import cam_layer, layer_activations
from xaikit.viz.layers import activation_overlay, filter_grid, filter_page

from saliency_helpers import assert_unchanged, snapshot, tiny_cnn, tiny_inputs


def _output(model, layer, x):
    store = {}
    handle = layer.register_forward_hook(lambda m, a, o: store.setdefault("out", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    return store["out"]


def test_activations_are_the_layer_output_and_the_model_is_untouched():
    model, x = tiny_cnn(bn=True).float(), tiny_inputs(3).float()
    model.train()
    before = snapshot(model)
    view = layer_activations(model, x, "features.2", image_ids=["a", "b", "c"])
    model.eval()
    ref = _output(model, model.features[2], x)
    model.train()
    torch.testing.assert_close(view.acts, ref)
    assert view.n_filters == 4 and view.image_ids == ["a", "b", "c"] and view.input_size == (8, 8)
    assert view.strongest(1) == ref[1].flatten(1).mean(1).argsort(descending=True).tolist()
    assert_unchanged(model, before)
    default = layer_activations(model.eval(), x)
    assert default.layer == cam_layer(model, x[:1])  # the CAM layer rule


def test_filter_pages_and_figures():
    model, x = tiny_cnn().float(), tiny_inputs(2).float()
    view = layer_activations(model, x, "features.3")  # 6 filters
    assert filter_page(6, 1, 4) == [4, 5]
    fig = filter_grid(view, image=1, page=1, page_size=4)
    assert len(fig.data) == 2 and [a.text for a in fig.layout.annotations] == ["filter 4", "filter 5"]
    np.testing.assert_allclose(fig.data[0].z, view.acts[1, 4].numpy()[::-1])
    assert activation_overlay(x[0], view).layout.title.text == "mean activation of features.3"
    with pytest.raises(XaikitError, match="page=2 with page_size=4 is past the 6 filters"):
        filter_grid(view, page=2, page_size=4)
    with pytest.raises(XaikitError, match=r"filters \[9\] do not exist"):
        filter_grid(view, filters=[0, 9])
    with pytest.raises(XaikitError, match="outputs shape .* without the spatial axes"):
        layer_activations(model, x, "fc")


def test_widget_pages_through_filters():
    from xaikit.widgets.layers import LayerViewer

    model, x = tiny_cnn().float(), tiny_inputs(2).float()
    view = layer_activations(model, x, "features.3")
    viewer = LayerViewer(view, page_size=4)
    viewer.page.value = 1
    assert viewer.filters() == [4, 5] and [t.visible for t in viewer.figure.data] == [True, True, False, False]
    viewer.image.value, viewer.order.value, viewer.page.value = 1, "strongest", 0
    first = view.strongest(1)[0]
    np.testing.assert_allclose(viewer.figure.data[0].z, view.acts[1, first].numpy()[::-1])


def test_volumes_show_their_middle_slice():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                          nn.Linear(3, 2)).eval()
    x = torch.rand(1, 1, 6, 8, 8)
    view = layer_activations(model, x, "1")
    assert view.acts.shape == (1, 3, 6, 8, 8)
    np.testing.assert_allclose(filter_grid(view).data[2].z, view.acts[0, 2, 3].numpy()[::-1])
