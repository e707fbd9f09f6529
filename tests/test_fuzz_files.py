"""Fuzz the kit's own files and manifests: damaged checkpoints and Explanation files, hostile manifest CSVs.

A damaged file must be refused with an XaikitError naming it, or load to exactly what was saved (a flip in
bytes nobody reads): a silently different model or map is a failure. A manifest must give a dataset whose
labels are in range and whose first sample reads, or an XaikitError naming the CSV.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xaikit.checkpoint import load_checkpoint, save_checkpoint
from xaikit.data import ManifestDataset
from xaikit.models import build_model
from xaikit.saliency import Explanation

from fuzz_helpers import Tally, assert_clean, run_case


def _mutations(data: bytes, rng: np.random.Generator, n_flips: int = 40) -> list[tuple[str, bytes]]:
    out = [(f"cut{c}", data[:c]) for c in sorted({1, 30, 100, len(data) // 3, len(data) // 2, len(data) - 22,
                                                  len(data) - 1})]
    for k in range(n_flips):
        buf = bytearray(data)
        for pos in rng.integers(0, len(buf), rng.integers(1, 4)):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        out.append((f"flip{k}", bytes(buf)))
    return out


def test_damaged_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=2, widths=(4, 8))
    good = save_checkpoint(tmp_path / "good.pt", model, classes=["a", "b"], preprocess={"size": [16, 16]})
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    saved = load_checkpoint(good)

    def same_as_saved(ckpt) -> None:
        state = ckpt.model.state_dict()
        assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)
        assert ckpt.classes == ["a", "b"] and ckpt.preprocess == saved.preprocess and ckpt.summary == saved.summary

    tally = Tally()
    for label, content in _mutations(good.read_bytes(), np.random.default_rng(1)):
        path = tmp_path / f"ckpt_{label}.pt"
        path.write_bytes(content)
        run_case(tally, path.name, lambda: load_checkpoint(path), same_as_saved, names=str(path))
    assert_clean(tally)


_WRONG_VALUES = [None, "1", 1, 1.5, True, [], [1, "a"], {}, {"a": 1}, {"w": [1.0]}, torch.zeros(2), ["a", "b", "c"]]


def test_checkpoints_with_entries_of_any_type(tmp_path):
    """Issue 23: entries replaced by values of another type, the digest recomputed (someone who knows the format);
    each must load the saved weights or be a CheckpointError naming the file, never a raw error."""
    from xaikit.checkpoint import _META_KEYS, _digest

    model = build_model("small_cnn", num_classes=2, widths=(4, 8))
    good = save_checkpoint(tmp_path / "good.pt", model, classes=["a", "b"], preprocess={"size": [16, 16]})
    payload = torch.load(good, weights_only=True)
    rng = np.random.default_rng(4)
    tally = Tally()

    def loads_as_saved(ckpt) -> None:
        assert len(ckpt.classes) == 2 and all(torch.equal(v, payload["state_dict"][k])
                                             for k, v in ckpt.model.state_dict().items())

    for k in range(60):
        edited = dict(payload)
        key = str(rng.choice([*_META_KEYS, "state_dict", "sha256"]))
        edited[key] = _WRONG_VALUES[int(rng.integers(len(_WRONG_VALUES)))]
        try:
            edited["sha256"] = _digest({m: edited[m] for m in _META_KEYS}, edited["state_dict"])
        except Exception:  # noqa: BLE001 - a state_dict the digest cannot read keeps the old digest
            pass
        path = tmp_path / f"typed{k}_{key}.pt"
        torch.save(edited, path)
        run_case(tally, path.name, lambda: load_checkpoint(path), loads_as_saved, names=str(path))
    assert_clean(tally)


def test_damaged_explanation_files(tmp_path):
    g = torch.Generator().manual_seed(0)
    exp = Explanation(torch.randn(2, 8, 8, generator=g), "gradient", {"n": 1}, "pred", torch.tensor([0, 1]),
                      torch.tensor([0, 1]), torch.tensor([[0.9, 0.1], [0.2, 0.8]]), ["a", "b"])
    exp.save(tmp_path / "good.pt")
    reference = exp.to_dict()

    def same_as_saved(loaded) -> None:
        got = loaded.to_dict()
        assert got["sha256"] == reference["sha256"] and torch.equal(got["probs"], reference["probs"])

    tally = Tally()
    for label, content in _mutations((tmp_path / "good.pt").read_bytes(), np.random.default_rng(2)):
        path = tmp_path / f"exp_{label}.pt"
        path.write_bytes(content)
        run_case(tally, path.name, lambda: Explanation.load(path), same_as_saved, names=str(path))
    assert_clean(tally)


# ---------------------------------------------------------------------------------------------- manifests
_CELLS = ["", " ", "img/0.png", "img/1.png", "./img/2.png", "img", ".", "..", "/", "../x.png", "img/none.png",
          "~/x.png", "C:\\x.png", "file:///etc/passwd", "img/0.png\x00", "a" * 300, "ü.png", '"quoted"', "a,b",
          "NaN", "None", "normal", "Normal", "0", "1", "-1", "1.0", "99999999999999999999", "+1", "0x1", "\t",
          "mask/none.png", "img/3.png"]
_COLUMNS = ["image_path", "label", "split", "patient_id", "image_id", "mask_lung", "mask_", "extra"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("manifest_fuzz")
    (folder / "img").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(folder / "img" / f"{i}.png")
    return folder


def _random_manifest(rng: np.random.Generator) -> bytes:
    columns = ["image_path", "label"] if rng.random() < 0.7 else list(rng.choice(_COLUMNS, 2, replace=False))
    columns += [c for c in _COLUMNS if c not in columns and rng.random() < 0.3]
    if rng.random() < 0.1:   # a repeated column (issue 23: the first was used silently)
        columns.append(str(rng.choice(columns)) + rng.choice(["", " "]))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    good = {"image_path": ["img/0.png", "img/1.png", "img/2.png", "img/3.png"], "label": ["a", "b"],
            "split": ["train", "test"], "patient_id": ["p1", "p2"], "mask_lung": ["", "img/1.png"]}
    for _ in range(int(rng.integers(0, 6))):   # mostly plausible cells, some hostile ones
        cells = [rng.choice(good[c]) if c in good and rng.random() < 0.75 else rng.choice(_CELLS) for c in columns]
        writer.writerow(cells + (["extra"] if rng.random() < 0.05 else []))   # a field too many (issue 23)
    data = text.getvalue().encode("utf-8", "surrogatepass")
    if rng.random() < 0.15:   # a damaged file: truncated, a stray byte, another encoding
        choice = int(rng.integers(0, 3))
        data = (data[: int(rng.integers(0, len(data) + 1))] if choice == 0 else
                data + b"\xff\xfe" if choice == 1 else text.getvalue().encode("utf-16"))
    return data


def test_hostile_manifests(image_folder):
    rng = np.random.default_rng(3)
    tally = Tally()

    def usable(ds) -> None:
        assert len(ds) > 0 and ((ds.labels >= 0) & (ds.labels < len(ds.classes))).all()
        assert ds[0]["image"].dtype == torch.float32
        assert all(Path(p).is_file() for p in ds.table["path"]), "columns shifted: a path is not a file"
        assert (ds.table["patient_id"].str.strip() != "").all(), "an empty patient_id was kept"

    for k in range(150):
        path = image_folder / f"m{k}.csv"
        path.write_bytes(_random_manifest(rng))
        option = [{}, {"on_error": "skip"}, {"fold_label_case": True}, {"split": "train"}][k % 4]
        run_case(tally, path.name, lambda: ManifestDataset(path, **option), usable, names=str(path))
    assert_clean(tally)


@pytest.mark.parametrize("kwargs,names", [({"on_error": "bogus"}, "on_error"), ({"classes": "abc"}, "classes"),
                                          ({"classes": []}, "classes"), ({"classes": ["a", "a"]}, "classes"),
                                          ({"encoding": "no-such-codec"}, "encoding"), ({"split": 3}, "split"),
                                          ({"root": "/nonexistent/elsewhere"}, "dataset root")])
def test_bad_manifest_arguments(image_folder, kwargs, names):
    path = image_folder / "args.csv"
    path.write_text("image_path,label\nimg/0.png,a\nimg/1.png,b\n")
    tally = Tally()
    run_case(tally, str(kwargs), lambda: ManifestDataset(path, **kwargs), lambda ds: None, names=names)
    assert tally.outcomes["ok"] == 0 or kwargs == {}, tally.summary()
    assert_clean(tally)
