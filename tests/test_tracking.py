"""fit(..., tracking="mlflow") against a local MLflow file store in a temporary folder; the checkpoint comes back."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

mlflow = pytest.importorskip("mlflow")

from xaikit.checkpoint import load_checkpoint  # noqa: E402
from xaikit.errors import ArgumentError, CheckpointError, TrainingError  # noqa: E402
from xaikit.models import build_model  # noqa: E402
from xaikit.train import fit  # noqa: E402
from xaikit.train.tracking import load_run_checkpoint, mlflow_store  # noqa: E402

PRE = {"size": [16, 16], "mode": "resize", "channels": 1, "normalize": "none", "percentiles": [0.5, 99.5],
       "window": None}


class Squares(Dataset):
    """1 x 16 x 16 noise; class 1 has a bright square."""

    classes = ["normal", "pneumonia"]
    preprocess = PRE

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.labels = [i % 2 for i in range(n)]
        self.x = torch.randn(n, 1, 16, 16, generator=g) * 0.3
        for i, label in enumerate(self.labels):
            if label:
                self.x[i, 0, 4:10, 5:11] += 1.5

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.labels[i], "id": f"i{i}"}


def _model():
    torch.manual_seed(0)
    return build_model("small_cnn", num_classes=2, widths=(4, 8))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    store = tmp_path_factory.mktemp("mlruns")
    model = _model()
    result = fit(model, Squares(16, 0), Squares(8, 1), epochs=2, batch_size=8, tracking="mlflow",
                 tracking_uri=store, experiment="unit", progress=False)
    return store, model, result


def test_the_run_holds_params_metrics_evaluation_and_checkpoint(tracked):
    store, _, result = tracked
    with mlflow_store(store):
        run = mlflow.get_run(result.tracking_run_id)
        history = mlflow.MlflowClient().get_metric_history(result.tracking_run_id, "val_loss")
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.tracking_run_id)}
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.001" and run.data.params["epochs"] == "2"
    wide = result.history_wide()
    assert [h.step for h in history] == [1, 2]
    assert [h.value for h in history] == pytest.approx(list(wide["val_loss"]))
    best = wide.set_index("epoch").loc[result.best_epoch]
    assert run.data.metrics["best_val_roc_auc"] == pytest.approx(best["val_roc_auc"])
    assert run.data.metrics["best_epoch"] == result.best_epoch
    assert {"model.pt", "summary.json"} <= artifacts


def test_the_checkpoint_loads_back_from_the_run(tracked):
    store, model, result = tracked
    ckpt = load_run_checkpoint(result.tracking_run_id, tracking_uri=store)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ckpt.model.state_dict()[k], v, rtol=0, atol=0)
    assert ckpt.preprocess_dict == PRE and ckpt.classes == Squares.classes
    assert ckpt.summary["best_epoch"] == result.best_epoch
    with mlflow_store(store):
        same = load_checkpoint(f"runs:/{result.tracking_run_id}/model.pt")
        assert same.sha256 == ckpt.sha256 and str(same.path).startswith("runs:")
        with pytest.raises(CheckpointError, match="cannot fetch this artifact"):
            load_checkpoint("runs:/0123456789abcdef/model.pt")


def test_tracking_leaves_no_global_mlflow_state(tracked):
    assert not mlflow.is_tracking_uri_set() or mlflow.get_tracking_uri() != tracked[0].as_uri()
    assert mlflow.active_run() is None


def test_a_failed_training_is_recorded_as_failed(tmp_path):
    model = _model()
    model.classifier.register_forward_hook(lambda m, i, o: o * float("nan"))
    with pytest.raises(TrainingError):
        fit(model, Squares(16, 0), Squares(8, 1), epochs=1, batch_size=8, tracking="mlflow",
            tracking_uri=tmp_path, progress=False)
    with mlflow_store(tmp_path):
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert [r.info.status for r in runs] == ["FAILED"]
    assert mlflow.active_run() is None


def test_unknown_tracker_is_refused():
    with pytest.raises(ArgumentError, match="tracking='wandb'"):
        fit(_model(), Squares(8, 0), Squares(4, 1), epochs=1, tracking="wandb", progress=False)
