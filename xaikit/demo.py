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


def _shipped_model(ctx: DemoContext, name: str = "clean"):
    from .checkpoint import load_checkpoint
    from .samples import MODELS

    key = f"model_{name}"
    if key not in ctx.results:
        path = ctx.samples / "models" / MODELS[name]
        if not path.is_file():
            raise DatasetError(f"{path}: the sample model is missing. Run `python -m xaikit samples` to train it.")
        ctx.results[key] = load_checkpoint(path)
    return ctx.results[key]


@register_stage("training")
def _training_stage(ctx: DemoContext, report: Report) -> None:
    from .data import ManifestDataset
    from .viz.training import history_figure

    ckpt = _shipped_model(ctx)
    report.section(
        "2. Training and evaluation of the sample model",
        f"A {ckpt.arch} trained by `python -m xaikit samples` on the phantom training split, with the Preprocess "
        f"{ckpt.preprocess.to_dict()} stored in its checkpoint. Metrics on the held-out test split, with 95% CIs "
        "from a bootstrap over patients.",
    )
    from .train import evaluate

    test = ManifestDataset(ctx.samples / "manifest.csv", split="test", preprocess=ckpt.preprocess)
    ev = evaluate(ckpt.model, test, n_boot=200 if ctx.smoke else 1000, seed=0)
    ctx.results["evaluation"] = ev
    report.table(ev.metrics, "test_metrics", caption="Test-split metrics (value, 95% patient-bootstrap CI).")
    report.figure(ev.plot_confusion(), "confusion_matrix", caption="Confusion matrix at threshold 0.5.")
    report.figure(ev.plot_roc(), "roc", caption="ROC curve with a bootstrap band.")
    report.figure(ev.plot_reliability(), "reliability", caption="Reliability diagram (calibration).")
    history = ckpt.summary.get("history")
    if history:
        import pandas as pd

        report.figure(history_figure(pd.DataFrame(history)), "training_history", caption="Training history.")


@register_stage("saliency")
def _saliency_stage(ctx: DemoContext, report: Report) -> None:
    import torch

    from .data import ManifestDataset
    from .saliency import explain_many
    from .viz.saliency import method_grid

    ckpt = _shipped_model(ctx)
    test = ManifestDataset(ctx.samples / "manifest.csv", split="test", preprocess=ckpt.preprocess)
    rows = test.table.index[test.labels == 1][: 2 if ctx.smoke else 4]
    samples = [test[int(i)] for i in rows]
    x = torch.stack([s["image"] for s in samples])
    results = explain_many(ckpt.model, x, "quick", image_ids=[s["id"] for s in samples], progress=False)
    ctx.results["saliency"] = (x, results)
    report.section(
        "3. Saliency: the quick preset on pneumonia test images",
        "Signed maps (red: for the predicted class, blue: against), normalised for display only.",
    )
    report.figure(method_grid(x, results), "method_grid", caption="Rows: images; columns: methods.")
    prov = [{"method": k, "target_policy": e.target_policy, "reduction": e.reduction,
             "params": ", ".join(f"{p}={v}" for p, v in e.params.items() if not isinstance(v, (dict, list)))}
            for k, e in results.items()]
    import pandas as pd

    report.table(pd.DataFrame(prov), "saliency_provenance", caption="Provenance of every map.")


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
