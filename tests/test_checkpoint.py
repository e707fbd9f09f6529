"""xaikit.checkpoint: round trip, weights_only loading, preprocessing checks, damaged and foreign files."""
from __future__ import annotations

import warnings

import pytest
import torch

from xaikit import checkpoint as ck
from xaikit.checkpoint import check_preprocess, load_checkpoint, save_checkpoint
from xaikit.errors import ArgumentError, CheckpointError, PreprocessMismatchError, XaikitError
from xaikit.models import build_model

CLASSES = ["normal", "pneumonia"]
PREP = {"size": [64, 64], "channels": 1, "normalize": "percentile", "clip": [0.5, 99.5]}


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_model("small_cnn", num_classes=2, widths=(4, 8))
    with torch.no_grad():  # non-trivial batch-norm statistics, so a lost buffer would show
        for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    return m


@pytest.fixture
def saved(tmp_path, model):
    path = save_checkpoint(tmp_path / "model.pt", model, classes=CLASSES, preprocess=PREP,
                           summary={"best_epoch": 3, "val_roc_auc": torch.tensor(0.97).item()})
    return path


def test_round_trip_gives_the_same_outputs_and_records(saved, model):
    ckpt = load_checkpoint(saved, preprocess=PREP)
    x = torch.randn(3, 1, 32, 32)
    model.eval()
    torch.testing.assert_close(ckpt.model(x), model(x), rtol=0, atol=0)
    assert not ckpt.model.training
    assert ckpt.arch == "small_cnn" and ckpt.arch_kwargs["widths"] == [4, 8]
    assert ckpt.classes == CLASSES and ckpt.model.xaikit_classes == CLASSES
    assert ckpt.model.xaikit_preprocess == PREP and ckpt.preprocess_dict == PREP
    assert ckpt.summary == {"best_epoch": 3, "val_roc_auc": pytest.approx(0.97)}
    assert len(ckpt.sha256) == 64


def test_file_loads_with_plain_weights_only_torch_load(saved):
    payload = torch.load(saved, weights_only=True)
    assert payload["format"] == ck.FORMAT and payload["format_version"] == ck.FORMAT_VERSION
    assert set(payload["state_dict"]) == set(build_model("small_cnn", 2, widths=(4, 8)).state_dict())


def test_a_different_preprocess_is_refused_naming_the_keys(saved):
    other = {**PREP, "size": [128, 128], "normalize": "imagenet"}
    with pytest.raises(PreprocessMismatchError) as info:
        load_checkpoint(saved, preprocess=other)
    message = str(info.value)
    assert "size: model=[64, 64], given=[128, 128]" in message
    assert "normalize: model='percentile', given='imagenet'" in message
    assert "channels" not in message
    model = load_checkpoint(saved).model
    with pytest.raises(PreprocessMismatchError, match="extra: model='<missing>', given=1"):
        check_preprocess(model, {**PREP, "extra": 1})
    check_preprocess(model, dict(PREP, size=(64, 64)))  # tuples and lists compare equal


def test_preprocess_objects_are_compared_through_to_dict(saved):
    class Prep:
        def __init__(self, size):
            self.size = size

        def to_dict(self):
            return {**PREP, "size": self.size}

    check_preprocess(load_checkpoint(saved).model, Prep([64, 64]))
    with pytest.raises(PreprocessMismatchError):
        check_preprocess(load_checkpoint(saved).model, Prep([32, 32]))


def test_checking_a_model_without_a_record_warns(model):
    with pytest.warns(UserWarning, match="cannot be checked"):
        check_preprocess(model, PREP)


def test_truncated_file_is_a_checkpoint_error(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(saved)


def _rewrite(path, **changes):
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)
    return payload


def test_tampered_weights_are_detected(saved):
    payload = torch.load(saved, weights_only=True)
    state = dict(payload["state_dict"])
    state["classifier.bias"] = state["classifier.bias"] + 1e-3
    _rewrite(saved, state_dict=state)
    with pytest.raises(CheckpointError, match="modified or corrupted"):
        load_checkpoint(saved)


def test_tampered_metadata_is_detected(saved):
    _rewrite(saved, classes=["pneumonia", "normal"])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(saved)


def test_weights_of_another_architecture_are_refused(tmp_path, model):
    # a checkpoint written consistently (valid digest) but claiming resnet18 for small_cnn weights
    path = save_checkpoint(tmp_path / "m.pt", model, classes=CLASSES, preprocess=PREP)
    payload = torch.load(path, weights_only=True)
    meta = {k: payload[k] for k in ck._META_KEYS} | {"arch": "resnet18", "arch_kwargs": {"num_classes": 2,
                                                                                         "in_channels": 1}}
    torch.save({**payload, **meta, "sha256": ck._digest(meta, payload["state_dict"])}, path)
    with pytest.raises(CheckpointError, match="do not fit architecture 'resnet18'.*missing"):
        load_checkpoint(path)


def test_saving_under_a_wrong_architecture_is_refused(tmp_path, model):
    with pytest.raises(ArgumentError, match="do not fit architecture 'resnet18'"):
        save_checkpoint(tmp_path / "m.pt", model, arch="resnet18", arch_kwargs={"num_classes": 2},
                        classes=CLASSES)
    assert not (tmp_path / "m.pt").exists()


def test_plain_state_dict_and_pickled_objects_are_not_checkpoints(tmp_path, model):
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    with pytest.raises(CheckpointError, match="not an xaikit checkpoint"):
        load_checkpoint(plain)
    evil = tmp_path / "evil.pt"
    torch.save({"format": ck.FORMAT, "obj": warnings.WarningMessage}, evil)  # a class: refused by weights_only
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_summary_must_be_plain_and_a_failed_save_keeps_the_old_file(saved, model):
    before = saved.read_bytes()
    with pytest.raises(ArgumentError, match="summary must hold plain values"):
        save_checkpoint(saved, model, classes=CLASSES, summary={"model": model})
    assert saved.read_bytes() == before
    with pytest.raises(ArgumentError, match="2 outputs"):
        save_checkpoint(saved, model, classes=["a", "b", "c"])


def test_model_without_architecture_record_needs_arch(tmp_path):
    with pytest.raises(ArgumentError, match="build_model"):
        save_checkpoint(tmp_path / "m.pt", torch.nn.Linear(2, 2), classes=CLASSES)


def test_preprocess_property_rebuilds_the_object(saved):
    data = pytest.importorskip("xaikit.data")
    if not hasattr(data, "Preprocess"):
        pytest.skip("xaikit.data.Preprocess not available yet")
    prep = data.Preprocess()
    path = save_checkpoint(saved, load_checkpoint(saved).model, classes=CLASSES, preprocess=prep)
    assert load_checkpoint(path, preprocess=prep).preprocess == prep


def test_errors_are_xaikit_errors():
    assert issubclass(CheckpointError, XaikitError) and issubclass(PreprocessMismatchError, XaikitError)


def test_metrics_table_reads_flat_and_per_class_test_metrics(model, tmp_path):
    path = save_checkpoint(tmp_path / "flat.pt", model, classes=["a", "b"],
                           summary={"test_metrics": {"roc_auc": [0.9, 0.8, 0.95], "accuracy": [0.7, 0.6, 0.8]}})
    flat = load_checkpoint(path).metrics_table()
    assert flat.to_dict("list") == {"metric": ["roc_auc", "accuracy"], "value": [0.9, 0.7], "ci_low": [0.8, 0.6],
                                    "ci_high": [0.95, 0.8]}
    path = save_checkpoint(tmp_path / "nested.pt", model, classes=["a", "b"],
                           summary={"test_metrics": {"heart": {"dice": [0.97, 0.96, 0.98]}, "lung": {"dice": [0.99]}}})
    nested = load_checkpoint(path).metrics_table("class")
    assert nested[["class", "metric", "value"]].values.tolist() == [["heart", "dice", 0.97], ["lung", "dice", 0.99]]
    assert nested["ci_low"].isna().tolist() == [False, True]  # a value without an interval: NaN, not dropped
    assert load_checkpoint(save_checkpoint(tmp_path / "none.pt", model, classes=["a", "b"])).metrics_table().empty
# ------------------------------------------------------------------ issue 23: structure, files, classes, subsets
def _redigest(path, **changes):
    """Edit entries and recompute the digest, as someone would who knows the format: only structure checks help."""
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    meta = {k: payload[k] for k in ck._META_KEYS}
    state = payload["state_dict"]
    tensors = isinstance(state, dict) and all(torch.is_tensor(v) for v in state.values())
    if tensors and isinstance(meta["summary"], dict):
        payload["sha256"] = ck._digest(meta, state)
    torch.save(payload, path)


@pytest.mark.parametrize("changes,names", [
    ({"summary": [1, 2]}, "summary is a list"),
    ({"state_dict": [1, 2]}, "state_dict is a list"),
    ({"state_dict": {"conv": [1.0]}}, "state_dict['conv'] is a list"),
    ({"format_version": "1"}, "format_version is '1'"),
    ({"classes": "normal,pneumonia"}, "classes is a str"),
    ({"classes": [0, 1]}, "classes[0] is a int"),
    ({"arch": None}, "arch is a NoneType"),
    ({"preprocess": [64]}, "preprocess is a list"),
])
def test_entries_of_the_wrong_type_are_refused_before_use(saved, changes, names):
    _redigest(saved, **changes)
    with pytest.raises(CheckpointError, match="not a checkpoint as save_checkpoint writes it|not an integer") as info:
        load_checkpoint(saved)
    assert names in str(info.value) and str(saved) in str(info.value)


@pytest.mark.parametrize("content", [b"hello", b"e", b"\x80\x02}q\x00.", b"PK\x03\x04garbage"])
def test_small_text_or_garbage_files_are_checkpoint_errors(tmp_path, content):
    path = tmp_path / "tiny.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_more_class_names_than_outputs_is_refused_on_load(saved):
    _redigest(saved, classes=["normal", "pneumonia", "covid"])
    with pytest.raises(CheckpointError, match="3 class names .* model with 2 outputs"):
        load_checkpoint(saved)


def test_a_dict_naming_some_settings_is_checked_on_those(saved):
    ckpt = load_checkpoint(saved, preprocess={"size": [64, 64]})   # means the saved preprocessing: accepted
    assert ckpt.preprocess_dict == PREP
    check_preprocess(ckpt.model, {"size": (64, 64), "channels": 1})
    with pytest.raises(PreprocessMismatchError, match=r"size: model=\[64, 64\], given=128") as info:
        load_checkpoint(saved, preprocess={"size": 128})
    assert "normalize" not in str(info.value)


def _not_files(tmp_path):
    import os

    folder = tmp_path / "folder.pt"
    folder.mkdir()
    loop = tmp_path / "loop.pt"
    loop.symlink_to(loop)
    dangling = tmp_path / "dangling.pt"
    dangling.symlink_to(tmp_path / "gone.pt")
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    return [(folder, "is a (folder|directory)"), (loop, "symbolic link loop"),
            (dangling, "symbolic link to a missing file"), (fifo, "not a regular file")]


def test_folders_links_and_fifos_are_named_as_such(tmp_path):
    from xaikit.data import read_manifest
    from xaikit.errors import ExplanationError, ImageReadError, ManifestError
    from xaikit.io import read_image
    from xaikit.saliency import Explanation

    for path, what in _not_files(tmp_path):
        for call, error in ((load_checkpoint, CheckpointError), (Explanation.load, ExplanationError),
                            (read_manifest, ManifestError), (read_image, ImageReadError)):
            with pytest.raises(error, match=what) as info:   # a FIFO is never opened: no hang
                call(path)
            assert str(path) in str(info.value) and "no such file" not in str(info.value)


def test_permission_errors_say_permission_not_damage(saved, tmp_path, model, monkeypatch):
    from xaikit.errors import ExplanationError
    from xaikit.saliency import Explanation

    exp = Explanation(torch.zeros(1, 4, 4), "gradient", {}, "pred", torch.tensor([0]), torch.tensor([0]),
                      torch.tensor([[0.6, 0.4]]), ["a"])
    exp.save(tmp_path / "exp.pt")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:   # root reads anything: simulate the user without read access
        patch.setattr(torch, "load", denied)
        with pytest.raises(CheckpointError, match="permission denied: this user may not read it") as info:
            load_checkpoint(saved)
        assert "truncated" not in str(info.value)
        with pytest.raises(ExplanationError, match="permission denied"):
            Explanation.load(tmp_path / "exp.pt")
    import tempfile

    monkeypatch.setattr(tempfile, "mkstemp", denied)   # an unwritable folder
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*new\.pt .*PermissionError.*may write"):
        save_checkpoint(tmp_path / "new.pt", model, classes=CLASSES)
    with pytest.raises(ExplanationError, match=r"cannot write Explanation file .*new_exp\.pt.*may write"):
        exp.save(tmp_path / "new_exp.pt")
