"""Tracked training runs with MLflow (optional: ``pip install mlflow-skinny``), used by ``fit(..., tracking="mlflow")``.

A run records the parameters of :func:`~xaikit.train.fit`, every epoch's metrics (``train_loss``, ``val_roc_auc``,
... with ``step = epoch``), the evaluation of the restored best epoch (``best_val_*`` metrics and ``summary.json``)
and, for models built by :func:`xaikit.models.build_model`, the checkpoint with its ``Preprocess`` as the
artifact ``model.pt``. Load it back with ``load_checkpoint("runs:/<run_id>/model.pt")`` or :func:`load_run_checkpoint`.

The default store is a local ``./mlruns`` folder. MLflow 3 keeps that file store in maintenance mode and
refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``; xaikit sets that variable only while it talks to a file
store and restores it after. Any other tracking URI (``sqlite:///mlflow.db``, ``http://server:5000``) is used
as given.

Example
-------
>>> result = fit(model, train, val, epochs=5, tracking="mlflow", tracking_uri="mlruns")  # doctest: +SKIP
>>> ckpt = load_run_checkpoint(result.tracking_run_id, tracking_uri="mlruns")            # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import ArgumentError

__all__ = ["TRACKERS", "MlflowRun", "load_run_checkpoint", "mlflow_store"]

#: Values of ``fit(..., tracking=...)``.
TRACKERS = ("mlflow",)
ARTIFACT = "model.pt"


def _mlflow():
    try:
        import mlflow
    except ImportError as exc:
        raise ArgumentError("tracking='mlflow' needs MLflow: pip install mlflow-skinny (or mlflow).") from exc
    return mlflow


@contextlib.contextmanager
def mlflow_store(tracking_uri: str | os.PathLike | None) -> Iterator[Any]:
    """Point MLflow at ``tracking_uri`` (default ``./mlruns``) for the block; the previous URI is restored."""
    mlflow = _mlflow()
    uri = str(tracking_uri) if tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "mlruns")
    if "://" not in uri and not uri.startswith("file:"):
        uri = Path(uri).expanduser().resolve().as_uri()
    before_uri = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    before_env = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if uri.startswith("file:"):
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    mlflow.set_tracking_uri(uri)
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(before_uri)  # None: back to unset
        if before_env is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = before_env


class MlflowRun:
    """One MLflow run fed by :func:`~xaikit.train.fit`: an ``on_epoch_end`` callback plus start and finish."""

    def __init__(self, tracking_uri=None, experiment: str = "xaikit", run_name: str | None = None):
        self._store = mlflow_store(tracking_uri)
        self.mlflow = self._store.__enter__()
        try:
            self.mlflow.set_experiment(experiment)
            self.run = self.mlflow.start_run(run_name=run_name)
        except BaseException:
            self._store.__exit__(None, None, None)
            raise
        self.run_id = self.run.info.run_id

    def log_params(self, params: dict) -> None:
        self.mlflow.log_params({k: "None" if v is None else v for k, v in params.items()})

    def on_epoch_end(self, row: dict) -> None:
        metrics = {k: float(v) for k, v in row.items() if k != "epoch" and _finite(v)}
        self.mlflow.log_metrics(metrics, step=int(row["epoch"]))

    def finish(self, result, model, classes, preprocess) -> None:
        """Log the best epoch's evaluation, the summary and (for built models) the checkpoint; end the run."""
        summary = result.summary()
        best = {f"best_{k}": float(v) for k, v in summary["best_epoch_metrics"].items() if _finite(v)}
        self.mlflow.log_metrics({**best, "best_epoch": float(result.best_epoch)})
        self.mlflow.log_dict(summary, "summary.json")
        if getattr(model, "xaikit_arch", None) is not None:

            with tempfile.TemporaryDirectory(prefix="xaikit-mlflow-") as tmp:
                path = save_checkpoint(Path(tmp) / ARTIFACT, model, classes=classes, preprocess=preprocess,
                                       summary=summary)
                self.mlflow.log_artifact(str(path))
        self.close("FINISHED")

    def close(self, status: str) -> None:
        try:
            self.mlflow.end_run(status=status)
        finally:
            self._store.__exit__(None, None, None)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_run_checkpoint(run_id: str, *, tracking_uri: str | os.PathLike | None = None, **load_kwargs: Any):
    """``load_checkpoint("runs:/<run_id>/model.pt")`` against ``tracking_uri`` (default ``./mlruns``)."""

    with mlflow_store(tracking_uri):
        return load_checkpoint(f"runs:/{run_id}/{ARTIFACT}", **load_kwargs)
