"""Training and evaluation: :func:`fit` a classifier, :func:`assess` it with honest uncertainty.

- :func:`fit` trains with a chosen optimizer, schedule, imbalance handling and early stopping, and returns a
  :class:`FitResult` with a tidy per-epoch history and the best epoch's weights restored.
- :func:`assess` returns an :class:`Assessment`: predictions, scikit-learn metrics with patient-level
  bootstrap CIs, confusion matrix, classification report, calibration, ROC/PR curves with bands.
- :func:`train_sample_model` is the one-call recipe behind the kit's shipped sample model.
- :mod:`.segmentation` and :mod:`.detection`: train a UNet / a box regressor and score them (Dice, IoU, HD95 per
  class; box IoU, hit rate, mAP@0.5), with patient-bootstrap CIs.
"""
from .assessment import Assessment, assess, assess_predictions
from .batchnorm import recalibrate_batchnorm
from .detection import box_scores, fit_boxes, predict_boxes
from .fit import MONITORS, OPTIMIZERS, SCHEDULERS, FitResult, fit
from .metrics import choose_threshold, expected_calibration_error
from .recipes import train_sample_model
from .segmentation import fit_segmentation, predict_labelmaps, segmentation_scores

__all__ = [
    "fit",
    "FitResult",
    "assess",
    "assess_predictions",
    "Assessment",
    "choose_threshold",
    "expected_calibration_error",
    "train_sample_model",
    "recalibrate_batchnorm",
    "fit_segmentation",
    "predict_labelmaps",
    "segmentation_scores",
    "fit_boxes",
    "predict_boxes",
    "box_scores",
    "MONITORS",
    "OPTIMIZERS",
    "SCHEDULERS",
]
