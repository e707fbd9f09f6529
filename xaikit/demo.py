"""``python -m xaikit demo``: the whole story on the shipped sample data, written as an HTML report.

The demo is a list of stages (a registry, like the methods elsewhere in the kit); each stage adds one section
to the :class:`~xaikit.report.Report` and may leave results in the shared context for later stages.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from .errors import ArgumentError, DatasetError
from .report import Report

__all__ = ["STAGES", "DemoContext", "register_stage", "run_demo"]


@dataclass
class DemoContext:
    """What stages share: the sample folder, the SMOKE flag and results handed from stage to stage."""

    samples: Path
    smoke: bool = False
    results: dict[str, Any] = field(default_factory=dict)


Stage = Callable[[DemoContext, Report], None]

#: Demo stages in the order they run: name -> function.
STAGES: dict[str, Stage] = {}


def register_stage(name: str) -> Callable[[Stage], Stage]:
    """Decorator adding a stage to :data:`STAGES` (in definition order)."""

    def deco(fn: Stage) -> Stage:
        if name in STAGES:
            raise ArgumentError(f"demo stage {name!r} is registered twice.")
        STAGES[name] = fn
        return fn

    return deco


@register_stage("data")
def _data_stage(ctx: DemoContext, report: Report) -> None:
    from .data import ManifestDataset, audit
    from .io import read_image
    from .phantom import grid_image
    from .viz.audit import audit_figures
    from .viz.image import image_figure

    report.section(
        "1. Data: loading and auditing the sample set",
        "Phantom chest radiographs drawn by xaikit.phantom, with ground-truth masks; the audit looks for "
        "confounds a model could learn instead of the disease.",
    )
    report.image(grid_image(16, seed=0, size=160 if ctx.smoke else 224), "phantom_grid",
                 caption="16 phantom radiographs (normal, pneumonia with patchy opacities, some with a corner marker).")
    dataset = ManifestDataset(ctx.samples / "manifest.csv")
    ctx.results["dataset"] = dataset
    counts = dataset.table.groupby(["split", "label"]).size().rename("n_images").reset_index()
    report.table(counts, "class_counts", caption="Images per split and class.")
    table = audit(dataset)
    report.table(table, "audit", caption="Audit: one row per check (effect sizes, p-values, flags).")
    for name, fig in audit_figures(table, dataset).items():
        report.figure(fig, f"audit_{name}")
    dicom = read_image(ctx.samples / "dicom" / "cxr_monochrome1.dcm")
    report.figure(image_figure(dicom, title="DICOM MONOCHROME1, default window (inverted on read)"), "dicom_example",
                  caption=f"{dicom!r}; de-identified metadata keys: {sorted(dicom.meta)[:12]}")


def run_demo(
    out_dir: str | os.PathLike = "xaikit-demo",
    *,
    samples_dir: str | os.PathLike | None = None,
    smoke: bool = False,
    stages: list[str] | None = None,
) -> Path:
    """Run the demo stages and write ``<out_dir>/index.html``; return its path.

    Parameters
    ----------
    out_dir : path
        Report folder (created).
    samples_dir : path, optional
        Sample data folder (default: the shipped ``data_samples/``).
    smoke : bool
        A reduced, fast run (CI).
    stages : list of str, optional
        Names from :data:`STAGES` to run (default all, in order).
    """
    from .samples import sample_dir

    samples = Path(samples_dir) if samples_dir is not None else sample_dir()
    if not (samples / "manifest.csv").is_file():
        raise DatasetError(
            f"{samples}: no manifest.csv here. Run `python -m xaikit samples` to build the sample data, "
            "or pass --samples with the folder that holds it."
        )
    names = list(STAGES) if stages is None else stages
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ArgumentError(f"unknown demo stage(s) {unknown}; known: {list(STAGES)}.")
    ctx = DemoContext(samples=samples, smoke=smoke)
    report = Report(Path(out_dir), title="xaikit demo: explaining a chest X-ray classifier")
    for name in tqdm(names, desc="xaikit demo", unit="stage"):
        STAGES[name](ctx, report)
    return report.write()
