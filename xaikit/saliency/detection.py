"""Detection targets: explain one detected box of a torchvision detector (Faster R-CNN, RetinaNet, SSD, FCOS).

``targets.detection(index=0)`` (or ``box=...`` / ``label=...``) explains the class score (or one box coordinate)
of one detection per image. A detector returns a list of dicts, so :meth:`DetectionTarget.prepare` wraps it in
:class:`DetectionOutputs`, which returns a dense tensor ``N x B x 6`` (``x0, y0, x1, y1, score, label`` per
detection, padded with score 0 and label -1) that every gradient and perturbation method can differentiate or
compare. The chosen box is fixed on the clean input; on a perturbed input the target is the score of the
detection of the same class that overlaps it most (IoU >= ``iou_threshold``; 0 if none), the matching rule of
pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``. Gradients flow through torchvision's own post-processing
(softmax/sigmoid and box decoding), so ``gradient`` is exactly d(box score)/d(input).

CAM methods default to the last backbone/FPN layer with a spatial output (``layer="detector.backbone..."``
picks another). LRP and DeepLIFT-type methods are refused (:data:`UNSUPPORTED`): their rules are not defined
for the detector's post-processing (top-k, NMS, box decoding).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torchvision.ops import box_iou

from ..errors import ExplanationError, ModelError
from ..models import cam_layer

__all__ = ["detection", "DetectionTarget", "DetectionOutputs", "BoxTarget", "OUTPUTS", "UNSUPPORTED", "supports"]

OUTPUTS = ("score", "x0", "y0", "x1", "y1")
_FAMILY_REASON = {"lrp": "LRP rules are not defined for the detector's post-processing (top-k, NMS, box decoding)"}
#: Methods that cannot explain a detection, with the reason (families in ``_FAMILY_REASON`` too).
UNSUPPORTED = {
    "deeplift": "DeepLIFT needs a reference pass through the same detections; NMS changes them",
    "deeplift_shap": "DeepLIFT needs a reference pass through the same detections; NMS changes them",
    "layer_deeplift": "DeepLIFT needs a reference pass through the same detections; NMS changes them",
    "guided_gradcam": "captum's GuidedGradCam hooks ReLUs of a traced copy; torchvision detectors cannot be traced",
}


def supports(info: Any) -> str | None:
    """``None`` when method ``info`` (a :class:`~xaikit.saliency.MethodInfo`) can explain detections, else why not."""
    refused = getattr(info, "refuses", {}).get("detection")
    return refused or UNSUPPORTED.get(info.name) or _FAMILY_REASON.get(info.family)


def detection(index: int | None = None, *, box: Any = None, label: int | None = None, output: str = "score",
              iou_threshold: float = 0.5, max_detections: int = 100) -> "DetectionTarget":
    """A target for torchvision detectors: one detection per image, chosen on the clean input.

    Parameters
    ----------
    index : int, optional
        Position in the detector's output (sorted by score, so ``0`` is the top detection).
    box : sequence of 4 numbers or array N x 4, optional
        ``(x0, y0, x1, y1)`` in input pixels: the detection overlapping it most (IoU > 0).
    label : int, optional
        Class: the highest-scoring detection of that class (with ``box``: only detections of that class).
    output : str
        ``"score"`` (class score) or a box coordinate ``"x0"``, ``"y0"``, ``"x1"``, ``"y1"`` (box regression).
    iou_threshold : float
        How much a detection on a perturbed input must overlap the chosen box to count as the same one.
    max_detections : int
        Detections kept per image in the dense output.

    Examples
    --------
    >>> import torch, torchvision
    >>> from xaikit.saliency import explain, targets
    >>> det = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
    ...     weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64).eval()
    >>> exp = explain(det, torch.rand(1, 3, 64, 64), "gradient", targets.detection(index=0))  # doctest: +SKIP
    """
    if index is None and box is None and label is None:
        index = 0
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise ExplanationError(f"detection target: index must be a non-negative int; got {index!r}.")
    if output not in OUTPUTS:
        raise ExplanationError(f"detection target: output={output!r} is not known; use one of {list(OUTPUTS)}.")
    if not 0 < float(iou_threshold) <= 1:
        raise ExplanationError(f"detection target: iou_threshold must be in (0, 1]; got {iou_threshold!r}.")
    return DetectionTarget(index, box, label, output, float(iou_threshold), int(max_detections))


@dataclass(frozen=True, eq=False)
class DetectionTarget:
    """An unbound detection target (see :func:`detection`)."""

    index: int | None
    box: Any
    label: int | None
    output: str
    iou_threshold: float
    max_detections: int
    policy = "detection"

    def prepare(self, model: nn.Module, info: Any = None) -> "DetectionOutputs":
        """Check ``model`` (a detector in eval mode) and ``info`` (a supported method); wrap the detector."""
        if isinstance(model, DetectionOutputs):
            return model
        if model.training:
            raise ModelError(f"{type(model).__name__} is in training mode, where torchvision detectors return losses, "
                             "not detections; call model.eval() before explaining it.")
        reason = supports(info) if info is not None else None
        if reason:
            raise ExplanationError(f"method {info.name!r} cannot explain detections: {reason}. Use a gradient, "
                                   "path, sampling, perturbation or CAM method "
                                   "(see xaikit.saliency.detection.supports).")
        return DetectionOutputs(model, self.max_detections)

    def bind(self, outputs: torch.Tensor) -> "BoxTarget":
        """Pick one detection per image from the clean dense outputs ``N x B x 6``."""
        picked = [self._pick(i, det) for i, det in enumerate(outputs)]
        return BoxTarget(torch.stack([outputs[i, j, :4] for i, j in enumerate(picked)]),
                         torch.stack([outputs[i, j, 5] for i, j in enumerate(picked)]).long(), self.output,
                         self.iou_threshold)

    def select(self, index) -> "DetectionTarget":
        """The target for a subset of the images (``explain_many`` batches): per-image boxes are indexed."""
        if self.box is None:
            return self
        boxes = torch.as_tensor(self.box, dtype=torch.float64).reshape(-1, 4)
        return replace(self, box=boxes if len(boxes) == 1 else boxes[torch.as_tensor(index, dtype=torch.long)])

    def _pick(self, i: int, det: torch.Tensor) -> int:
        valid = det[:, 5] >= 0
        n_det = int(valid.sum())
        if n_det == 0:
            raise ExplanationError(f"detection target: image {i} has no detections; nothing to explain. Lower the "
                                   "detector's score threshold (e.g. box_score_thresh) or drop the image.")
        if self.box is None and self.label is None:
            if self.index >= n_det:
                raise ExplanationError(f"detection target: index={self.index} but image {i} has only {n_det} "
                                       f"detection(s) (valid: 0..{n_det - 1}).")
            return self.index
        ok = valid & (det[:, 5] == self.label) if self.label is not None else valid
        if not bool(ok.any()):
            raise ExplanationError(f"detection target: image {i} has no detection of class {self.label}; its "
                                   f"classes are {sorted(set(det[valid, 5].long().tolist()))}.")
        if self.box is None:
            return int(torch.where(ok, det[:, 4], torch.tensor(-1.0, dtype=det.dtype)).argmax())
        iou = torch.where(ok, _iou(self._ref_box(i).to(det), det[:, :4]), torch.zeros(()))
        if float(iou.max()) <= 0:
            raise ExplanationError(f"detection target: no detection of image {i} overlaps box "
                                   f"{self._ref_box(i).tolist()}.")
        return int(iou.argmax())

    def _ref_box(self, i: int) -> torch.Tensor:
        boxes = torch.as_tensor(self.box, dtype=torch.float64).reshape(-1, 4)
        if boxes.shape[0] != 1 and i >= boxes.shape[0]:
            raise ExplanationError(f"detection target: box has {boxes.shape[0]} rows; give one or one per image.")
        return boxes[0 if boxes.shape[0] == 1 else i][None]


def _iou(ref: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one box ``1 x 4`` with ``B x 4`` boxes (torchvision); identical boxes count 1 even when degenerate
    (zero area, which untrained detectors produce: torchvision's IoU is then 0/0)."""
    ref, boxes = ref.detach(), boxes.detach()
    iou = torch.nan_to_num(box_iou(ref, boxes)[0], nan=0.0)
    return torch.where((boxes == ref).all(1), torch.ones_like(iou), iou)


class DetectionOutputs(nn.Module):
    """A torchvision detector whose list-of-dicts output is packed into a dense ``N x B x 6`` tensor.

    Column order ``x0, y0, x1, y1, score, label``; rows beyond an image's detections hold zeros and label -1.
    The detector is the submodule ``detector`` (layer names for CAM methods start with ``"detector."``).
    """

    def __init__(self, detector: nn.Module, max_detections: int = 100):
        super().__init__()
        self.detector = detector
        self.max_detections = max_detections

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = self.detector(list(x))
        if not isinstance(outs, (list, tuple)) or not all(isinstance(o, dict) and "boxes" in o for o in outs):
            raise ModelError(f"{type(self.detector).__name__} did not return a list of detections "
                             "(dicts with 'boxes', 'scores', 'labels'); is it a torchvision detector in eval mode?")
        dense = x.new_zeros(len(x), self.max_detections, 6)
        dense[..., 5] = -1
        for i, o in enumerate(outs):
            k = min(len(o["scores"]), self.max_detections)
            dense[i, :k] = torch.cat([o["boxes"][:k], o["scores"][:k, None], o["labels"][:k, None].to(x.dtype)], 1)
        return dense + 0 * x.reshape(len(x), -1)[:, :1, None]  # in the graph even with no detections (zero grad)

    def cam_layer(self, sample: torch.Tensor) -> str:
        """Name of the last module of the detector's backbone (FPN included) with a spatial tensor output."""

        return "detector.backbone." + cam_layer(self.detector.backbone, sample)


class BoxTarget:
    """A bound detection target: dense outputs ``R x B x 6`` -> ``R`` scores of the matched detection."""

    per_image = True
    policy = "detection"

    def __init__(self, boxes: torch.Tensor, labels: torch.Tensor, output: str, iou_threshold: float):
        self.boxes, self.labels, self.output, self.iou_threshold = boxes.detach(), labels, output, iou_threshold

    @property
    def targets(self) -> torch.Tensor:
        """The class of the explained detection per image (long ``N``)."""
        return self.labels.clone()

    def __call__(self, outputs: torch.Tensor) -> torch.Tensor:
        if len(self.boxes) != 1 and len(self.boxes) != len(outputs):
            raise ExplanationError(f"detection target holds {len(self.boxes)} boxes for {len(outputs)} outputs.")
        ref = self.boxes.to(outputs).expand(len(outputs), 4)
        label = self.labels.to(outputs.device).expand(len(outputs))
        col = OUTPUTS.index(self.output)
        col = 4 if col == 0 else col - 1
        scores = []
        for r, det in enumerate(outputs):
            iou = _iou(ref[r : r + 1], det[:, :4])
            iou = torch.where(det[:, 5] == label[r], iou, torch.zeros_like(iou))
            j = int(iou.argmax())
            if float(iou[j]) >= self.iou_threshold:
                scores.append(det[j, col])
            else:  # the box is gone: score 0; a coordinate keeps its clean value (no change)
                scores.append(0 * det[0, col] + (0 if col == 4 else ref[r, col]))
        return torch.stack(scores)

    def subset(self, sl: slice) -> "BoxTarget":
        return BoxTarget(self.boxes[sl], self.labels[sl], self.output, self.iou_threshold)
