"""A static HTML report: sections of text, figures (Plotly and PNG) and tables (CSV + HTML).

The report folder is self-contained and opens offline: plotly.js is written once beside ``index.html`` (the
1.5 MB cartesian bundle when it draws every figure, see :func:`xaikit.viz.export.report_plotlyjs`), the figures'
theme once in the page, every table is also a CSV, every picture also a PNG. Files are written atomically.

Examples
--------
>>> import tempfile, pandas as pd
>>> rep = Report(tempfile.mkdtemp(), title="demo")
>>> rep.section("Data", "What was loaded.")
>>> rep.table(pd.DataFrame({"a": [1, 2]}), "counts", caption="Counts")
>>> path = rep.write()
>>> path.name
'index.html'
"""
from __future__ import annotations

import datetime as _dt
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._util import atomic_write
from .errors import ArgumentError
from .viz.export import compact_figure, png_export_available, report_plotlyjs, save_figures_png, save_png
from .viz.tables import readable

__all__ = ["Report", "compact_figure"]

_SLUG = re.compile(r"[^a-z0-9_.-]+")
#: ``\u002f`` not itself escaped (an even number of backslashes before it).
_ESCAPED_SLASH = re.compile(r"(?<!\\)((?:\\\\)*)\\u002f")
#: An image trace's embedded picture as Plotly's JSON writes it ("/" as \u002f, so no "</script>" can occur).
_IMAGE_SOURCE = re.compile(r'"source":("data:image(?:/|\\u002f)[a-z]+;base64,(?:[A-Za-z0-9+=/]|\\u002f)+")')

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;\
margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}\
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f3f3f3}figure{margin:1em 0}figcaption{color:#555;font-size:0.9em}
img{max-width:100%}figure{overflow-x:auto}td{white-space:nowrap}.note{color:#666;font-size:0.9em}\
.warn{background:#fff4e0;border-left:4px solid #f0a000;padding:4px 8px}
nav a{margin-right:1em}
"""


#: Widest figure (px) that fits the page's text column (``max-width:1100px`` less padding).
PAGE_WIDTH = 1060
#: Colours of the figures' PNG copies (a palette PNG: plots have few colours; overlays keep 256 shades).
PNG_COLORS = 256
#: Longest text shown in a table cell (the CSV keeps the full text).
CELL_CHARS = 80


def _shorten(df: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Text cells longer than :data:`CELL_CHARS` cut at a word with "…": rows stay one line tall (a wide table
    scrolls sideways in its box)."""
    out, cut = df.copy(), False
    for col in out.columns:
        long = out[col].map(lambda v: isinstance(v, str) and len(v) > CELL_CHARS)
        if long.any():
            cut = True
            out.loc[long, col] = out.loc[long, col].map(lambda v: v[:CELL_CHARS].rsplit(" ", 1)[0] + " …")
    return out, cut


def _slug(name: str) -> str:
    s = _SLUG.sub("_", name.lower()).strip("_")
    if not s:
        raise ArgumentError(f"name {name!r} gives an empty file name; use letters or digits.")
    return s


@dataclass
class Report:
    """Collects sections, figures and tables, then writes ``index.html`` into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Folder for the report (created). Existing files of the same names are replaced atomically.
    title : str
        Page title.
    """

    out_dir: Path
    title: str = "xaikit report"
    _blocks: list[str] = field(default_factory=list, repr=False)
    _toc: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _names: set[str] = field(default_factory=set, repr=False)
    _pending_png: list[tuple[go.Figure, Path]] = field(default_factory=list, repr=False)
    _templates: dict[str, int] = field(default_factory=dict, repr=False)
    _images: dict[str, int] = field(default_factory=dict, repr=False)
    _traces: set[str] = field(default_factory=set, repr=False)
    files: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def _unique(self, name: str) -> str:
        slug = _slug(name)
        if slug in self._names:
            raise ArgumentError(f"report item name {name!r} is used twice; give each figure/table its own name.")
        self._names.add(slug)
        return slug

    def section(self, title: str, text: str = "") -> None:
        """Start a section with a heading and an optional paragraph (plain text, escaped)."""
        anchor = self._unique("sec_" + title)
        self._toc.append((anchor, title))
        self._blocks.append(f'<h2 id="{anchor}">{html.escape(title)}</h2>')
        if text:
            self.text(text)

    def text(self, text: str, *, kind: str = "p") -> None:
        """A paragraph (``kind="p"``), a note or a warning box."""
        cls = {"p": "", "note": ' class="note"', "warn": ' class="warn"'}[kind]
        self._blocks.append(f"<p{cls}>{html.escape(text)}</p>")

    def figure(self, fig: go.Figure, name: str, *, caption: str = "") -> None:
        """Embed a Plotly figure (interactive); ``<name>.png`` is written by :meth:`write` when PNG export is
        possible."""
        slug = self._unique(name)
        small = compact_figure(fig, max_width=PAGE_WIDTH)
        div = self._shared_images(self._shared_template(small, small.to_html(
            include_plotlyjs=False, full_html=False, default_height=fig.layout.height or 450)))
        self._pending_png.append((fig, self.out_dir / f"{slug}.png"))
        self._traces.update(t.type for t in small.data)
        self._blocks.append(f"<figure>{div}<figcaption>{html.escape(caption)}</figcaption></figure>")

    def _shared_template(self, fig: go.Figure, div: str) -> str:
        """``div`` with the figure's theme (Plotly's template, ~7 KB of JSON in every figure) replaced by a
        reference to one copy in the page's head; left as it is if the JSON is not found verbatim."""
        from plotly.io.json import to_json_plotly

        if fig.layout.template is None:
            return div
        text = '"template":' + to_json_plotly(fig.layout.template)
        if text not in div:
            return div
        k = self._templates.setdefault(text, len(self._templates))
        return div.replace(text, f'"template":xaikitTemplates[{k}]')

    @staticmethod
    def _slashes(text: str) -> str:
        """Plotly's JSON writes "/" as ``\\u002f`` (6 bytes; base64 typed arrays are full of them: 20% of a page).
        It escapes "<" too, so a plain "/" can never close the script: written as "/" again."""
        return _ESCAPED_SLASH.sub(lambda m: m.group(1) + "/", text)

    def _shared_images(self, div: str) -> str:
        """``div`` with each embedded picture (``go.Image`` sources: a method grid repeats an image in every
        column) replaced by a reference to one copy in the page's head."""
        def hoist(match: re.Match) -> str:
            k = self._images.setdefault(match.group(1), len(self._images))
            return f'"source":xaikitImages[{k}]'

        return self._slashes(_IMAGE_SOURCE.sub(hoist, div))

    def image(self, array: np.ndarray, name: str, *, caption: str = "") -> None:
        """Write an image (grey [0, 1] or RGB) as ``<name>.png`` and show it."""
        slug = self._unique(name)
        path = save_png(array, self.out_dir / f"{slug}.png")
        self.files.append(path)
        self._blocks.append(
            f'<figure><img src="{path.name}" alt="{html.escape(caption or name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def table(self, df: pd.DataFrame, name: str, *, caption: str = "", max_rows: int = 40, digits: int = 4) -> None:
        """Write ``<name>.csv`` (all rows, full precision) and show the first ``max_rows`` for reading
        (:func:`xaikit.viz.tables.readable`: p-values as ``< 1e-4``, counts as integers, flags as words)."""
        slug = self._unique(name)
        path = self.out_dir / f"{slug}.csv"
        with atomic_write(path, "w") as fh:
            df.to_csv(fh, index=False)
        self.files.append(path)
        shown, cut = _shorten(readable(df.head(max_rows), digits))
        if cut:
            caption = f"{caption} Long texts are shortened here (…); the CSV has them in full.".strip()
        more = (
            f'<p class="note">Showing {max_rows} of {len(df)} rows; '
            f'all rows in <a href="{path.name}">{path.name}</a>.</p>'
            if len(df) > max_rows
            else f'<p class="note">Table as CSV: <a href="{path.name}">{path.name}</a>.</p>'
        )
        self._blocks.append(
            f"<figure>{shown.to_html(index=False, border=0, na_rep='—')}"
            f"<figcaption>{html.escape(caption)}</figcaption>{more}</figure>"
        )

    def write(self) -> Path:
        """Write the figures' PNGs (when possible), plotly.js and ``index.html``; return the page's path."""
        if self._pending_png and png_export_available():
            figs, paths = zip(*self._pending_png)
            self.files += save_figures_png(list(figs), list(paths), max_colors=PNG_COLORS)
        self._pending_png.clear()

        name, script = report_plotlyjs(self._traces)  # the cartesian bundle (1.5 MB) when it draws every figure
        js = self.out_dir / name
        if not js.exists() or js.stat().st_size != len(script.encode()):
            with atomic_write(js, "w") as fh:
                fh.write(script)
        themes = ",".join(t[len('"template":'):] for t in self._templates)
        nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in self._toc)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        page = (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{_CSS}</style><script src='{name}'></script>"
            f"<script>var xaikitTemplates=[{self._slashes(themes)}];"
            f"var xaikitImages=[{self._slashes(','.join(self._images))}];</script>"
            "</head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='note'>Written {stamp} by xaikit. "
            f"No patient identifiers are shown.</p><nav>{nav}</nav>{os.linesep.join(self._blocks)}</body></html>"
        )
        index = self.out_dir / "index.html"
        with atomic_write(index, "w") as fh:
            fh.write(page)
        return index
