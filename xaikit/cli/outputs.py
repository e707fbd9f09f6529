"""What ``xaikit predict`` / ``xaikit explain`` write: tidy CSVs, overlay PNGs, raw ``.npy`` maps, a gallery page.

Layout of ``--out DIR``::

    predictions.csv           one row per item: item, source_sha256, slice, modality, label, pred, pred_class,
                              prob_<class>...
    explanations.csv          one row per item x method: the prediction columns, method, target, and
                              map_min, map_max, map_mean, map_mean_abs, map_positive_frac, map_top5pct_frac
    overlays/<item>__<method>.png   the map on the original image, at display resolution (longest side <= 448 px)
    maps/<item>__<method>.npy       the raw signed map (float32) on the model's input grid
    index.html                a gallery of every overlay with its prediction
    .cache/                   the disk cache of ``explain_many``: a rerun computes only what is missing

Every file is written atomically; no file or column holds a path, file name or DICOM identifier.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .._util import atomic_write
from ..inference import map_summary, overlay_rgb
from ..viz.export import save_png
from .inputs import Item

__all__ = ["OVERLAY_SIDE", "prediction_table", "write_table", "write_maps", "write_gallery"]

#: Longest side of an overlay PNG (display resolution: <= ~300 KB each; the raw map stays in ``maps/*.npy``).
OVERLAY_SIDE = 448


def prediction_table(items: Sequence[Item], probs, classes: Sequence[str]) -> pd.DataFrame:
    """One row per item: identifiers that name no one, the label if known, the prediction and probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1)
    table = pd.DataFrame({
        "item": [it.name for it in items],
        "source_sha256": [it.sha for it in items],
        "slice": pd.array([it.slice for it in items], dtype="Int64"),
        "modality": [it.modality for it in items],
        "label": pd.array([it.label for it in items], dtype="Int64"),
        "pred": pred,
        "pred_class": [classes[k] for k in pred],
    })
    for k, name in enumerate(classes):
        table[f"prob_{name}"] = probs[:, k]
    return table


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_write(path, "w") as fh:
        table.to_csv(fh, index=False, lineterminator="\n")
    return path


def write_maps(out: Path, items: Sequence[Item], explanations: Mapping[str, object], preprocess,
               predictions: pd.DataFrame) -> pd.DataFrame:
    """Write each map as ``.npy`` and as an overlay PNG; return the tidy item x method table."""
    rows = []
    for label, exp in explanations.items():
        for i, it in enumerate(items):
            m = exp.maps[i].numpy().astype(np.float32)
            stem = f"{it.name}__{label}"
            with atomic_write(out / "maps" / f"{stem}.npy") as fh:
                np.save(fh, m)
            save_png(overlay_rgb(it.image, m, preprocess), out / "overlays" / f"{stem}.png", max_side=OVERLAY_SIDE)
            rows.append({"item": it.name, "method": label, "method_name": exp.method,
                         "target_policy": exp.target_policy, "target": int(exp.targets[i]), **map_summary(m)})
    return predictions.merge(pd.DataFrame(rows), on="item", how="right")


def write_gallery(out: Path, table: pd.DataFrame, methods: Sequence[str], classes: Sequence[str]) -> Path:
    """``index.html``: one row per item, its prediction and one overlay per method (links to the PNGs)."""
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    rows = []
    for _, r in table.drop_duplicates("item").iterrows():
        label = "" if pd.isna(r["label"]) else f"<br>label: {html.escape(classes[int(r['label'])])}"
        prob = r[f"prob_{r['pred_class']}"]
        cells = "".join(
            f'<td><a href="overlays/{_q(r["item"])}__{_q(m)}.png"><img src="overlays/{_q(r["item"])}__{_q(m)}.png" '
            f'alt="{html.escape(m)}" loading="lazy"></a></td>' for m in methods)
        rows.append(f"<tr><td><code>{html.escape(r['item'])}</code><br>{html.escape(str(r['modality']))}{label}"
                    f"<br>predicted: <b>{html.escape(r['pred_class'])}</b> (p = {prob:.3f})</td>{cells}</tr>")
    page = _PAGE.format(n=len(rows), methods=", ".join(html.escape(m) for m in methods), head=head,
                        rows="\n".join(rows))
    path = out / "index.html"
    with atomic_write(path, "w") as fh:
        fh.write(page)
    return path


def _q(text: str) -> str:
    return html.escape(str(text), quote=True)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xaikit explain</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}} img{{width:192px;image-rendering:auto}}</style>
</head><body>
<h1>xaikit explain</h1>
<p>{n} image(s) &times; methods: {methods}. Overlays: the map on the original image, opacity following |relevance|
(transparent at zero); red = evidence for the explained class, blue = against (signed maps); non-negative maps
(e.g. Grad-CAM) in reds only. Items are named by a running index and the SHA-256 of the source file, never by
its name. Tables: <a href="predictions.csv">predictions.csv</a>, <a href="explanations.csv">explanations.csv</a>.</p>
<table><tr><th>item</th>{head}</tr>
{rows}
</table></body></html>
"""
