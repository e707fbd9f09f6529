"""Image browsers: an index (or slice) slider, window/level sliders and mask toggles over :mod:`xaikit.viz.image`.

The callbacks only change what the figure shows (pixels of the chosen item, ``zmin``/``zmax``, trace
visibility); reading and drawing live in :mod:`xaikit.io` and :mod:`xaikit.viz`.
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import plotly.graph_objects as go

from ..errors import ArgumentError
from ..io.image import MedicalImage
from ..viz.image import display_stride, image_view, plotly_z

__all__ = ["View", "ImageBrowser"]


class View(NamedTuple):
    """What a browser shows for one index: a 2D plane, its default window, masks and a title."""

    plane: np.ndarray
    window: tuple[float, float]
    masks: Mapping[str, np.ndarray]
    title: str


def _view_of(image: MedicalImage, masks: Mapping[str, np.ndarray] | None, title: str) -> View:
    return View(image.array, image.window, dict(masks or {}), title)


class ImageBrowser:
    """Browse images (or the slices of a volume) with window/level sliders and mask overlay toggles.

    Parameters
    ----------
    get_view : callable ``int -> View``
        Returns what to show for an index (see the ``from_*`` constructors).
    n : int
        Number of indices.
    label : str
        Name of the index slider ("image" or "slice").

    Examples
    --------
    >>> import numpy as np
    >>> from xaikit.io import MedicalImage
    >>> b = ImageBrowser.from_images([MedicalImage(np.random.rand(32, 32)) for _ in range(3)])
    >>> b.show(1).layout.title.text
    'image 1'
    """

    def __init__(self, get_view: Callable[[int], View], n: int, *, label: str = "image", height: int = 460):
        if n < 1:
            raise ArgumentError(f"ImageBrowser needs at least one item; got n={n}.")
        self._get_view, self.n, self.label, self.height = get_view, int(n), label, height
        self._widget = None

    # ---- constructors -------------------------------------------------------------------------
    @classmethod
    def from_images(
        cls,
        images: Sequence[MedicalImage],
        masks: Sequence[Mapping[str, np.ndarray]] | None = None,
        titles: Sequence[str] | None = None,
    ) -> "ImageBrowser":
        """Browse a list of 2D :class:`MedicalImage` with optional per-image masks and titles."""
        if masks is not None and len(masks) != len(images):
            raise ArgumentError(f"masks has {len(masks)} entries for {len(images)} images; give one dict per image.")

        def get(i: int) -> View:
            title = titles[i] if titles is not None else f"image {i}"
            return _view_of(images[i], masks[i] if masks is not None else None, title)

        return cls(get, len(images))

    @classmethod
    def from_volume(
        cls,
        volume: MedicalImage,
        labelmap: np.ndarray | None = None,
        names: Mapping[int, str] | None = None,
        *,
        axis: int = 0,
    ) -> "ImageBrowser":
        """Browse the slices of a ``(D, H, W)`` volume along ``axis``; label map values become mask overlays."""
        if not volume.is_volume:
            raise ArgumentError(f"from_volume needs a 3D MedicalImage; got shape {volume.shape}.")
        if labelmap is not None and np.shape(labelmap) != volume.shape:
            raise ArgumentError(f"labelmap shape {np.shape(labelmap)} differs from the volume's {volume.shape}.")
        values = names or ({int(v): f"label_{int(v)}" for v in np.unique(labelmap) if v}
                           if labelmap is not None else {})

        def get(i: int) -> View:
            plane = np.take(volume.array, i, axis=axis)
            masks = {}
            if labelmap is not None:
                lab = np.take(labelmap, i, axis=axis)
                masks = {name: lab == value for value, name in values.items() if value}
            return View(plane, volume.window, masks, f"slice {i} (axis {axis})")

        return cls(get, volume.shape[axis], label="slice")

    @classmethod
    def from_dataset(cls, dataset, *, masks: bool = True) -> "ImageBrowser":
        """Browse a :class:`xaikit.data.ManifestDataset` in physical units (before any preprocessing).

        Titles show the image id and class, never a patient identifier.
        """
        raw = copy.copy(dataset)  # same rows, read without Preprocess/augmentation: the browser shows the file
        raw.preprocess, raw.transform = None, None

        def get(i: int) -> View:
            sample = raw[i]
            meta = sample["meta"]
            image = MedicalImage(sample["image"][0].numpy(), window=(meta["window_center"], meta["window_width"]))
            mask_dict = {k: v.numpy() for k, v in sample["masks"].items()} if masks else None
            return _view_of(image, mask_dict, f"{sample['id']} — {dataset.classes[sample['label']]}")

        return cls(get, len(dataset))

    # ---- pure part: a static figure for any index and window ------------------------------------
    def show(self, index: int = 0, window: tuple[float, float] | None = None) -> go.Figure:
        """The static figure for ``index`` (what the widget shows); use it where widget state is not saved."""
        if not 0 <= index < self.n:
            raise ArgumentError(f"{self.label} index {index} is outside 0..{self.n - 1}.")
        view = self._get_view(index)
        return image_view(view.plane, window=window or view.window, masks=view.masks, title=view.title,
                            height=self.height)

    # ---- widget wiring --------------------------------------------------------------------------
    @property
    def widget(self):
        """The ipywidgets box (built on first use)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _build(self):
        import ipywidgets as w

        view = self._get_view(0)
        self.figure = go.FigureWidget(self.show(0))
        center, width = view.window
        span = max(float(np.nanmax(view.plane) - np.nanmin(view.plane)), width, 1e-6)
        self.index = w.IntSlider(0, 0, self.n - 1, description=self.label, continuous_update=False)
        self.level = w.FloatSlider(center, min=center - span, max=center + span, step=span / 200, description="level")
        self.width = w.FloatSlider(width, min=span / 100, max=2 * span, step=span / 200, description="width")
        self.toggles = {name: w.Checkbox(True, description=name, indent=False) for name in view.masks}
        self.index.observe(self._on_index, "value")
        self.level.observe(self._on_window, "value")
        self.width.observe(self._on_window, "value")
        for name, box in self.toggles.items():
            box.observe(lambda change, name=name: self._on_toggle(name, change["new"]), "value")
        controls = w.HBox([w.VBox([self.index, self.level, self.width]), w.VBox(list(self.toggles.values()))])
        return w.VBox([controls, self.figure])

    def _on_index(self, change) -> None:
        view = self._get_view(change["new"])
        stride = display_stride(view.plane.shape)
        with self.figure.batch_update():
            self.figure.data[0].z = view.plane[::stride, ::stride]
            self.figure.data[0].dx = self.figure.data[0].dy = stride
            for trace in self.figure.data[1:]:
                mask = view.masks.get(trace.name)
                trace.z = (None if mask is None
                           else plotly_z(np.where(np.asarray(mask)[::stride, ::stride], 1.0, np.nan)))
                trace.dx = trace.dy = stride
            self.figure.layout.title.text = view.title
        self.level.value, self.width.value = view.window

    def _on_window(self, _change) -> None:
        lo, hi = self.level.value - self.width.value / 2, self.level.value + self.width.value / 2
        self.figure.data[0].update(zmin=lo, zmax=hi)

    def _on_toggle(self, name: str, visible: bool) -> None:
        for trace in self.figure.data[1:]:
            if trace.name == name:
                trace.visible = visible
