"""The shipped sample data: ``python -m xaikit samples`` rebuilds ``data_samples/`` bit for bit.

Everything here is drawn by :mod:`xaikit.phantom` and written by :mod:`xaikit.io` with fixed seeds, fixed UIDs
and no time stamps, so two builds give identical files (``tests/test_samples.py`` checks this against the
committed copy). Layout::

    data_samples/
      manifest.csv                 image_path,label,split,patient_id,image_id,marker,mask_<name>... (paths relative)
      images/img00000.png ...      phantom chest radiographs, 8-bit, 224 px
      masks/img00000_<name>.png    1-bit ground-truth masks (left_lung, right_lung, heart, lesion, marker, body)
      dicom/                       phantom radiographs as DICOM (MONOCHROME2, MONOCHROME1) and a CT-like slice
                                   with a rescale slope, plus a multi-frame volume
      dicom/ct_series/slice0000.dcm ...  a phantom CT as a DICOM series (one file per slice)
      nifti/volume.nii.gz, nifti/volume_labels.nii.gz, nifti/labels.csv
                                   the series and the NIfTI volume are drawn like the 3D model's training
                                   volumes (:func:`draw_sample_volume`), so they lie inside its training domain
      models/                      sample checkpoints (see :mod:`xaikit.train`): the clean model, and the
                                   shortcut model trained on :data:`SHORTCUT` (drawn in memory, no files), and
                                   the 3D model ``phantom_cnn3d.pt`` trained on :data:`VOLUMES` (in memory),
                                   and the ground-truth world models ``world_<name>.pt`` (:mod:`xaikit.worlds`)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ._modes import one_thread
from ._util import atomic_write, sample_dir
from .checkpoint import load_checkpoint, save_checkpoint
from .data.augment import Augment
from .data.manifest import ManifestDataset, write_manifest
from .data.preprocess import Preprocess
from .data.splits import patient_split
from .data.volume import VolumePreprocess
from .domain import IMAGE_STATS, fit_domain
from .errors import ArgumentError
from .io import MedicalImage, write_dicom, write_nifti, write_png
from .io.volume import write_dicom_series
from .models import build_model
from .phantom import draw_chest, draw_chest_set, draw_volume
from .phantom.dataset import PhantomDataset
from .phantom.volume import VolumePhantom, VolumeSetDataset, draw_volume_set
from .train import assess, choose_threshold, recalibrate_batchnorm, train_sample_model
from .train.detection import box_scores, fit_boxes, predict_boxes
from .train.segmentation import fit_segmentation, predict_labelmaps, segmentation_scores
from .worlds import build_world_models

__all__ = ["SAMPLES", "SHORTCUT", "MODELS", "SampleSpec", "sample_dir", "build_samples", "build_phantom_images",
           "build_dicom", "build_nifti", "build_models", "build_shortcut_model", "shortcut_datasets",
           "VOLUMES", "VolumeSpec", "VOLUME_PREPROCESS", "VOLUME_MODEL", "DICOM_SERIES", "volume_datasets",
           "build_volume_model", "build_dicom_series", "build_volume_samples", "draw_sample_volume",
           "SAMPLE_VOLUME_SEEDS",
           "SEG_CLASSES", "SEG_PREPROCESS", "segmentation_arrays", "build_unet_model", "BOX_OUTPUTS",
           "build_box_model", "add_model_card", "card_seg_model", "SEG_DATA", "VOLUME_DATA", "VOLUME_USE",
           "build_world_samples"]

#: Masks written for every phantom image, in manifest column order.
MASKS = ("left_lung", "right_lung", "heart", "lesion", "marker", "body")
CLASSES = ("normal", "pneumonia")
#: Seeds of the shipped phantom CTs (:func:`draw_sample_volume`): the NIfTI volume (lesion in the left lung) and
#: the DICOM series (right lung). Chosen among seeds 10-23 for a lesion the 3D sample model detects at its
#: threshold and looks at (Grad-CAM density ratio above 3 in the lesion); over those 14 seeds its P(lesion) ran
#: 0.44-0.72, so a sample is not a promise about every volume.
SAMPLE_VOLUME_SEEDS = {"nifti": 18, "dicom_series": 17}


@dataclass(frozen=True)
class SampleSpec:
    """What the shipped phantom set is made of (change it and the committed files change too)."""

    n_images: int = 320
    n_patients: int = 260
    size: int = 224
    seed: int = 2024
    prevalence: float = 0.5
    marker_rate_pos: float = 0.0
    marker_rate_neg: float = 0.0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)


SAMPLES = SampleSpec()

#: The shortcut set: drawn in memory (never written to disk), 90% of pneumonia and 5% of normal images carry
#: the corner marker, so a classifier can score well by reading the marker instead of the lungs.
SHORTCUT = SampleSpec(seed=2025, marker_rate_pos=0.9, marker_rate_neg=0.05)


def _mask_png(mask: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_write(path) as fh:
        Image.fromarray(np.asarray(mask, dtype=bool)).save(fh, format="PNG")


def build_phantom_images(out: Path, spec: SampleSpec = SAMPLES, *, name: str = "manifest.csv") -> pd.DataFrame:
    """Draw the phantom set, write images, masks and the manifest; return the manifest table."""

    chest = draw_chest_set(
        spec.n_images, seed=spec.seed, size=spec.size, prevalence=spec.prevalence,
        marker_rate_pos=spec.marker_rate_pos, marker_rate_neg=spec.marker_rate_neg, n_patients=spec.n_patients,
    )  # fmt: skip
    plan = chest.table()
    plan["label"] = [CLASSES[v] for v in plan["label"]]
    plan = patient_split(plan, fractions=spec.fractions, seed=spec.seed)
    rows = []
    for i, phantom in enumerate(chest):
        image_id = plan.at[i, "image_id"]
        image_path = out / "images" / f"{image_id}.png"
        write_png(phantom.image, image_path, window=(0.5, 1.0))
        row = {"image_path": str(image_path), "label": plan.at[i, "label"], "split": plan.at[i, "split"],
               "patient_id": plan.at[i, "patient_id"], "image_id": image_id, "marker": int(plan.at[i, "marker"])}
        for mask in MASKS:
            mask_path = out / "masks" / f"{image_id}_{mask}.png"
            _mask_png(phantom.masks[mask], mask_path)
            row[f"mask_{mask}"] = str(mask_path)
        rows.append(row)
    table = pd.DataFrame(rows)
    write_manifest(table, out / name)
    return table


def build_dicom(out: Path, seed: int = 7) -> list[Path]:
    """A handful of DICOM files: a radiograph as MONOCHROME2 and MONOCHROME1, a CT slice with a rescale
    slope/intercept, and a small multi-frame volume. UIDs and dates are fixed so rebuilds are identical."""

    ph = draw_chest(seed, size=256, pneumonia=True)
    # a 12-bit detector image: stored values 0..4095, bright = dense
    dx = MedicalImage(np.round(ph.image * 4095.0), spacing=(0.7, 0.7), window=(2048.0, 4096.0), modality="DX")
    vol = draw_volume(seed, shape=(24, 64, 64))
    ct = MedicalImage(vol.image, spacing=vol.spacing, window=(-600.0, 1500.0), modality="CT")
    ct_slice = MedicalImage(vol.image[12], spacing=vol.spacing[1:], window=(40.0, 400.0), modality="CT")
    common = dict(patient_id="PHANTOM-0001", date="20240101")
    return [
        write_dicom(dx, out / "dicom" / "cxr_monochrome2.dcm", uid_seed="xaikit-dx-m2",
                    description="phantom chest radiograph", **common),
        write_dicom(dx, out / "dicom" / "cxr_monochrome1.dcm", photometric="MONOCHROME1", uid_seed="xaikit-dx-m1",
                    description="phantom chest radiograph, MONOCHROME1", **common),
        write_dicom(ct_slice, out / "dicom" / "ct_slice_rescale.dcm", rescale=(0.5, -2048.0),
                    uid_seed="xaikit-ct-slice", description="phantom CT slice, rescale slope 0.5", **common),
        write_dicom(ct, out / "dicom" / "ct_volume_multiframe.dcm", rescale=(1.0, -2048.0), uid_seed="xaikit-ct-vol",
                    description="phantom CT volume, multi-frame", **common),
    ]  # fmt: skip


def build_nifti(out: Path, seed: int = SAMPLE_VOLUME_SEEDS["nifti"]) -> list[Path]:
    """A phantom CT volume with a lesion, its label map, and the label names table.

    Drawn like the 3D sample model's training volumes (:func:`draw_sample_volume`: 40^3 voxels of 7.5 x 8 x 10 mm),
    so the shipped model explains it inside its training domain.
    """

    vol = draw_sample_volume(seed)
    image = MedicalImage(vol.image, spacing=vol.spacing, window=(-600.0, 1500.0), affine=vol.affine, modality="CT")
    labels = MedicalImage(vol.labels.astype(np.float32), spacing=vol.spacing, window=(3.0, 6.0), affine=vol.affine)
    names = pd.DataFrame({"value": list(vol.names), "name": list(vol.names.values())})
    with atomic_write(out / "nifti" / "labels.csv", "w") as fh:
        names.to_csv(fh, index=False, lineterminator="\n")
    return [
        write_nifti(image, out / "nifti" / "volume.nii.gz"),
        write_nifti(labels, out / "nifti" / "volume_labels.nii.gz"),
        out / "nifti" / "labels.csv",
    ]


def build_samples(out: str | os.PathLike | None = None, *, models: bool = True, spec: SampleSpec = SAMPLES) -> Path:
    """Rebuild the sample data folder (default: the shipped ``data_samples/``) and return its path.

    Parameters
    ----------
    out : path, optional
        Destination folder (created). Default :func:`sample_dir`.
    models : bool
        Also train and write the sample models (takes minutes on a CPU).
    spec : SampleSpec
        Size and seeds of the phantom set.
    """
    out = Path(out) if out is not None else sample_dir()
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"{out}: exists and is not a folder; give a folder for the sample data.")
    build_phantom_images(out, spec)
    build_dicom(out)
    build_nifti(out)
    if models:
        build_models(out)
        build_unet_model(out)
        build_box_model(out)
        build_world_samples(out)
    build_volume_samples(out, models=models)
    return out


def build_world_samples(out: str | os.PathLike | None = None) -> dict[str, Path]:
    """Only the ground-truth world models (:mod:`xaikit.worlds`): ``out/models/world_<name>.pt``.

    ``python -m xaikit samples --worlds`` runs this alone (a few minutes on one core; the label-randomization
    model takes most of it).
    """

    return build_world_models(Path(out) if out is not None else sample_dir())


def finish_model(path: Path, train, val, test, *, seed: int = 0) -> dict:
    """Recalibrate BatchNorm on ``train`` (no augmentation), choose the decision threshold on ``val`` (Youden's
    J), assess ``test`` with it, and store all in the checkpoint's summary (``decision_threshold``,
    ``test_metrics``: ``[value, ci_low, ci_high]`` per metric)."""

    ckpt = load_checkpoint(path)
    recalibrate_batchnorm(ckpt.model, train)
    ckpt.model.eval()
    val_pred = assess(ckpt.model, val, n_boot=0, seed=seed).predictions
    positive = f"prob_{ckpt.classes[1]}"
    threshold = choose_threshold(val_pred["label"].to_numpy(), val_pred[positive].to_numpy())["threshold"]
    metrics = assess(ckpt.model, test, threshold=threshold, n_boot=1000, seed=seed).metrics.set_index("metric")
    names = ("roc_auc", "pr_auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity")
    test_metrics = {m: [float(metrics.at[m, c]) for c in ("value", "ci_low", "ci_high")] for m in names}
    summary = {**_without_timings(ckpt.summary), "batchnorm": "recalibrated on the train split (precise BN)",
               "decision_threshold": threshold, "threshold_rule": "youden on the val split",
               "test_metrics": test_metrics, "n_test": len(test)}
    save_checkpoint(path, ckpt.model, classes=ckpt.classes, preprocess=ckpt.preprocess, summary=summary)
    return summary


def _without_timings(summary: dict) -> dict:
    """The training summary without wall-clock times, so that a rebuild writes byte-identical checkpoints."""
    out = {k: v for k, v in summary.items() if k != "seconds"}
    if isinstance(out.get("best_epoch_metrics"), dict):
        out["best_epoch_metrics"] = {k: v for k, v in out["best_epoch_metrics"].items() if not k.endswith("seconds")}
    return out


#: Preprocessing of the shipped sample models (128 px keeps CPU training to minutes).
MODEL_PREPROCESS = {"size": 128}
#: Sample checkpoints in ``data_samples/models/``: ``clean`` (trained on the shipped files, no markers) and
#: ``shortcut`` (trained on :data:`SHORTCUT`, where the corner marker predicts the label).
MODELS = {"clean": "phantom_small_cnn.pt", "shortcut": "phantom_small_cnn_shortcut.pt"}


def build_models(out: Path, *, seed: int = 0, epochs: int = 40) -> dict[str, Path]:
    """Train the sample models; checkpoints go to ``out/models/`` (see :data:`MODELS`).

    The clean model is trained on the phantom training split of ``out/manifest.csv`` with
    :class:`~xaikit.data.Augment` (no flips), AdamW and a one-cycle schedule; the checkpoint's
    summary records the test-split metrics (ROC AUC with its patient-bootstrap CI), so the
    README and notebooks can quote them without re-running anything. The shortcut model follows
    (:func:`build_shortcut_model`).
    """

    pre = Preprocess(**MODEL_PREPROCESS)
    split = {name: ManifestDataset(out / "manifest.csv", split=name, preprocess=pre)
             for name in ("train", "val", "test")}
    # small rotations/shifts/exposure changes: without them the model overfits 220 images (test AUC 0.92 vs 0.98)
    split["train"].transform = Augment(seed=seed)
    path = out / "models" / MODELS["clean"]
    train_sample_model(split["train"], split["val"], path, classes=split["train"].classes,
                       preprocess=pre, seed=seed, epochs=epochs, deterministic=True)
    split["train"].transform = None
    finish_model(path, split["train"], split["val"], split["test"], seed=seed)
    add_model_card(path, split["train"], data=CLEAN_DATA)
    return {"clean": path, "shortcut": build_shortcut_model(out, seed=seed)}


#: What the sample models were trained on, in words (model cards and out-of-domain warnings quote it).
CLEAN_DATA = ("synthetic phantom chest radiographs drawn by xaikit.phantom (data_samples/manifest.csv, train split), "
              "no corner markers")
SHORTCUT_DATA = ("synthetic phantom chest radiographs (xaikit.samples.SHORTCUT) where a corner marker predicts the "
                 "label: 90% of pneumonia and 5% of normal images carry it")
INTENDED_USE = ("teaching and testing explanation methods and region statistics on phantoms with ground truth; "
                "not a diagnostic model: it has never seen a real radiograph and must not be used on patients")


def add_model_card(path: Path, train, *, data: str, intended_use: str = INTENDED_USE) -> dict:
    """Store a model card and the training domain (:func:`xaikit.domain.fit_domain` on ``train``, without
    augmentation; images or volumes) in the checkpoint at ``path``; the weights are untouched. Return the card.

    ``train``: a sequence of samples with an ``"image"`` tensor (a dataset, or ``[{"image": t}, ...]``).
    Deterministic, so a rebuild of ``data_samples/`` still writes byte-identical checkpoints.
    """
    import torch

    ckpt = load_checkpoint(path)
    x = torch.stack([train[i]["image"] for i in range(len(train))])
    domain = fit_domain(ckpt.model, x, description=data)
    card = {"data": data, "n_train_images": len(train), "classes": list(ckpt.classes),
            "input": f"{ckpt.preprocess.to_dict()}", "intended_use": intended_use,
            "image_statistics": {f"mean_{k}": round(v, 4) for k, v in zip(IMAGE_STATS, domain["image_stats_mean"])},
            "test_metrics": ckpt.summary.get("test_metrics", {}),
            "out_of_domain_check": f"{domain['method']} (xaikit.domain): explain and evaluate warn when an input's "
                                   "image statistics or penultimate features lie beyond 1.2 times the farthest "
                                   "training image"}
    if "task" in ckpt.summary:
        card["task"] = ckpt.summary["task"]
    save_checkpoint(path, ckpt.model, classes=ckpt.classes, preprocess=ckpt.preprocess,
                    summary={**ckpt.summary, "model_card": card, "domain": domain})
    return card


def shortcut_datasets(spec: SampleSpec = SHORTCUT, preprocess=None):
    """The train/val/test splits of the shortcut set as in-memory :class:`~xaikit.phantom.dataset.PhantomDataset`
    objects.

    Drawn deterministically from ``spec`` (default :data:`SHORTCUT`) and split by patient like the shipped
    set; images are quantized as the shipped PNGs are and go through ``preprocess`` (default the sample
    models' ``Preprocess(size=128)``). Returns ``{"train": ..., "val": ..., "test": ...}``.

    Examples
    --------
    >>> splits = shortcut_datasets()  # doctest: +SKIP
    >>> splits["test"].table.groupby("label")["marker"].mean()  # doctest: +SKIP
    """

    pre = preprocess if preprocess is not None else Preprocess(**MODEL_PREPROCESS)
    chest = draw_chest_set(
        spec.n_images, seed=spec.seed, size=spec.size, prevalence=spec.prevalence,
        marker_rate_pos=spec.marker_rate_pos, marker_rate_neg=spec.marker_rate_neg, n_patients=spec.n_patients,
    )  # fmt: skip
    plan = patient_split(chest.table(), fractions=spec.fractions, seed=spec.seed)
    return {name: PhantomDataset(chest, pre, indices=plan.index[plan["split"] == name].to_numpy(), classes=CLASSES)
            for name in ("train", "val", "test")}


def build_shortcut_model(out: str | os.PathLike, *, spec: SampleSpec = SHORTCUT, seed: int = 0,
                         epochs: int = 20) -> Path:
    """Train the shortcut sample model on :func:`shortcut_datasets` and write ``out/models/<MODELS["shortcut"]>``.

    Same architecture, Preprocess, augmentation and recipe as the clean model (:func:`build_models`), on a
    set where the corner marker predicts the label; :func:`finish_model` stores the test metrics of the
    shortcut test split (same marker rates) in the summary, together with the marker rates.
    About 2 minutes on 2 CPU cores.

    Parameters
    ----------
    out : path
        Sample data folder (the checkpoint goes to its ``models/``).
    spec : SampleSpec
        The shortcut set (marker rates, size, seed).
    seed, epochs
        Training seed and number of epochs.
    """

    split = shortcut_datasets(spec)
    pre = split["train"].preprocess
    split["train"].transform = Augment(seed=seed)
    path = Path(out) / "models" / MODELS["shortcut"]
    train_sample_model(split["train"], split["val"], path, classes=list(CLASSES), preprocess=pre, seed=seed,
                       epochs=epochs, deterministic=True)
    split["train"].transform = None
    summary = finish_model(path, split["train"], split["val"], split["test"], seed=seed)
    ckpt = load_checkpoint(path)
    data = {"source": "xaikit.samples.SHORTCUT, drawn in memory", "seed": spec.seed, "n_images": spec.n_images,
            "marker_rate_pos": spec.marker_rate_pos, "marker_rate_neg": spec.marker_rate_neg}
    save_checkpoint(path, ckpt.model, classes=ckpt.classes, preprocess=ckpt.preprocess,
                    summary={**summary, "training_data": data})
    add_model_card(path, split["train"], data=SHORTCUT_DATA)
    return path


#: Classes of the sample UNet (label-map values 0, 1, 2): both lungs are one class, the heart wins overlaps.
SEG_CLASSES = ("background", "lung", "heart")
#: Preprocessing of the sample UNet and box model (64 px: trains in about a minute on 2 CPU cores).
SEG_PREPROCESS = {"size": 64}


def segmentation_arrays(out: str | os.PathLike | None = None, split: str = "train", preprocess=None) -> dict:
    """Images, label maps (:data:`SEG_CLASSES`), heart boxes and ids of one split of the shipped phantom set.

    Returns ``{"images": N x 1 x H x W, "labelmaps": N x H x W long, "boxes": N x 4 float (x0, y0, x1, y1),
    "image_ids": [...], "patient_ids": [...], "masks": {name: N x H x W bool}}`` at ``preprocess``
    (default ``Preprocess(**SEG_PREPROCESS)``).
    """
    import torch

    pre = preprocess if preprocess is not None else Preprocess(**SEG_PREPROCESS)
    ds = ManifestDataset(Path(out or sample_dir()) / "manifest.csv", split=split, preprocess=pre)
    samples = [ds[i] for i in range(len(ds))]
    masks = {name: torch.stack([s["masks"][name] for s in samples]) for name in ("left_lung", "right_lung", "heart")}
    labelmaps = (masks["left_lung"] | masks["right_lung"]).long()
    labelmaps[masks["heart"]] = 2
    return {"images": torch.stack([s["image"] for s in samples]), "labelmaps": labelmaps,
            "boxes": torch.stack([_box(m) for m in masks["heart"]]), "masks": masks,
            "image_ids": [s["id"] for s in samples], "patient_ids": [s["patient_id"] for s in samples]}


def _box(mask):
    """Tight pixel box ``(x0, y0, x1, y1)``, end exclusive, of a non-empty boolean mask."""
    import torch

    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


MODELS["unet"] = "phantom_unet.pt"



def build_unet_model(out: str | os.PathLike, *, seed: int = 0, epochs: int = 30, n_boot: int = 1000) -> Path:
    """Train the sample UNet (lungs + heart) on the shipped train split; write ``out/models/phantom_unet.pt``.

    :func:`~xaikit.train.segmentation.fit_segmentation` (cross-entropy + soft Dice, AdamW, one-cycle) on the
    64 px train split from seeded initial weights; the checkpoint's summary holds the test-split Dice, IoU and
    HD95 per class with patient-bootstrap 95% CIs (``test_metrics[class][metric] = [value, ci_low, ci_high]``).
    """
    import torch

    train, test = segmentation_arrays(out, "train"), segmentation_arrays(out, "test")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model("unet", num_classes=len(SEG_CLASSES), widths=(8, 16, 32))
    with one_thread():
        history = fit_segmentation(model, train["images"], train["labelmaps"], epochs=epochs, seed=seed)
    _, summary = segmentation_scores(predict_labelmaps(model, test["images"]), test["labelmaps"], SEG_CLASSES,
                                     patient_ids=test["patient_ids"], n_boot=n_boot, seed=seed)
    metrics = {c: {m: [round(float(v), 4) for v in row[["value", "ci_low", "ci_high"]]]
                   for m, row in part.set_index("metric").iterrows()} for c, part in summary.groupby("class")}
    path = Path(out) / "models" / MODELS["unet"]
    save_checkpoint(path, model, classes=list(SEG_CLASSES), preprocess=SEG_PREPROCESS,
                    summary={"task": "segmentation", "epochs": epochs, "seed": seed, "n_train": len(train["images"]),
                             "final_train_loss": round(float(history["loss"].iloc[-1]), 4),
                             "n_test": len(test["images"]),
                             "test_metrics": metrics, "ci": "95% patient-bootstrap percentile",
                             "hd95_unit": "pixels at 64 px"})
    card_seg_model(path, train["images"])
    return path


#: What the UNet and the heart-box model were trained on (their model cards quote it).
SEG_DATA = ("synthetic phantom chest radiographs drawn by xaikit.phantom (data_samples/manifest.csv, train split) "
            "at 64 px, with their lung and heart masks")
#: What the 3D sample model was trained on.
VOLUME_DATA = ("synthetic phantom CT volumes drawn by xaikit.phantom (xaikit.samples.VOLUMES, train split), "
               "10 mm voxels, lung window")
VOLUME_USE = ("teaching and testing 3D explanation methods and region statistics on phantom CT with ground truth; "
              "not a diagnostic model: it has never seen a real CT scan and must not be used on patients")


def card_seg_model(path: Path, images) -> dict:
    """The model card and training domain of the UNet or the heart-box model (:func:`add_model_card` on the
    64 px train images ``images``, ``N x 1 x H x W``)."""
    return add_model_card(path, [{"image": t} for t in images], data=SEG_DATA)


MODELS["heart_box"] = "phantom_heart_box.pt"
#: Outputs of the heart box model: box corners in units of the image size.
BOX_OUTPUTS = ("x0", "y0", "x1", "y1")


def build_box_model(out: str | os.PathLike, *, seed: int = 0, epochs: int = 30, n_boot: int = 1000) -> Path:
    """Train the heart box model on the shipped train split; write ``out/models/phantom_heart_box.pt``.

    A ``small_cnn`` with 4 outputs regresses the heart's box (``x0, y0, x1, y1`` in image-size units) with
    :func:`~xaikit.train.detection.fit_boxes` on the 64 px split: one organ per image, so a regression head is an
    honest detector that trains on a CPU. The summary holds the test-split mean IoU, hit rate (IoU >= 0.5) and
    mAP@0.5 with patient-bootstrap 95% CIs (``test_metrics[metric] = [value, ci_low, ci_high]``).
    """
    import torch

    train, test = segmentation_arrays(out, "train"), segmentation_arrays(out, "test")
    size = float(train["images"].shape[-1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model("small_cnn", num_classes=len(BOX_OUTPUTS), widths=(8, 16, 32, 64))
    with one_thread():
        history = fit_boxes(model, train["images"], train["boxes"] / size, epochs=epochs, seed=seed)
    _, summary = box_scores(predict_boxes(model, test["images"]), test["boxes"] / size,
                            patient_ids=test["patient_ids"], n_boot=n_boot, seed=seed)
    metrics = {row.metric: [round(float(v), 4) for v in (row.value, row.ci_low, row.ci_high)]
               for row in summary.itertuples()}
    path = Path(out) / "models" / MODELS["heart_box"]
    save_checkpoint(path, model, classes=list(BOX_OUTPUTS), preprocess=SEG_PREPROCESS,
                    summary={"task": "box regression (heart)", "epochs": epochs, "seed": seed,
                             "n_train": len(train["images"]),
                             "final_train_loss": round(float(history["loss"].iloc[-1]), 4),
                             "n_test": len(test["images"]), "test_metrics": metrics,
                             "ci": "95% patient-bootstrap percentile", "box_units": "fraction of the image size"})
    card_seg_model(path, train["images"])
    return path
# ----------------------------------------------------------------------------------------------- volumes
@dataclass(frozen=True)
class VolumeSpec:
    """The phantom CT set behind the shipped 3D sample model (drawn in memory, never written as files)."""

    n_volumes: int = 240
    n_patients: int = 200
    shape: tuple[int, int, int] = (40, 40, 40)
    seed: int = 2026
    prevalence: float = 0.5
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    lesion_scale: float = 1.75  # lesions of 3-4 voxels radius on the model's 10 mm grid


VOLUMES = VolumeSpec()
#: Preprocessing of the 3D sample model: 10 mm isotropic voxels, 32^3 (320 mm), lung CT window.
VOLUME_PREPROCESS = {"shape": 32, "spacing": 10.0, "normalize": "window", "window": (-600.0, 1500.0)}
#: The 3D sample checkpoint in ``data_samples/models/`` (small_cnn3d, lesion vs normal phantom CT).
VOLUME_MODEL = "phantom_cnn3d.pt"
#: The DICOM series folder in ``data_samples/dicom/`` (one phantom CT, one file per slice).
DICOM_SERIES = "ct_series"


def volume_datasets(spec: VolumeSpec = VOLUMES, preprocess=None):
    """The train/val/test splits of the phantom CT set as :class:`~xaikit.phantom.VolumeSetDataset` objects.

    Split by patient (:func:`~xaikit.data.patient_split`), stratified by label; volumes go through
    ``preprocess`` (default the 3D sample model's ``VolumePreprocess(**VOLUME_PREPROCESS)``).
    Returns ``{"train": ..., "val": ..., "test": ...}``.
    """

    pre = preprocess if preprocess is not None else VolumePreprocess(**VOLUME_PREPROCESS)
    volumes = draw_volume_set(spec.n_volumes, seed=spec.seed, shape=spec.shape, prevalence=spec.prevalence,
                              n_patients=spec.n_patients, lesion_scale=spec.lesion_scale)
    plan = patient_split(volumes.table, fractions=spec.fractions, seed=spec.seed)
    return {name: VolumeSetDataset(volumes, pre, indices=plan.index[plan["split"] == name].to_numpy(),
                                   classes=("normal", "lesion"))
            for name in ("train", "val", "test")}


def build_volume_model(out: str | os.PathLike, *, spec: VolumeSpec = VOLUMES, seed: int = 0, epochs: int = 12) -> Path:
    """Train the 3D sample model (``small_cnn3d``: lesion or not, phantom CT) and write ``out/models/<VOLUME_MODEL>``.

    Same recipe as the 2D sample models (:func:`~xaikit.train.train_sample_model`, deterministic, best epoch
    by validation ROC AUC; :func:`finish_model` recalibrates BatchNorm, picks the threshold on val and stores
    the test metrics with patient-bootstrap CIs in the summary). About 1-2 minutes on 2 CPU cores.
    """

    split = volume_datasets(spec)
    pre = split["train"].preprocess
    path = Path(out) / "models" / VOLUME_MODEL
    train_sample_model(split["train"], split["val"], path, classes=["normal", "lesion"], preprocess=pre,
                       arch="small_cnn3d", seed=seed, epochs=epochs, batch_size=8, lr=3e-3, deterministic=True)
    summary = finish_model(path, split["train"], split["val"], split["test"], seed=seed)
    ckpt = load_checkpoint(path)
    data = {"source": "xaikit.samples.VOLUMES, drawn in memory", "seed": spec.seed, "n_volumes": spec.n_volumes,
            "n_patients": spec.n_patients, "shape": list(spec.shape), "lesion_scale": spec.lesion_scale}
    save_checkpoint(path, ckpt.model, classes=ckpt.classes, preprocess=ckpt.preprocess,
                    summary={**summary, "training_data": data})
    add_model_card(path, split["train"], data=VOLUME_DATA, intended_use=VOLUME_USE)
    return path


def draw_sample_volume(seed: int, *, lesion: bool = True, spec: VolumeSpec = VOLUMES) -> VolumePhantom:
    """One phantom CT drawn like the 3D sample model's training volumes: ``spec.shape`` voxels (default 40^3,
    7.5 x 8 x 10 mm over the phantom's 300 x 320 x 400 mm field of view) and ``spec.lesion_scale``.

    The shipped NIfTI volume and DICOM series are drawn with it, so the model's domain check
    (:mod:`xaikit.domain`) finds them inside its training domain; a volume drawn on another grid or with
    other lesion sizes is a different population for the model (the earlier 5-6.25 mm samples measured 2.5 times
    the threshold).

    Examples
    --------
    >>> vol = draw_sample_volume(SAMPLE_VOLUME_SEEDS["nifti"])
    >>> vol.image.shape, vol.spacing
    ((40, 40, 40), (7.5, 8.0, 10.0))
    """
    return draw_volume(seed, shape=spec.shape, lesion=lesion, lesion_scale=spec.lesion_scale)


def build_dicom_series(out: str | os.PathLike, seed: int = SAMPLE_VOLUME_SEEDS["dicom_series"]) -> list[Path]:
    """A phantom CT (with a lesion) as a DICOM series: one file per slice with Image Position/Orientation.

    Drawn like the 3D model's training volumes (:func:`draw_sample_volume`), so it lies inside its training domain.
    """

    vol = draw_sample_volume(seed)
    return write_dicom_series(vol.as_image(), Path(out) / "dicom" / DICOM_SERIES, uid_seed="xaikit-ct-series",
                              description="phantom CT, one file per slice")


def build_volume_samples(out: str | os.PathLike | None = None, *, models: bool = True) -> list[Path]:
    """The volume part of the sample data: the DICOM series and (with ``models``) the 3D sample model."""
    out = Path(out) if out is not None else sample_dir()
    written = build_dicom_series(out)
    if models:
        written.append(build_volume_model(out))
    return written
