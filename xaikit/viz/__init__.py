"""Pure Plotly figure builders: every function returns a ``plotly.graph_objects.Figure`` and computes nothing heavy.

Imported inside a Jupyter kernel, this package makes displayed figures carry a static PNG beside the
interactive JSON (:func:`xaikit.viz.display.use_static_figures`), so executed notebooks show their figures on
GitHub and nbviewer.
"""
from .display import _auto

_auto()
