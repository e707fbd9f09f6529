"""What ``xaikit predict`` / ``xaikit explain`` write: tidy CSVs, overlay PNGs, raw ``.npy`` maps, a gallery page.

Layout of ``--out DIR``::

    predictions.csv           one row per item: item, source_sha256, slice, modality, label, pred, pred_class,
                              domain_distance, in_domain, prob_<class>...
    explanations.csv          one row per item x method: the prediction columns, method, target, and
                              map_min, map_max, map_mean, map_mean_abs, map_positive_frac, map_top5pct_frac
    overlays/<item>__<method>.png   the map on the original image at display resolution (longest side <= 448 px),
                              under a title band with the prediction and the domain flag
    maps/<item>__<method>.npy       the raw signed map (float32) on the model's input grid
    maps/<item>__<method>.nii.gz    volumes (3D models): the map on the scan's own grid, with the source file's
                              affine and voxel order (NIfTI) or the series' affine (DICOM)
    index.html                a gallery of every overlay with its prediction and domain flag
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
from ..domain import domain_badge, prediction_caption
from ..inference import map_summary, overlay_rgb, titled
from ..viz.export import save_png
from .inputs import Item

__all__ = ["OVERLAY_SIDE", "prediction_table", "write_table", "write_maps", "write_gallery"]

#: Longest side of an overlay PNG (display resolution: <= ~300 KB each; the raw map stays in ``maps/*.npy``).
OVERLAY_SIDE = 448


def prediction_table(items: Sequence[Item], probs, classes: Sequence[str], distances=None) -> pd.DataFrame:
    """One row per item: identifiers that name no one, the label if known, the prediction, whether the input is
    in the model's training domain (``domain_distance``: above 1 is out of domain, NaN when the checkpoint stores
    no domain; ``in_domain``) and the probabilities."""
    from ..domain import domain_columns

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
        **domain_columns(distances, len(items)),
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
    captions = _captions(predictions)
    alerts = dict(zip(predictions["item"], ~predictions["in_domain"].fillna(True).astype(bool)))
    for label, exp in explanations.items():
        for i, it in enumerate(items):
            m = exp.maps[i].numpy().astype(np.float32)
            stem = f"{it.name}__{label}"
            with atomic_write(out / "maps" / f"{stem}.npy") as fh:
                np.save(fh, m)
            if it.image.is_volume:
                rgb, where = _volume_overlay(out / "maps" / f"{stem}.nii.gz", it.image, m, preprocess)
            else:
                rgb, where = overlay_rgb(it.image, m, preprocess), ""
            save_png(titled(rgb, captions[it.name] + where, alert=alerts[it.name]), out / "overlays" / f"{stem}.png",
                     max_side=OVERLAY_SIDE)
            rows.append({"item": it.name, "method": label, "method_name": exp.method,
                         "target_policy": exp.target_policy, "target": int(exp.targets[i]), **map_summary(m)})
    return predictions.merge(pd.DataFrame(rows), on="item", how="right")


def _volume_overlay(path: Path, volume, m: np.ndarray, preprocess) -> tuple[np.ndarray, str]:
    """Write the map of a volume as NIfTI on the scan's own grid (``VolumePreprocess.write_map``: the source
    file's affine and voxel order, as notebook 07 does); return the overlay of the axial slice holding most of
    the map's |mass| and where it is."""
    from ..io.image import MedicalImage

    preprocess.write_map(m, volume, path)
    back = preprocess.geometry(volume).inverse(m)
    k = int(np.abs(back).sum(axis=(1, 2)).argmax())
    plane = MedicalImage(volume.array[k], spacing=volume.spacing[1:], window=volume.window)
    rgb = overlay_rgb(plane, back[k], None)
    zoom = max(1, -(-256 // min(rgb.shape[:2])))  # CT slices can be 48 px: enlarge (nearest) to read them
    return rgb.repeat(zoom, 0).repeat(zoom, 1), f" | slice {k} of {volume.shape[0]}"


def _captions(predictions: pd.DataFrame) -> dict[str, str]:
    """Item -> overlay title: the prediction and the domain flag (:func:`xaikit.domain.prediction_caption`)."""
    return {r["item"]: prediction_caption(r["pred_class"], r[f"prob_{r['pred_class']}"], r["domain_distance"])
            for _, r in predictions.iterrows()}


def write_gallery(out: Path, table: pd.DataFrame, methods: Sequence[str], classes: Sequence[str]) -> Path:
    """``index.html``: one row per item, its prediction and one overlay per method (links to the PNGs)."""
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    rows = []
    for _, r in table.drop_duplicates("item").iterrows():
        label = "" if pd.isna(r["label"]) else f"<br>label: {html.escape(classes[int(r['label'])])}"
        prob = r[f"prob_{r['pred_class']}"]
        cells = "".join(
            f'<td><a href="overlays/{_q(r["item"])}__{_q(m)}.png"><img src="overlays/{_q(r["item"])}__{_q(m)}.png" '
            f'alt="{html.escape(m)}" loading="lazy"></a>{_nifti_link(out, r["item"], m)}</td>' for m in methods)
        rows.append(f"<tr><td><code>{html.escape(r['item'])}</code><br>{html.escape(str(r['modality']))}{label}"
                    f"<br>predicted: <b>{html.escape(r['pred_class'])}</b> (p = {prob:.3f}){_badge(r)}</td>"
                    f"{cells}</tr>")
    page = _PAGE.format(n=len(rows), methods=", ".join(html.escape(m) for m in methods), head=head,
                        rows="\n".join(rows), domain=_domain_note(table.drop_duplicates("item")))
    path = out / "index.html"
    with atomic_write(path, "w") as fh:
        fh.write(page)
    return path


def _domain_note(items: pd.DataFrame) -> str:
    """One sentence above the gallery: how many inputs lie outside the model's training domain."""
    far = int((~items["in_domain"].fillna(True).astype(bool)).sum())
    if items["in_domain"].isna().all():
        return "The checkpoint stores no training domain, so no input was checked against it. "
    if not far:
        return "Every input lies within the model's training domain. "
    return (f'<b class="domain out">{far} of {len(items)} input(s) lie outside the model\'s training domain</b>: '
            "its predictions and maps on them are not trustworthy. ")


def _badge(row) -> str:
    """The domain flag of a gallery row: red when out of the model's training domain."""
    flag = row["in_domain"]
    kind = "none" if pd.isna(flag) else ("in" if flag else "out")
    return f'<br><span class="domain {kind}">{html.escape(domain_badge(row["domain_distance"]))}</span>'


def _nifti_link(out: Path, item: str, method: str) -> str:
    """A link to a volume's map on the scan's grid (3D models), for 3D Slicer, ITK-SNAP or FSLeyes."""
    name = f"{item}__{method}.nii.gz"
    return f'<br><a href="maps/{_q(name)}">NIfTI map</a>' if (out / "maps" / name).is_file() else ""


def _q(text: str) -> str:
    return html.escape(str(text), quote=True)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xaikit explain</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}} \
img{{width:192px;image-rendering:auto}} \
.domain{{padding:1px 4px;border-radius:3px}} .domain.out{{background:#b00000;color:#fff;font-weight:bold}} \
.domain.in{{background:#d8efd8}} .domain.none{{background:#eee}}</style>
</head><body>
<h1>xaikit explain</h1>
<p>{n} image(s) &times; methods: {methods}. Overlays: the map on the original image, opacity following |relevance|
(transparent at zero); red = evidence for the explained class, blue = against (signed maps); non-negative maps
(e.g. Grad-CAM) in reds only. Items are named by a running index and the SHA-256 of the source file, never by
its name. {domain}Tables: <a href="predictions.csv">predictions.csv</a>,
<a href="explanations.csv">explanations.csv</a>.</p>
<table><tr><th>item</th>{head}</tr>
{rows}
</table></body></html>
"""
