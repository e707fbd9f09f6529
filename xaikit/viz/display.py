"""How figures display in notebooks: interactive, with a static PNG stored beside the interactive JSON.

A Plotly figure shown in Jupyter is saved in the notebook as ``application/vnd.plotly.v1+json`` only, which
GitHub, nbviewer and ``jupyter nbconvert --to html`` cannot draw: an executed notebook then shows no figures.
:func:`use_static_figures` sets Plotly's default renderer to ``plotly_mimetype+png``, so every displayed
figure carries both the interactive JSON (JupyterLab, VS Code and Colab draw it) and a PNG (everything else
draws that). The kit calls it when :mod:`xaikit.viz` is first imported inside a Jupyter kernel, unless the
user chose a renderer with Plotly's own ``PLOTLY_RENDERER`` environment variable or set
``XAIKIT_STATIC_FIGURES=0``.

PNG export needs Kaleido and a Chrome/Chromium browser; without one the figures stay interactive only and a
warning says what to install.

Examples
--------
>>> from xaikit.viz.display import use_static_figures
>>> use_static_figures(False)
'plotly_mimetype'
"""
from __future__ import annotations

import atexit
import functools
import os
import sys
import warnings

import plotly.io as pio

from .export import png_export_available

__all__ = ["STATIC_RENDERER", "INTERACTIVE_RENDERER", "use_static_figures", "in_kernel"]

STATIC_RENDERER = "plotly_mimetype+png"
INTERACTIVE_RENDERER = "plotly_mimetype"

#: What the warning says when PNG export is impossible (tests match on it).
NO_PNG_MESSAGE = (
    "xaikit: figures are interactive only, so an executed notebook will show no figures on GitHub, nbviewer or "
    "after `jupyter nbconvert --to html`: a static PNG copy needs Kaleido and a Chrome/Chromium browser "
    "(Debian/Ubuntu: `apt-get install chromium`; or run `plotly_get_chrome`), then restart the kernel."
)


def in_kernel() -> bool:
    """Whether this Python runs inside a Jupyter (IPython) kernel."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def use_static_figures(enable: bool = True) -> str:
    """Store a PNG beside the interactive JSON of every figure displayed from now on; return the renderer.

    Parameters
    ----------
    enable : bool
        ``False`` goes back to interactive-only figures (``plotly_mimetype``).

    Returns
    -------
    str
        The default Plotly renderer now in effect. With ``enable=True`` but no browser for Kaleido, it is
        ``plotly_mimetype`` and a ``UserWarning`` says what to install.
    """
    if enable and not png_export_available():
        warnings.warn(NO_PNG_MESSAGE, UserWarning, stacklevel=2)
        enable = False
    if enable:
        _start_png_server()
    pio.renderers.default = STATIC_RENDERER if enable else INTERACTIVE_RENDERER
    return pio.renderers.default


@functools.lru_cache(maxsize=1)
def _start_png_server() -> None:
    """Keep one headless browser for PNG export: ~0.2 s per figure instead of ~2 s for a browser per figure."""
    import kaleido

    if not hasattr(kaleido, "start_sync_server"):  # Kaleido < 1 keeps its own process between calls
        return
    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)
    # Plotly passes its browser options on every call; a running server ignores them (harmlessly) and says so
    warnings.filterwarnings("ignore", message="The kopts argument is ignored if using a server", category=UserWarning)


def _auto() -> None:
    """Called on the first import of :mod:`xaikit.viz`: static copies in Jupyter kernels, unless opted out."""
    if in_kernel() and "PLOTLY_RENDERER" not in os.environ and os.environ.get("XAIKIT_STATIC_FIGURES", "1") != "0":
        use_static_figures(True)
