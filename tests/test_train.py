"""xaikit.train: fit (learning, best epoch, determinism, callbacks, bad input), assess (sklearn agreement,
patient bootstrap, calibration, thresholds), the training figures and the live curve."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm
from torch.utils.data import Dataset

from xaikit.checkpoint import load_checkpoint
from xaikit.errors import ArgumentError, DatasetError, PreprocessMismatchError, TrainingError
from xaikit.models import build_model
from xaikit.train import (
    OPTIMIZERS,
    SCHEDULERS,
    assess,
    assess_predictions,
    choose_threshold,
    expected_calibration_error,
    fit,
    train_sample_model,
)
from xaikit.train import metrics as M
from xaikit.viz.training import confusion_heatmap, pr_curves, reliability_diagram, roc_curves, training_curves

CLASSES = ["normal", "pneumonia"]


class Blobs(Dataset):
    """1 x 32 x 32 noise images; class 1 carries a bright 8 x 8 blob somewhere. Two images per patient."""

    def __init__(self, n, seed=0, labels=None, with_labels_attr=True, classes=CLASSES, preprocess=None):
        g = torch.Generator().manual_seed(seed)
        self._labels = list(labels) if labels is not None else [i % 2 for i in range(n)]
        self.x = torch.randn(len(self._labels), 1, 32, 32, generator=g) * 0.5
        for i, label in enumerate(self._labels):
            if label > 0:
                r, c = torch.randint(2, 22, (2,), generator=g).tolist()
                self.x[i, 0, r:r + 8, c:c + 8] += 1.5 * label
        self.classes = classes
        if with_labels_attr:
            self.labels = np.asarray(self._labels)
        if preprocess is not None:
            self.preprocess = preprocess

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self._labels[i], "id": f"img{i}", "patient_id": f"p{i // 2}",
                "masks": {"lung": torch.ones(32, 32, dtype=torch.bool)}, "meta": {"note": None}}


def tiny_model(seed=0, k=2):
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=k, widths=(8, 16))


@pytest.fixture(scope="module")
def trained():
    train, val = Blobs(96, 0), Blobs(48, 1)
    model = tiny_model()
    model.eval()
    result = fit(model, train, val, epochs=5, batch_size=16, lr=1e-2, progress=False)
    return model, result, val


# ------------------------------------------------------------------------------------------ fit


def test_fit_learns_and_restores_the_best_epoch(trained):
    model, result, val = trained
    wide = result.history_wide()
    assert list(wide["epoch"]) == [1, 2, 3, 4, 5]
    assert wide["val_roc_auc"].max() >= 0.95
    assert result.best_value == pytest.approx(wide["val_roc_auc"].max())
    # the weights in the model are those of the best epoch: its validation numbers are reproduced exactly
    ev = assess(model, val, n_boot=0, device="cpu")
    best = wide.set_index("epoch").loc[result.best_epoch]
    assert ev.metric("roc_auc") == pytest.approx(best["val_roc_auc"], abs=1e-12)
    assert ev.metric("accuracy") == pytest.approx(best["val_accuracy"], abs=1e-12)
    assert not model.training  # the eval mode it had before fit


def test_history_is_tidy_and_documented(trained):
    _, result, _ = trained
    h = result.history
    assert list(h.columns) == ["epoch", "split", "metric", "value"]
    assert set(h["split"]) == {"train", "val"}
    assert {"loss", "lr", "seconds"} <= set(h.loc[h["split"] == "train", "metric"])
    assert {"loss", "roc_auc", "balanced_accuracy", "accuracy"} <= set(h.loc[h["split"] == "val", "metric"])
    assert len(h) == 5 * h.groupby("epoch").size().iloc[0]
    summary = result.summary()
    assert summary["best_epoch"] == result.best_epoch and summary["monitor"] == "val_roc_auc"


def test_fit_restores_training_mode_and_cosine_schedule_decays():
    model = tiny_model()
    model.train()
    result = fit(model, Blobs(32, 0), Blobs(16, 1), epochs=3, batch_size=16, progress=False, lr=1e-2)
    assert model.training
    lrs = result.history.query("metric == 'lr'")["value"].to_numpy()
    np.testing.assert_allclose(lrs, [1e-2 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)])


CASES = [("adamw", "onecycle"), ("sgd", "plateau"), ("adam", None), ("sgd", "cosine")]  # each option once


@pytest.mark.parametrize("optimizer, scheduler", CASES)
def test_every_optimizer_and_scheduler_runs(optimizer, scheduler):
    assert {optimizer for optimizer, _ in CASES} == set(OPTIMIZERS) and {s for _, s in CASES} == set(SCHEDULERS)
    result = fit(tiny_model(), Blobs(16, 0), Blobs(8, 1), epochs=2, batch_size=8, optimizer=optimizer,
                 scheduler=scheduler, monitor="val_loss", progress=False)
    assert result.epochs_run == 2 and np.isfinite(result.best_value)


def test_same_seed_same_run_and_global_determinism_restored():
    before = torch.are_deterministic_algorithms_enabled()
    runs = []
    for _ in range(2):
        model = tiny_model(seed=3)
        r = fit(model, Blobs(16, 0), Blobs(8, 1), epochs=2, batch_size=8, seed=7, deterministic=True,
                progress=False, class_weight="balanced")
        runs.append((r.history.query("metric != 'seconds'")["value"].to_numpy(), model.state_dict()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for k, v in runs[0][1].items():
        torch.testing.assert_close(v, runs[1][1][k], rtol=0, atol=0)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_early_stopping_stops_when_the_metric_stalls():
    model = tiny_model()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.momentum = 0.0  # with lr=0 too, nothing changes: the validation loss stays exactly the same
    result = fit(model, Blobs(16, 0), Blobs(8, 1), epochs=6, batch_size=8, lr=0.0, scheduler=None,
                 early_stopping=("val_loss", 2), monitor="val_loss", progress=False)
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1


def test_weighted_sampler_and_class_weights_handle_imbalance():
    labels = [1] * 6 + [0] * 42
    train = Blobs(48, 0, labels=labels)
    result = fit(tiny_model(), train, Blobs(16, 1), epochs=3, batch_size=16, sampler="weighted", lr=1e-2,
                 progress=False)
    assert result.params["sampler"] == "weighted"
    from xaikit.data import class_weights, weighted_sampler  # the one implementation fit uses

    sampler = weighted_sampler(np.asarray(labels), seed=0)
    drawn = np.asarray(labels)[list(iter(sampler))]
    assert 0.3 < drawn.mean() < 0.7  # ~balanced although 12.5% are positive
    w = class_weights(np.asarray(labels), 2)
    np.testing.assert_allclose(w.numpy(), [48 / (2 * 42), 48 / (2 * 6)], rtol=1e-6)
    with pytest.warns(UserWarning, match="twice"):
        fit(tiny_model(), train, Blobs(8, 1), epochs=1, class_weight="balanced", sampler="weighted",
            progress=False)


def test_callbacks_see_every_epoch_and_batch():
    seen_rows, seen_batches, plain = [], [], []

    class Recorder:
        def on_epoch_end(self, row):
            seen_rows.append(row)

        def on_batch_end(self, epoch, batch, loss):
            seen_batches.append((epoch, batch, float(loss)))

    fit(tiny_model(), Blobs(24, 0), Blobs(8, 1), epochs=2, batch_size=8, callbacks=[Recorder(), plain.append],
        progress=False)
    assert [r["epoch"] for r in seen_rows] == [1, 2] and len(plain) == 2
    assert {"train_loss", "val_loss", "val_roc_auc", "train_lr"} <= set(seen_rows[0])
    assert [(e, b) for e, b, _ in seen_batches] == [(e, b) for e in (1, 2) for b in (1, 2, 3)]
    with pytest.raises(ArgumentError, match="callback"):
        fit(tiny_model(), Blobs(8, 0), Blobs(8, 1), epochs=1, callbacks=[42], progress=False)


def test_nan_loss_names_epoch_and_batch_and_keeps_the_best_checkpoint(tmp_path):
    model = tiny_model()
    calls = {"n": 0}

    def poison(module, inputs, output):  # NaN logits at the 2nd training batch of epoch 2 (3 batches/epoch)
        if module.training:
            calls["n"] += 1
            if calls["n"] == 5:
                return output * float("nan")
        return output

    model.classifier.register_forward_hook(poison)
    path = tmp_path / "best.pt"
    with pytest.raises(TrainingError, match=r"epoch 2, batch 2.*best epoch 1.*kept at"):
        fit(model, Blobs(24, 0), Blobs(8, 1), epochs=3, batch_size=8, checkpoint_path=path, progress=False)
    ckpt = load_checkpoint(path)
    assert ckpt.summary["best_epoch"] == 1
    for k, v in ckpt.model.state_dict().items():  # the model in memory holds the best (finite) weights again
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_train_and_validation_must_share_the_preprocess():
    with pytest.raises(PreprocessMismatchError, match="validation set is preprocessed differently"):
        fit(tiny_model(), Blobs(8, 0, preprocess={"size": [32, 32]}), Blobs(8, 1, preprocess={"size": [64, 64]}),
            epochs=1, progress=False)
    model = tiny_model()
    model.xaikit_preprocess = {"size": [64, 64]}  # fine-tuning a checkpoint trained at another size
    with pytest.raises(PreprocessMismatchError, match="size"):
        fit(model, Blobs(8, 0, preprocess={"size": [32, 32]}), Blobs(8, 1), epochs=1, progress=False)


def test_checkpoint_path_needs_a_built_model(tmp_path):
    with pytest.raises(ArgumentError, match="build_model"):
        fit(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1024, 2)), Blobs(8, 0), Blobs(8, 1),
            epochs=1, checkpoint_path=tmp_path / "x.pt", progress=False)


def test_empty_validation_set_is_refused():
    with pytest.raises(TrainingError, match="validation set is empty"):
        fit(tiny_model(), Blobs(8, 0), Blobs(0, 1), epochs=1, progress=False)


def test_one_class_training_set_is_refused():
    with pytest.raises(DatasetError, match="only class 'normal'.*at least two classes"):
        fit(tiny_model(), Blobs(8, 0, labels=[0] * 8), Blobs(8, 1), epochs=1, progress=False)


@pytest.mark.parametrize("with_attr", [True, False])
def test_labels_outside_the_classes_are_refused(with_attr):
    train = Blobs(8, 0, labels=[0, 1, 2, 1, 0, 1, 2, 0], with_labels_attr=with_attr)
    with pytest.raises(DatasetError, match=r"2 samples have labels \[2\] outside the 2 classes"):
        fit(tiny_model(), train, Blobs(8, 1), epochs=1, progress=False)


def test_one_class_validation_set_cannot_be_monitored_by_auc():
    with pytest.raises(DatasetError, match="validation set holds only class 'pneumonia'.*val_loss"):
        fit(tiny_model(), Blobs(8, 0), Blobs(4, 1, labels=[1] * 4), epochs=1, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
    ({"scheduler": "step"}, "scheduler='step'"),
    ({"monitor": "val_auc"}, "monitor='val_auc'"),
    ({"epochs": 0}, "epochs=0"),
    ({"early_stopping": ("val_x", 2)}, "early_stopping metric"),
    ({"class_weight": "inverse"}, "class_weight="),
])
def test_bad_arguments_are_argument_errors(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        fit(tiny_model(), Blobs(8, 0), Blobs(8, 1), progress=False, **{"epochs": 1, **kwargs})


def test_train_sample_model_writes_a_loadable_checkpoint(tmp_path):
    prep = {"size": [32, 32], "channels": 1}
    model, result = train_sample_model(Blobs(64, 0), Blobs(32, 1), tmp_path / "sample.pt", classes=CLASSES,
                                       preprocess=prep, epochs=3, arch_kwargs={"widths": (8, 16)})
    ckpt = load_checkpoint(tmp_path / "sample.pt", preprocess=prep)
    assert ckpt.summary["best_epoch"] == result.best_epoch and ckpt.classes == CLASSES
    x = Blobs(4, 5).x
    torch.testing.assert_close(ckpt.model(x), model(x))
    assert (tmp_path / "sample.pt").stat().st_size < 3_000_000



def test_train_sample_model_is_reproducible_from_its_seed(tmp_path):
    """The initial weights come from ``seed`` too (not from whatever the global RNG holds), so a rebuild
    of the shipped sample models gives the same checkpoint."""
    prep = {"size": [32, 32], "channels": 1}
    runs = []
    for k in range(2):
        torch.manual_seed(100 + k)  # a different global state before each run must not matter
        model, _ = train_sample_model(Blobs(32, 0), Blobs(16, 1), tmp_path / f"run{k}.pt", classes=CLASSES,
                                      preprocess=prep, epochs=2, seed=5, arch_kwargs={"widths": (8, 16)},
                                      deterministic=True)
        runs.append(model.state_dict())
    for name, value in runs[0].items():
        torch.testing.assert_close(value, runs[1][name], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ assess


def test_evaluate_agrees_with_sklearn_and_tables_are_complete(trained):
    model, _, _ = trained
    test = Blobs(40, 2)
    ev = assess(model, test, n_boot=200, device="cpu")
    p = ev.predictions
    assert list(p.columns) == ["image_id", "patient_id", "label", "pred", "correct", "prob_normal",
                               "prob_pneumonia"]
    y, score, pred = p["label"].to_numpy(), p["prob_pneumonia"].to_numpy(), p["pred"].to_numpy()
    assert ev.metric("roc_auc") == pytest.approx(skm.roc_auc_score(y, score))
    assert ev.metric("pr_auc") == pytest.approx(skm.average_precision_score(y, score))
    assert ev.metric("balanced_accuracy") == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert ev.metric("specificity") == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    np.testing.assert_array_equal(ev.confusion_matrix(), skm.confusion_matrix(y, pred))
    m = ev.metrics.set_index("metric")
    finite = m.dropna()
    assert ((finite["ci_low"] <= finite["value"] + 1e-12) & (finite["value"] <= finite["ci_high"] + 1e-12)).all()
    assert set(ev.report["class"]) >= set(CLASSES) and "f1_score" in ev.report
    assert len(ev.roc) == len(M.CURVE_GRID) and (ev.roc["tpr_low"] <= ev.roc["tpr_high"]).all()
    assert list(ev.thresholds["rule"]) == ["argmax", "youden"]
    assert ev.params["n_patients"] == 20


def test_bootstrap_resamples_patients_not_images():
    patients = ["a", "a", "a", "b", "c", "c"]
    for w in M.patient_bootstrap(patients, 50, seed=1):
        assert w[0] == w[1] == w[2] and w[4] == w[5]
        assert w[[0, 3, 4]].sum() == 3  # three patients drawn with replacement
    # ten identical images per patient: the patient-level interval is as wide as with one image per patient,
    # while pretending images are independent gives a much narrower (wrong) interval
    rng = np.random.default_rng(0)
    y_pat = np.arange(30) % 2
    p_pat = np.clip(0.5 + (y_pat - 0.5) * 0.3 + rng.normal(0, 0.25, 30), 0.01, 0.99)
    y, p = np.repeat(y_pat, 10), np.repeat(p_pat, 10)
    prob = np.c_[1 - p, p]
    by_patient = assess_predictions(y, prob, classes=CLASSES, patient_ids=np.repeat(np.arange(30), 10).astype(str),
                                      n_boot=200).metrics.set_index("metric")
    by_image = assess_predictions(y, prob, classes=CLASSES, n_boot=200).metrics.set_index("metric")
    one_each = assess_predictions(y_pat, np.c_[1 - p_pat, p_pat], classes=CLASSES,
                                    n_boot=200).metrics.set_index("metric")
    width = lambda t: t.loc["roc_auc", "ci_high"] - t.loc["roc_auc", "ci_low"]  # noqa: E731
    assert width(by_patient) == pytest.approx(width(one_each), rel=0.35)
    assert width(by_image) < 0.6 * width(by_patient)


@pytest.mark.parametrize("k", [2, 3])
def test_fast_bootstrap_replicates_equal_sklearn_scorers(k):
    rng = np.random.default_rng(k)
    for trial in range(15):
        y = rng.integers(0, k, 30)
        prob = rng.dirichlet(np.ones(k), 30)
        pred = prob.argmax(1) if trial % 2 else rng.integers(0, k, 30)
        w = rng.integers(1, 4, 30).astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = M.classification_scores(y, prob, pred, w)
            fast, _ = M.replicate_scores(y, prob, pred, w, [1] if k == 2 else range(k))
        for name, value in reference.items():
            assert fast[name] == pytest.approx(value, nan_ok=True, abs=1e-12), name


def test_ece_matches_a_hand_computed_value_and_the_reliability_table():
    y = np.array([1] * 6 + [0] * 4)
    prob = np.tile([0.2, 0.8], (10, 1))
    assert expected_calibration_error(y, prob) == pytest.approx(0.2)  # one bin: |0.6 - 0.8|
    rng = np.random.default_rng(0)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)  # calibrated by construction
    prob = np.c_[1 - p, p]
    table = M.reliability_table(y, prob, 10)
    from_table = (table["count"] * (table["fraction_positive"] - table["mean_predicted"]).abs()).sum() / 500
    assert expected_calibration_error(y, prob) == pytest.approx(from_table)
    assert expected_calibration_error(y, prob) < 0.08


def test_threshold_rules():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.3, 0.6, 0.4, 0.7, 0.9])
    youden = choose_threshold(y, s)
    assert youden["sensitivity"] - (1 - youden["specificity"]) == pytest.approx(2 / 3)
    high = choose_threshold(y, s, method="sensitivity", target_sensitivity=1.0)
    assert high == {"threshold": 0.4, "sensitivity": 1.0, "specificity": pytest.approx(2 / 3)}
    ev = assess_predictions(y, np.c_[1 - s, s], classes=CLASSES, threshold=0.65, target_sensitivity=1.0,
                              n_boot=0)
    np.testing.assert_array_equal(ev.predictions["pred"], (s >= 0.65).astype(int))
    assert ev.thresholds.set_index("rule").loc["sensitivity>=1", "threshold"] == 0.4
    with pytest.raises(ArgumentError):
        assess_predictions(y, np.c_[1 - s, s], classes=CLASSES, threshold=1.5)


def test_multiclass_evaluation_is_macro_and_one_vs_rest():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    prob = rng.dirichlet(np.ones(3), 60) + np.eye(3)[y]
    prob /= prob.sum(1, keepdims=True)
    ev = assess_predictions(y, prob, classes=["a", "b", "c"], n_boot=50)
    assert ev.metric("roc_auc") == pytest.approx(skm.roc_auc_score(y, prob, multi_class="ovr"))
    assert ev.metric("f1") == pytest.approx(skm.f1_score(y, prob.argmax(1), average="macro"))
    assert sorted(ev.roc["class"].unique()) == ["a", "b", "c"] and ev.thresholds.empty
    with pytest.raises(ArgumentError, match="binary"):
        assess_predictions(y, prob, classes=["a", "b", "c"], threshold=0.5)


def test_evaluate_refuses_a_different_preprocess(trained):
    model, _, _ = trained
    model.xaikit_preprocess = {"size": [32, 32], "normalize": "percentile"}
    try:
        with pytest.raises(PreprocessMismatchError, match="size"):
            assess(model, Blobs(8, 2, preprocess={"size": [64, 64], "normalize": "percentile"}), n_boot=0)
        assess(model, Blobs(8, 2, preprocess={"size": [32, 32], "normalize": "percentile"}), n_boot=0)
    finally:
        del model.xaikit_preprocess


def test_evaluate_refuses_labels_outside_the_classes(trained):
    model, _, _ = trained
    with pytest.raises(DatasetError, match="outside"):
        assess(model, Blobs(4, 2, labels=[0, 1, 5, 1]), n_boot=0)


# ------------------------------------------------------------------------------------------ figures


def test_figures_show_the_tables(trained):
    model, result, _ = trained
    ev = assess(model, Blobs(40, 2), n_boot=100)
    fig = confusion_heatmap(ev.confusion, ev.classes)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), ev.confusion_matrix())
    norm = confusion_heatmap(ev.confusion, ev.classes, normalize=True)
    np.testing.assert_allclose(np.asarray(norm.data[0].z).sum(1), 1.0)
    roc = roc_curves(ev.roc, ev.metrics)
    band, curve = roc.data[0], roc.data[1]
    np.testing.assert_allclose(curve.y, ev.roc["tpr"])
    np.testing.assert_allclose(band.y[: len(M.CURVE_GRID)], ev.roc["tpr_high"])
    assert "ROC AUC" in curve.name and f"{ev.metric('roc_auc'):.3f}" in curve.name
    pr = pr_curves(ev.pr, ev.metrics)
    assert pr.data[-1].y[0] == pytest.approx(0.5)  # prevalence baseline
    rel = reliability_diagram(ev.calibration, ev.metrics)
    np.testing.assert_allclose(rel.data[1].y, ev.calibration["fraction_positive"])
    assert "ECE" in rel.layout.title.text
    hist = training_curves(result.history)
    val_loss = result.history.query("split == 'val' and metric == 'loss'")["value"]
    np.testing.assert_allclose(hist.data[1].y, val_loss)
    assert isinstance(ev.plot_roc(), type(roc)) and len(result.plot().data) == 4


def test_live_curve_grows_with_each_epoch():
    from xaikit.widgets.training import LiveCurve

    curve = LiveCurve()
    result = fit(tiny_model(), Blobs(16, 0), Blobs(8, 1), epochs=3, batch_size=8, callbacks=[curve],
                 progress=False)
    train_loss = result.history.query("split == 'train' and metric == 'loss'")["value"].to_numpy()
    np.testing.assert_allclose(curve.widget.data[0].y, train_loss)
    assert list(curve.widget.data[0].x) == [1, 2, 3]
    assert isinstance(curve.history, pd.DataFrame) and len(curve.rows) == 3
